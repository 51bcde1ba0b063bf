"""Reads for the home and admin pages: queue sizes, progress, throughput and agreement.

Agreement compares two people who worked on the same radiograph (typically the annotator who
submitted it and the radiologist who accepted it, or two annotators when it was returned):
lung-box IoU per side, Dice of the filled lung boxes, Dice of their finding masks, and the share
of image-level labels they agree on.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from itertools import combinations
from typing import Any

from django.db.models import Avg, Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from .constants import RegionStatus, State
from training.boxes import box_iou

from .geometry import mask_dice as mask_dice_of, masks_frame, masks_union
from .models import Dataset, FindingRegionRevision, ImportJob, LungAnnotation, Radiograph, ReviewEvent, SuggestionOutcome
from .permissions import can
from .errors import NotAllowed
from .workflow import QUEUES, finished_states

STATE_ORDER = [s.value for s in State]
# Events counted as work done, in the order the throughput table shows them.
WORK_ACTIONS = ["submitted", "accepted", "returned", "excluded", "skipped", "region_accepted", "region_rejected", "region_edited", "region_added"]
# How the throughput table groups them: column name -> actions.
WORK_COLUMNS = {
    "lungs submitted": ["submitted"],
    "accepted": ["accepted"],
    "returned": ["returned"],
    "excluded": ["excluded"],
    "skipped": ["skipped"],
    "region decisions": ["region_accepted", "region_rejected", "region_edited", "region_added"],
}
LABEL_FIELDS = ("healthy", "covid", "other_disease")


def _require(user, action: str) -> None:
    if not can(user, action):
        raise NotAllowed("Your role does not allow this.")


# ---- queues ------------------------------------------------------------------------------------
def queue_summary(*, user, queue: str) -> dict[str, Any]:
    """How much waits in a queue (by state and dataset), how much is leased now, and what ``user`` holds."""
    _require(user, QUEUES[queue].capability)
    states = QUEUES[queue].states
    now = timezone.now()
    qs = Radiograph.objects.filter(state__in=states)
    by_state = dict(qs.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    by_dataset = list(qs.values("dataset__name").annotate(n=Count("id")).order_by("dataset__name"))
    leased = qs.filter(leased_to__isnull=False, lease_expires_at__gt=now)
    held = qs.filter(leased_to=user, lease_expires_at__gt=now).order_by("id").first()
    return {
        "total": sum(by_state.values()),
        "by_state": [{"state": s, "count": by_state.get(s, 0)} for s in states],
        "by_dataset": [{"dataset": row["dataset__name"], "count": row["n"]} for row in by_dataset],
        "leased": leased.count(),
        "held": held,
    }


def returned_to_user(*, user, limit: int = 20) -> list[Radiograph]:
    """Radiographs a radiologist sent back to this annotator, with the comment."""
    _require(user, "annotate")
    return list(Radiograph.objects.filter(state=State.RETURNED, annotated_by=user).select_related("dataset").order_by("-updated_at")[:limit])


def review_candidates(*, user, order: str = "uncertainty", limit: int = 12) -> list[Radiograph]:
    """The next radiographs of the review queue in the order the queue hands them out."""
    _require(user, "review")
    qs = Radiograph.objects.filter(state__in=QUEUES["review"].states).select_related("dataset", "leased_to")
    if order == "uncertainty":
        from django.db.models import F

        qs = qs.order_by(F("uncertainty").desc(nulls_last=True), "id")
    else:
        qs = qs.order_by("id")
    return list(qs[:limit])


def user_recent_events(*, user, limit: int = 15) -> list[ReviewEvent]:
    _require(user, "view")
    return list(
        ReviewEvent.objects.filter(actor=user, radiograph__isnull=False)
        .exclude(action="saved")
        .select_related("radiograph")
        .order_by("-created_at", "-id")[:limit]
    )


# ---- admin dashboard ---------------------------------------------------------------------------
def dataset_progress(*, user) -> list[dict[str, Any]]:
    """Radiographs per dataset and workflow state."""
    _require(user, "view")
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in Radiograph.objects.values("dataset__name", "state").annotate(n=Count("id")):
        counts[row["dataset__name"]][row["state"]] = row["n"]
    out = []
    for name in Dataset.objects.order_by("name").values_list("name", flat=True):
        by_state = counts.get(name, {})
        total = sum(by_state.values())
        done = sum(by_state.get(state, 0) for state in finished_states())
        out.append(
            {
                "dataset": name,
                "total": total,
                "states": [{"state": s, "count": by_state.get(s, 0)} for s in STATE_ORDER],
                "done_fraction": (done / total) if total else 0.0,
            }
        )
    return out


def throughput(*, user, days: int = 14) -> dict[str, Any]:
    """Work done per person: counts per action over ``days`` days, and per day."""
    _require(user, "view")
    since = timezone.now() - timedelta(days=days)
    today = timezone.localdate()
    day_list = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    rows = (
        ReviewEvent.objects.filter(created_at__gte=since, action__in=WORK_ACTIONS, actor__isnull=False)
        .annotate(day=TruncDate("created_at"))
        .values("actor__username", "action", "day")
        .annotate(n=Count("id"))
    )
    people: dict[str, dict[str, Any]] = {}
    for row in rows:
        person = people.setdefault(
            row["actor__username"], {"username": row["actor__username"], "actions": defaultdict(int), "per_day": defaultdict(int), "total": 0}
        )
        person["actions"][row["action"]] += row["n"]
        person["per_day"][row["day"].isoformat()] += row["n"]
        person["total"] += row["n"]
    out = []
    for person in sorted(people.values(), key=lambda p: -p["total"]):
        out.append(
            {
                "username": person["username"],
                "total": person["total"],
                "actions": [sum(person["actions"].get(a, 0) for a in actions) for actions in WORK_COLUMNS.values()],
                "per_day": [person["per_day"].get(d.isoformat(), 0) for d in day_list],
            }
        )
    return {"days": [d.isoformat() for d in day_list], "actions": list(WORK_COLUMNS), "people": out}


def _boxes_dice(a: list, b: list) -> float | None:
    """Dice of two unions of boxes, exactly, on the grid of their edges (no full-size masks)."""
    a = [box for box in a if box]
    b = [box for box in b if box]
    xs = sorted({v for box in a + b for v in (box[0], box[2])})
    ys = sorted({v for box in a + b for v in (box[1], box[3])})
    area_a = area_b = both = 0
    for x0, x1 in zip(xs, xs[1:]):
        for y0, y1 in zip(ys, ys[1:]):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            in_a = any(box[0] <= cx < box[2] and box[1] <= cy < box[3] for box in a)
            in_b = any(box[0] <= cx < box[2] and box[1] <= cy < box[3] for box in b)
            cell = (x1 - x0) * (y1 - y0)
            area_a += cell * in_a
            area_b += cell * in_b
            both += cell * (in_a and in_b)
    return 2.0 * both / (area_a + area_b) if area_a + area_b else None


def agreement(*, user, limit: int = 200) -> dict[str, Any]:
    """Agreement between people who annotated the same radiograph, per radiograph and per pair."""
    _require(user, "view")
    lungs = (
        LungAnnotation.objects.filter(status__in=["submitted", "accepted"], author__isnull=False)
        .select_related("author", "radiograph")
        .order_by("-radiograph_id", "-version")
    )
    latest: dict[int, dict[str, LungAnnotation]] = defaultdict(dict)
    for item in lungs:
        if item.radiograph_id not in latest and len(latest) >= limit:
            break
        latest[item.radiograph_id].setdefault(item.author.username, item)
    shared = {rid: people for rid, people in latest.items() if len(people) >= 2}
    labels = _labels_by_person(shared.keys())
    findings = _findings_by_person(shared.keys())

    rows = []
    for rid, people in sorted(shared.items(), reverse=True):
        for a, b in combinations(sorted(people), 2):
            la, lb = people[a], people[b]
            label_a, label_b = labels.get((rid, a)), labels.get((rid, b))
            label_agree = None
            if label_a and label_b:
                label_agree = sum(label_a.get(f) == label_b.get(f) for f in LABEL_FIELDS) / len(LABEL_FIELDS)
            mask_dice = None
            if (rid, a) in findings and (rid, b) in findings:
                frame = masks_frame(findings[(rid, a)] + findings[(rid, b)])
                mask_dice = mask_dice_of(masks_union(findings[(rid, a)], frame), masks_union(findings[(rid, b)], frame))
                if mask_dice is None:
                    mask_dice = 1.0  # both marked nothing: they agree
            rows.append(
                {
                    "radiograph": rid,
                    "people": [a, b],
                    "right_iou": box_iou(la.right_box, lb.right_box),
                    "left_iou": box_iou(la.left_box, lb.left_box),
                    "lung_dice": _boxes_dice([la.right_box, la.left_box], [lb.right_box, lb.left_box]),
                    "mask_dice": mask_dice,
                    "label_agreement": label_agree,
                }
            )
    pairs: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        pairs[tuple(row["people"])].append(row)
    summary = []
    for (a, b), items in sorted(pairs.items(), key=lambda kv: -len(kv[1])):
        summary.append({"people": [a, b], "radiographs": len(items), **{k: _mean(items, k) for k in ("right_iou", "left_iou", "lung_dice", "mask_dice", "label_agreement")}})
    return {"pairs": summary, "rows": rows[:50]}


def _mean(items: list[dict], key: str) -> float | None:
    values = [i[key] for i in items if i[key] is not None]
    return sum(values) / len(values) if values else None


def _labels_by_person(radiograph_ids) -> dict[tuple[int, str], dict]:
    """Each person's last stated image-level labels on each radiograph (from their events)."""
    out: dict[tuple[int, str], dict] = {}
    events = (
        ReviewEvent.objects.filter(radiograph_id__in=list(radiograph_ids), action__in=["submitted", "accepted", "saved"], actor__isnull=False)
        .select_related("actor")
        .order_by("created_at", "id")
    )
    for event in events:
        if isinstance(event.data, dict) and isinstance(event.data.get("labels"), dict):
            out[(event.radiograph_id, event.actor.username)] = event.data["labels"]
    return out


