"""The frozen train/test split of exports: subject-disjoint, 80/20, stratified by the COVID label.

A subject's split is stored on the subject the first time it is exported and never changes again,
so models trained on different snapshots are compared on the same test images. New subjects are
assigned deterministically (ordered by a keyed hash of their key and the seed) so that each COVID
stratum comes as close to the test fraction as it can without moving anyone already assigned.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from django.db import transaction

from ..constants import Tri
from ..models import Subject

logger = logging.getLogger(__name__)

TEST_FRACTION = 0.2
TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class SubjectGroup:
    """All subject rows exported under one subject id (one per dataset), with their COVID stratum."""

    key: str
    subject_ids: tuple[int, ...]
    current: str  # "train", "test" or "" (never exported)
    stratum: str  # positive, negative or unknown: the COVID label of the subject


def covid_stratum(values: Iterable[str]) -> str:
    """A subject is COVID-positive if any of its images is, negative if any is, otherwise unknown."""
    seen = set(values)
    if Tri.POSITIVE in seen:
        return Tri.POSITIVE
    if Tri.NEGATIVE in seen:
        return Tri.NEGATIVE
    return Tri.UNKNOWN


def _order(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def split_assign(*, groups: Iterable[SubjectGroup], seed: int, test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """Subject key → split for every group. Assigned groups keep their split; in each stratum new
    ones fill the test split up to ``round(test_fraction × stratum size)`` in hash order, the rest
    go to train."""
    by_stratum: dict[str, list[SubjectGroup]] = defaultdict(list)
    for group in groups:
        by_stratum[group.stratum].append(group)
    result: dict[str, str] = {}
    for stratum_groups in by_stratum.values():
        new = sorted((g for g in stratum_groups if g.current not in (TRAIN, TEST)), key=lambda g: _order(g.key, seed))
        already_test = sum(1 for g in stratum_groups if g.current == TEST)
        want_test = round(test_fraction * len(stratum_groups))
        free_test = max(0, want_test - already_test)
        for group in stratum_groups:
            if group.current in (TRAIN, TEST):
                result[group.key] = group.current
        for i, group in enumerate(new):
            result[group.key] = TEST if i < free_test else TRAIN
    return result


def splits_freeze(*, members: dict[str, dict[int, list[str]]], seed: int) -> dict[str, str]:
    """Assign and store the split of every exported subject; returns subject key → split.

    ``members`` maps a subject key to {subject row id: the COVID labels of its exported images}.
    Subject rows are locked while this runs, so two exports never assign the same subject twice.
    A key found in several datasets with different stored splits goes to test everywhere (its
    test images must stay unseen by training).
    """
    with transaction.atomic():
        ids = sorted({sid for rows in members.values() for sid in rows})
        stored = dict(Subject.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", "split"))
        groups = []
        for key, rows in members.items():
            splits = {stored.get(sid, "") for sid in rows} - {""}
            if len(splits) > 1:
                logger.warning("subject %s is in both splits across datasets: it goes to test", key)
            current = TEST if TEST in splits else (splits.pop() if splits else "")
            labels = [value for values in rows.values() for value in values]
            groups.append(SubjectGroup(key=key, subject_ids=tuple(rows), current=current, stratum=covid_stratum(labels)))
        assigned = split_assign(groups=groups, seed=seed)
        for split in (TRAIN, TEST):
            changed = [sid for g in groups if assigned[g.key] == split for sid in g.subject_ids if stored.get(sid) != split]
            if changed:
                Subject.objects.filter(pk__in=changed).update(split=split)
    return assigned
