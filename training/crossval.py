"""K-fold cross-validation of a training recipe over a whole export.

The frozen train/test split of an export compares model versions; it is too small to choose a recipe
on (the sample's 16 test lung masks ranked two recipes the wrong way round). ``crossval`` instead
splits *all* the export's images into ``folds`` subject-disjoint folds, stratified by COVID label, and
trains one model per fold on the other folds, scoring it on its own. Every image is scored exactly once
by a model that never saw its patient.

``<out>/`` receives:

- ``fold_<k>/export``: a view of the export with that fold as the test split (labels.csv rewritten,
  images and masks linked, not copied) and ``fold_<k>/run``: the ordinary training run directory;
- ``crossval.json``: the recipe, the fold of every subject, each fold's metrics (``evaluate``'s dict),
  their mean and sd per metric, and the pooled out-of-fold classification metrics with a subject-level
  bootstrap confidence interval of the COVID AUC;
- ``crossval.md``: the same as a readable table; ``per_image.csv``: one row per image (fold, image,
  subject, lung Dice, box IoU per side, disease Dice, probabilities, labels).

A fold whose ``fold_<k>/metrics.json`` exists is not retrained, so an interrupted run can be continued.
``jobs`` (``--jobs``) trains that many folds at once, each in a process of its own with its share of the
cores (on a GPU, all of them share it); the report is the same as one fold after the other.
``rescore`` (``--rescore``) re-fits the box-edge calibration of each fold's ``best.pt`` on its training
images and scores it again, without training: for a changed metric or a re-exported snapshot of the
same images and subjects (a fold without ``best.pt`` is trained as usual). ``teachers`` (``--teachers``)
names an earlier cross-validation of the same folds whose fold models give lung masks to each fold's
training images that have neither an outline nor boxes (self-training, ``training.pseudo``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.config import TrainConfig
from training.evaluate import score_checkpoint
from training.export import COCO, LABELS, LUNG_MASK_OUTLINE, ExportError, ExportRecord, read_export, verify_export
from training.metrics import bootstrap_ci, classification_metrics, mean_or_none

log = logging.getLogger(__name__)

PER_IMAGE_COLUMNS = (
    "fold", "image_id", "subject", "lung_mask", "lung_dice", "lung_box_iou_right", "lung_box_iou_left",
    "lung_box_iou_annotated_right", "lung_box_iou_annotated_left", "lung_box_bottom_error", "disease_dice",
    "healthy_prob", "covid_prob", "other_disease_prob", "healthy_label", "covid_label", "other_disease_label",
)
# The metrics shown first in the readable table, in this order; every other numeric one follows.
HEADLINE = (
    "lung_dice", "lung_dice_outline", "lung_box_iou", "lung_box_iou_annotated", "lung_boxes_both_iou_0_9", "lung_boxes_both_iou_0_8",
    "lung_box_bottom_error", "disease_dice", "covid_auc", "covid_sensitivity_at_90_specificity", "healthy_accuracy",
    "other_disease_auc",
)
BOOTSTRAP_RESAMPLES = 2000
FOLD_ERROR = "error.txt"  # what ended a fold run in its own process, for the parent's message


class FoldsFailed(RuntimeError):
    """One or more folds run in their own processes (``jobs`` > 1) failed; the message names each and its log."""


def _rescore(best: Path, view: Path, base: TrainConfig, metrics_path: Path) -> dict[str, Any]:
    """A trained fold scored again: its box-edge calibration re-fitted on the fold's training images
    (when the recipe calibrates), then its test images; the training time of the first scoring is kept."""
    from training.evaluate import checkpoint_box_calibrate
    from training.runtime import resolve_device

    earlier = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    if base.box_calibration:
        train_records = read_export(view).split("train")
        checkpoint_box_calibrate(best, view, train_records, device=resolve_device(base.device), batch_size=base.batch_size)
    metrics, outputs = score_checkpoint(best, view, "test", batch_size=base.batch_size, device=base.device)
    metrics.pop("covid_roc", None)
    saved = {"metrics": metrics, "rows": outputs.rows, "seconds": earlier.get("seconds", 0.0)}
    metrics_path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return saved


def _subject_stratum(records: Sequence[ExportRecord]) -> str:
    labels = {r.covid for r in records}
    return "positive" if "positive" in labels else ("negative" if "negative" in labels else "unknown")


def subject_folds(records: Sequence[ExportRecord], folds: int, seed: int = 0) -> dict[str, int]:
    """Assign every subject to one of ``folds`` folds: subject-disjoint, stratified by COVID label.

    Within each stratum (subjects with a COVID-positive image, with only negative ones, unknown),
    subjects go largest first (seeded order among equals) to the fold that has the fewest images of
    that stratum so far, then the fewest images overall: each fold gets about the same number of
    images and the same COVID proportion. Raises ``ValueError`` with fewer subjects than folds.
    """
    by_subject: dict[str, list[ExportRecord]] = {}
    for record in records:
        by_subject.setdefault(record.subject_id, []).append(record)
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if len(by_subject) < folds:
        raise ValueError(f"{folds} folds need at least {folds} subjects; the export has {len(by_subject)}")
    strata: dict[str, list[str]] = {}
    for subject, items in by_subject.items():
        strata.setdefault(_subject_stratum(items), []).append(subject)
    fold_of: dict[str, int] = {}
    total = [0] * folds
    for stratum in ("positive", "negative", "unknown"):
        in_stratum = [0] * folds
        subjects = sorted(strata.get(stratum, []), key=lambda s: (-len(by_subject[s]), zlib.crc32(f"{seed}:{s}".encode())))
        for subject in subjects:
            fold = min(range(folds), key=lambda k: (in_stratum[k], total[k], k))
            fold_of[subject] = fold
            in_stratum[fold] += len(by_subject[subject])
            total[fold] += len(by_subject[subject])
    return fold_of


def write_fold_view(export_root: Path, fold_of: dict[str, int], fold: int, dest: Path) -> Path:
    """An export folder whose test split is ``fold`` and train split the other folds.

    labels.csv is rewritten (only its ``split`` column changes); images, masks and coco.json are
    symbolic links to the original export, which is verified once before the folds are trained.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with open(export_root / LABELS, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    for row in rows:
        row["split"] = "test" if fold_of[row["subject_id"]] == fold else "train"
    with open(dest / LABELS, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    for name in ("images", "masks", COCO):
        link, target = dest / name, (export_root / name).resolve()
        if link.is_symlink() and link.resolve() != target:  # a view of an earlier export (``rescore``)
            link.unlink()
        if target.exists() and not link.exists():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return dest


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and math.isfinite(float(v))
    }


def summarize_folds(fold_metrics: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, sample sd and number of folds of every numeric metric (over the folds where it is defined)."""
    keys = sorted({k for m in fold_metrics for k in _numeric(m)})
    summary = {}
    for key in keys:
        values = [_numeric(m)[key] for m in fold_metrics if key in _numeric(m)]
        summary[key] = {
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "n": len(values),
        }
    return summary


def pooled_metrics(rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Out-of-fold metrics over all images together, with subject-bootstrap 95% CIs of the annotated
    box IoU and of the COVID and other-disease AUCs."""
    pooled: dict[str, Any] = {"n_images": len(rows)}
    for key in ("lung_dice", "disease_dice", "lung_box_bottom_error"):
        pooled[key] = mean_or_none([r.get(key) for r in rows])
    pooled["lung_dice_outline"] = mean_or_none([r.get("lung_dice") for r in rows if r.get("lung_mask") == LUNG_MASK_OUTLINE])
    boxed = [r for r in rows if "lung_box_iou_annotated_right" in r]
    pairs = [(r["lung_box_iou_annotated_right"], r["lung_box_iou_annotated_left"]) for r in boxed]
    means = [mean_or_none(list(p)) or 0.0 for p in pairs]  # a missing predicted box scores 0, as in box_iou
    pooled["lung_box_iou_annotated"] = mean_or_none(means)
    for threshold, key in ((0.9, "lung_boxes_both_iou_0_9"), (0.8, "lung_boxes_both_iou_0_8")):
        pooled[key] = float(np.mean([all((v or 0.0) >= threshold for v in p) for p in pairs])) if pairs else None
    groups = [r["subject"] for r in boxed]
    ci = bootstrap_ci(means, means, lambda _, s: float(np.mean(s)), groups=groups, resamples=BOOTSTRAP_RESAMPLES, seed=seed) if means else None
    pooled["lung_box_iou_annotated_ci95"] = None if ci is None else list(ci)
    for name in ("covid", "other_disease"):
        known = [r for r in rows if r[f"{name}_label"] >= 0 and math.isfinite(r[f"{name}_prob"])]
        labels = [r[f"{name}_label"] for r in known]
        scores = [r[f"{name}_prob"] for r in known]
        pooled.update({k: v for k, v in classification_metrics(labels, scores, prefix=f"{name}_").items()})
        ci = bootstrap_ci(labels, scores, groups=[r["subject"] for r in known], resamples=BOOTSTRAP_RESAMPLES, seed=seed)
        pooled[f"{name}_auc_ci95"] = None if ci is None else list(ci)
    return pooled


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_report(report: dict[str, Any]) -> str:
    """The readable table: every metric as mean ± sd over folds, and the pooled out-of-fold value."""
    summary, pooled = report["summary"], report["pooled"]
    keys = [k for k in HEADLINE if k in summary] + [k for k in summary if k not in HEADLINE]
    lines = [
        f"# Cross-validation: {report['folds']} subject-disjoint folds, {report['n_images']} images",
        "",
        f"Recipe: width {report['config']['model']['width']}, {report['config']['model']['image_size']} px, "
        f"{report['config']['epochs']} epochs, tasks {report['config']['model']['tasks']}; "
        f"{report['seconds_per_fold']:.0f} s per fold on {report['device']}.",
        "",
        "| metric | mean ± sd over folds | pooled out-of-fold |",
        "|---|---|---|",
    ]
    for key in keys:
        cell = f"{_fmt(summary[key]['mean'])} ± {_fmt(summary[key]['sd'])}"
        lines.append(f"| {key} | {cell} | {_fmt(pooled.get(key))} |")
    box_ci = pooled.get("lung_box_iou_annotated_ci95")
    if box_ci:
        lines += ["", f"Pooled box IoU against drawn boxes {_fmt(pooled.get('lung_box_iou_annotated'))}, 95% CI (subject bootstrap) "
                  f"{box_ci[0]:.3f}–{box_ci[1]:.3f}; both boxes ≥ 0.9 / ≥ 0.8 on {_fmt(pooled.get('lung_boxes_both_iou_0_9'), 2)} / "
                  f"{_fmt(pooled.get('lung_boxes_both_iou_0_8'), 2)} of those images."]
    ci = pooled.get("covid_auc_ci95")
    lines += ["", f"Pooled COVID AUC {_fmt(pooled.get('covid_auc'))}, 95% CI (subject bootstrap) "
              + (f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "undefined") + "."]
    return "\n".join(lines) + "\n"


def run_fold(base: TrainConfig, view: Path, fold_dir: Path, *, fold: int, folds: int, rescore: bool = False) -> dict[str, Any]:
    """Train and score one fold on its export ``view`` (or re-score it, or read its saved metrics)."""
    from training.train import train

    metrics_path = fold_dir / "metrics.json"
    best = fold_dir / "run" / "best.pt"
    if rescore and best.is_file():
        saved = _rescore(best, view, base, metrics_path)
        log.info("fold %d/%d rescored from %s", fold + 1, folds, best)
        return saved
    if metrics_path.is_file():
        saved = json.loads(metrics_path.read_text(encoding="utf-8"))
        log.info("fold %d/%d already done (%s)", fold + 1, folds, metrics_path)
        return saved
    started = time.monotonic()
    config = dataclasses.replace(base, export_dir=str(view), run_dir=str(fold_dir / "run"), evaluate_test=False, verify=False)
    result = train(config)
    metrics, outputs = score_checkpoint(result.best_checkpoint, view, "test", batch_size=base.batch_size, device=base.device)
    metrics.pop("covid_roc", None)
    saved = {"metrics": metrics, "rows": outputs.rows, "seconds": time.monotonic() - started}
    metrics_path.write_text(json.dumps(saved, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    log.info(
        "fold %d/%d: lung Dice %s, annotated box IoU %s, disease Dice %s, COVID AUC %s (%.0f s)",
        fold + 1, folds, _fmt(metrics.get("lung_dice")), _fmt(metrics.get("lung_box_iou_annotated")),
        _fmt(metrics.get("disease_dice")), _fmt(metrics.get("covid_auc")), saved["seconds"],
    )
    return saved


def _fold_needs_work(fold_dir: Path, rescore: bool) -> bool:
    if rescore and (fold_dir / "run" / "best.pt").is_file():
        return True
    return not (fold_dir / "metrics.json").is_file()


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """End this process soon after its parent is gone: a cross-validation stopped by a signal (SIGTERM,
    SIGKILL) does not run its clean-up, and its folds must not train on into the next run's folders."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="crossval-parent-watch", daemon=True).start()


def _fold_process(config: dict[str, Any], view: str, fold_dir: str, fold: int, folds: int, rescore: bool, threads: int, log_level: int) -> None:
    """Entry point of one fold's process (spawned: no torch or CUDA state inherited from the parent)."""
    from training.runtime import configure_cpu_threads

    logging.basicConfig(level=log_level, format=f"%(asctime)s fold {fold + 1}/{folds} %(levelname)s %(name)s: %(message)s")
    configure_cpu_threads(threads)
    _exit_with_parent()
    error = Path(fold_dir) / FOLD_ERROR
    error.unlink(missing_ok=True)
    try:
        run_fold(TrainConfig.from_dict(config), Path(view), Path(fold_dir), fold=fold, folds=folds, rescore=rescore)
    except BaseException as exc:  # the parent names it; the traceback goes to this process's stderr
        error.write_text(f"{type(exc).__name__}: {exc}", encoding="utf-8")
        raise


def _run_folds_in_parallel(bases: dict[int, TrainConfig], views: dict[int, Path], out: Path, *, jobs: int, rescore: bool, progress_bar: bool) -> None:
    """Run every fold not yet done, ``jobs`` processes at a time; raise if any of them failed."""
    import multiprocessing

    from training.runtime import usable_cores

    folds = len(views)
    todo = [f for f in views if _fold_needs_work(out / f"fold_{f}", rescore)]
    threads = max(1, usable_cores() // min(jobs, max(1, len(todo))))
    context = multiprocessing.get_context("spawn")
    bar = None
    if progress_bar:
        from tqdm import tqdm

        bar = tqdm(total=folds, initial=folds - len(todo), desc=f"cross-validation ({jobs} at a time)", unit="fold")
    running: dict[int, Any] = {}
    failed: list[int] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                fold = todo.pop(0)
                args = (bases[fold].to_dict(), str(views[fold]), str(out / f"fold_{fold}"), fold, folds, rescore, threads, logging.getLogger().getEffectiveLevel())
                running[fold] = context.Process(target=_fold_process, args=args, name=f"crossval-fold-{fold}")
                running[fold].start()
            for fold, process in list(running.items()):
                process.join(timeout=0.5)
                if process.exitcode is None:
                    continue
                del running[fold]
                if process.exitcode != 0:
                    failed.append(fold)
                if bar is not None:
                    bar.update(1)
    finally:
        for process in running.values():  # interrupted: the folds still training stop too (they start again next time)
            process.terminate()
        for process in running.values():
            process.join()
        if bar is not None:
            bar.close()
    if failed:
        raise FoldsFailed("cross-validation folds failed: " + "; ".join(_fold_failure(out / f"fold_{f}", f) for f in sorted(failed)))


def _fold_failure(fold_dir: Path, fold: int) -> str:
    error = fold_dir / FOLD_ERROR
    why = error.read_text(encoding="utf-8") if error.is_file() else "the process died"
    log_file = fold_dir / "run" / "train.log"
    return f"fold {fold + 1}: {why}" + (f" (its log: {log_file})" if log_file.is_file() else "")


def teacher_checkpoints(teachers: str | Path, fold_of: dict[str, int], folds: int) -> dict[int, str]:
    """Each fold's teacher (``<teachers>/fold_<k>/run/best.pt``) of an earlier cross-validation of the same folds.

    The teacher of fold k never saw fold k's patients only if the earlier run split the subjects the
    same way: its ``crossval.json`` must hold the same fold of every subject, or this raises ``ValueError``.
    """
    root = Path(teachers)
    report = root / "crossval.json"
    if not report.is_file():
        raise ValueError(f"{root} is not a finished cross-validation (no crossval.json)")
    earlier = json.loads(report.read_text(encoding="utf-8")).get("fold_of_subject")
    if earlier != fold_of:
        raise ValueError(f"{root} split the subjects into other folds: its models would have seen the test patients")
    checkpoints = {fold: root / f"fold_{fold}" / "run" / "best.pt" for fold in range(folds)}
    missing = [str(path) for path in checkpoints.values() if not path.is_file()]
    if missing:
        raise ValueError(f"teacher checkpoints missing: {', '.join(missing)}")
    return {fold: str(path) for fold, path in checkpoints.items()}


def crossval(
    base: TrainConfig, *, folds: int, out_dir: str | Path, progress_bar: bool = False, rescore: bool = False, jobs: int = 1,
    teachers: str | Path | None = None, fold_seed: int | None = None,
) -> dict[str, Any]:
    """Cross-validate ``base`` (its export, recipe and seed) over ``folds`` folds; see the module docstring.

    ``jobs`` > 1 trains that many folds at once, each in its own process with its share of the CPU cores.
    ``fold_seed`` (default: the recipe's seed) fixes the folds apart from the training seed, so one
    recipe can be repeated with other seeds on the same folds (the noise between identical recipes).
    ``teachers`` (an earlier cross-validation's folder, same export and folds) self-trains: each fold's
    unlabelled training images get the lung masks of that run's model of the same fold
    (``TrainConfig.pseudo_lungs``, ``teacher_checkpoints``).

    Raises ``ExportError`` when the export fails verification, ``ValueError`` for impossible folds.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export = read_export(base.export_dir)
    if base.verify:
        problems = verify_export(export.root)
        if problems:
            raise ExportError(f"{export.root}: export verification failed ({len(problems)} problems): {problems[0]}")
    fold_seed = base.seed if fold_seed is None else fold_seed
    fold_of = subject_folds(export.records, folds, fold_seed)
    fold_range: Any = range(folds)
    if progress_bar and jobs <= 1:
        from tqdm import tqdm

        fold_range = tqdm(fold_range, desc="cross-validation", unit="fold")
    views = {fold: write_fold_view(export.root, fold_of, fold, out / f"fold_{fold}" / "export") for fold in range(folds)}
    bases = {fold: base for fold in range(folds)}
    if teachers is not None:
        bases = {fold: dataclasses.replace(base, pseudo_lungs=path) for fold, path in teacher_checkpoints(teachers, fold_of, folds).items()}
    if jobs > 1:
        _run_folds_in_parallel(bases, views, out, jobs=jobs, rescore=rescore, progress_bar=progress_bar)
    fold_metrics, rows, seconds = [], [], []
    for fold in fold_range:
        saved = run_fold(bases[fold], views[fold], out / f"fold_{fold}", fold=fold, folds=folds, rescore=rescore and jobs <= 1)
        fold_metrics.append(saved["metrics"])
        rows += [{"fold": fold, **row} for row in saved["rows"]]
        seconds.append(saved["seconds"])

    report = {
        "folds": folds,
        "n_images": len(export.records),
        "export": export.identity,
        "config": base.to_dict(),
        "teachers": str(teachers) if teachers is not None else None,
        "fold_seed": fold_seed,
        "device": base.device,
        "seconds_per_fold": float(np.mean(seconds)) if seconds else 0.0,
        "fold_of_subject": fold_of,
        "fold_metrics": fold_metrics,
        "summary": summarize_folds(fold_metrics),
        "pooled": pooled_metrics(rows, seed=base.seed),
    }
    (out / "crossval.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "crossval.md").write_text(markdown_report(report), encoding="utf-8")
    with open(out / "per_image.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PER_IMAGE_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{c: ("" if row.get(c) is None else row.get(c)) for c in PER_IMAGE_COLUMNS} for row in rows])
    return report