def _findings_by_person(radiograph_ids) -> dict[tuple[int, str], list[FindingRegionRevision]]:
    """Each person's latest revision of each region they touched, kept when it is not rejected."""
    latest: dict[tuple[int, str, int], FindingRegionRevision] = {}
    revisions = (
        FindingRegionRevision.objects.filter(region__radiograph_id__in=list(radiograph_ids), author__isnull=False)
        .select_related("author", "region")
        .order_by("version")
    )
    for revision in revisions:
        latest[(revision.region.radiograph_id, revision.author.username, revision.region_id)] = revision
    out: dict[tuple[int, str], list[FindingRegionRevision]] = defaultdict(list)
    for (rid, person, _), revision in latest.items():
        out[(rid, person)]  # a person whose regions were all rejected marked nothing
        if revision.status != RegionStatus.REJECTED:
            out[(rid, person)].append(revision)
    return out


def suggestion_agreement(*, user) -> list[dict[str, Any]]:
    """Per model version, newest first: how its suggestions fared once people decided them.

    Lung boxes: how many submitted, the share accepted unchanged, the mean IoU per side of the edited
    ones, the share whose image labels were changed from the model's. Regions: how many decided,
    the share accepted unchanged, the mean Dice of the edited ones, the share rejected.
    """
    _require(user, "view")
    Kind, Outcome = SuggestionOutcome.Kind, SuggestionOutcome.Outcome
    edited = Q(outcome=Outcome.EDITED)
    rows = (
        SuggestionOutcome.objects.values("model_version_id", "model_version__name", "kind")
        .annotate(
            n=Count("id"),
            unchanged=Count("id", filter=Q(outcome=Outcome.UNCHANGED)),
            edited=Count("id", filter=edited),
            rejected=Count("id", filter=Q(outcome=Outcome.REJECTED)),
            labels_compared=Count("id", filter=Q(labels_changed__isnull=False)),
            labels_changed=Count("id", filter=Q(labels_changed=True)),
            right_iou=Avg("right_iou", filter=edited),
            left_iou=Avg("left_iou", filter=edited),
            dice=Avg("dice", filter=edited),
        )
        .order_by("-model_version_id", "kind")
    )
    models: dict[int | None, dict[str, Any]] = {}
    for row in rows:
        model = models.setdefault(row["model_version_id"], {"model": row["model_version__name"] or "(deleted model)", "lungs": None, "regions": None})
        share = (lambda k: row[k] / row["n"]) if row["n"] else (lambda k: None)
        figures = {"n": row["n"], "unchanged": share("unchanged"), "edited": row["edited"]}
        if row["kind"] == Kind.LUNGS:
            figures.update(
                right_iou=row["right_iou"],
                left_iou=row["left_iou"],
                labels_changed=row["labels_changed"] / row["labels_compared"] if row["labels_compared"] else None,
            )
            model["lungs"] = figures
        else:
            figures.update(dice=row["dice"], rejected=share("rejected"))
            model["regions"] = figures
    return list(models.values())


def recent_imports(*, user, limit: int = 10) -> list[ImportJob]:
    _require(user, "import")
    return list(ImportJob.objects.select_related("dataset", "created_by").order_by("-created_at")[:limit])


def totals(*, user) -> dict[str, int]:
    """Headline counts for the dashboard."""
    _require(user, "view")
    agg = Radiograph.objects.aggregate(
        total=Count("id"),
        accepted=Count("id", filter=Q(state=State.ACCEPTED)),
        in_review=Count("id", filter=Q(state__in=QUEUES["review"].states)),
        to_annotate=Count("id", filter=Q(state__in=QUEUES["annotate"].states)),
        excluded=Count("id", filter=Q(state=State.EXCLUDED)),
    )
    return {k: v or 0 for k, v in agg.items()}
