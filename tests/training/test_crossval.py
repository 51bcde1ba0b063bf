"""Cross-validation over a whole export, scoring a whole export, and the annotated-box comparison."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.boxes import lung_boxes_from_mask
from training.cli import main
from training.crossval import subject_folds
from training.evaluate import predicted_lung_boxes
from training.export import ExportRecord, annotated_lung_boxes, read_export
from training.metrics import bootstrap_ci, roc_auc

TINY = ["--width", "0.0625", "--image-size", "32", "--batch-size", "4", "--epochs", "1"]


def record(i: int, subject: str, covid: str, split: str = "train") -> ExportRecord:
    return ExportRecord(
        image_id=f"img{i}", subject_id=subject, dataset="d", view="PA", healthy="unknown", covid=covid,
        other_disease="unknown", has_lung_mask=False, has_disease_mask=False, split=split, width=64, height=64,
    )


def test_folds_are_subject_disjoint_stratified_and_even_whatever_the_frozen_split() -> None:
    records, i = [], 0
    for s in range(20):  # 20 COVID subjects with 1-3 images, 10 negative subjects with 1-2 images
        for _ in range(1 + s % 3):
            records.append(record(i, f"pos{s}", "positive", split="test" if s % 4 == 0 else "train"))
            i += 1
    for s in range(10):
        for _ in range(1 + s % 2):
            records.append(record(i, f"neg{s}", "negative"))
            i += 1
    fold_of = subject_folds(records, 5, seed=1)
    assert set(fold_of) == {r.subject_id for r in records}  # every subject once, both frozen splits included
    per_fold = Counter(fold_of[r.subject_id] for r in records)
    positives = Counter(fold_of[r.subject_id] for r in records if r.covid == "positive")
    negatives = Counter(fold_of[r.subject_id] for r in records if r.covid == "negative")
    assert max(per_fold.values()) - min(per_fold.values()) <= 3
    assert max(positives.values()) - min(positives.values()) <= 3 and min(positives.values()) > 0
    assert max(negatives.values()) - min(negatives.values()) <= 2 and min(negatives.values()) > 0
    assert subject_folds(records, 5, seed=1) == fold_of  # reproducible


def test_more_folds_than_subjects_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="5 folds need at least 5 subjects"):
        subject_folds([record(i, f"s{i}", "positive") for i in range(4)], 5)


@pytest.fixture(scope="module")
def crossval_run(synthetic_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crossval") / "cv"
    assert main(["crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(out), *TINY]) == 0
    return out


def test_crossval_scores_every_image_once_by_a_model_that_never_saw_its_subject(crossval_run: Path, synthetic_export: Path) -> None:
    export = read_export(synthetic_export)
    report = json.loads((crossval_run / "crossval.json").read_text())
    with open(crossval_run / "per_image.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["image_id"] for r in rows) == sorted(r.image_id for r in export.records)
    for row in rows:
        assert int(row["fold"]) == report["fold_of_subject"][row["subject"]]
    for fold in range(3):
        view = read_export(crossval_run / f"fold_{fold}" / "export")
        train_subjects = {r.subject_id for r in view.split("train")}
        test_subjects = {r.subject_id for r in view.split("test")}
        assert test_subjects and not (train_subjects & test_subjects)
        assert len(view.records) == len(export.records)
        run_config = json.loads((crossval_run / f"fold_{fold}" / "run" / "config.json").read_text())
        assert run_config["resolved"]["train_images"] + run_config["resolved"]["val_images"] == len(view.split("train"))


def test_crossval_report_has_mean_and_sd_of_every_evaluate_metric(crossval_run: Path) -> None:
    report = json.loads((crossval_run / "crossval.json").read_text())
    assert report["folds"] == 3 and len(report["fold_metrics"]) == 3
    for key in ("lung_dice", "lung_box_iou", "covid_accuracy", "other_disease_accuracy", "n_images"):
        assert set(report["summary"][key]) == {"mean", "sd", "n"}
    lung = [m["lung_dice"] for m in report["fold_metrics"] if m["lung_dice"] is not None]
    assert report["summary"]["lung_dice"]["mean"] == pytest.approx(np.mean(lung))
    assert report["summary"]["lung_dice"]["sd"] == pytest.approx(np.std(lung, ddof=1))
    assert "covid_auc" in report["pooled"] and "covid_auc_ci95" in report["pooled"]
    table = (crossval_run / "crossval.md").read_text()
    assert "| lung_dice |" in table and " ± " in table and "95% CI" in table
    with open(crossval_run / "per_image.csv", newline="") as fh:
        header = next(csv.reader(fh))
    for column in ("fold", "image_id", "subject", "lung_dice", "lung_box_iou_right", "lung_box_iou_left", "disease_dice",
                   "covid_prob", "healthy_prob", "covid_label"):
        assert column in header


def test_a_finished_crossval_is_not_retrained(crossval_run: Path, synthetic_export: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in crossval_run.glob("fold_*/run/best.pt")}
    assert main(["crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(crossval_run), *TINY]) == 0
    assert {p: p.stat().st_mtime_ns for p in crossval_run.glob("fold_*/run/best.pt")} == before



def test_folds_run_at_once_in_their_own_processes_give_the_same_report(crossval_run: Path, synthetic_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    assert main(["crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(out), "--jobs", "3", *TINY]) == 0
    parallel, serial = (json.loads((d / "crossval.json").read_text()) for d in (out, crossval_run))
    assert parallel["fold_of_subject"] == serial["fold_of_subject"]
    with open(out / "per_image.csv", newline="") as fh:
        assert sorted(r["image_id"] for r in csv.DictReader(fh)) == sorted(r.image_id for r in read_export(synthetic_export).records)
    # Same seed, same folds, same recipe: each fold's model scores as the one trained in this process did.
    for a, b in zip(parallel["fold_metrics"], serial["fold_metrics"]):
        assert a["n_images"] == b["n_images"]
        assert a["lung_dice"] == pytest.approx(b["lung_dice"], abs=0.02)


def test_another_training_seed_can_repeat_a_recipe_on_the_same_folds(crossval_run: Path, synthetic_export: Path, tmp_path: Path) -> None:
    serial = json.loads((crossval_run / "crossval.json").read_text())
    other_folds = tmp_path / "seed1"
    assert main(["crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(other_folds), "--seed", "1", *TINY]) == 0
    same_folds = tmp_path / "seed1-folds0"
    assert main(["crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(same_folds), "--seed", "1", "--fold-seed", "0", *TINY]) == 0
    moved = json.loads((other_folds / "crossval.json").read_text())
    repeated = json.loads((same_folds / "crossval.json").read_text())
    assert moved["fold_of_subject"] != serial["fold_of_subject"]  # the seed moves the folds by default
    assert repeated["fold_of_subject"] == serial["fold_of_subject"] and repeated["fold_seed"] == 0
    assert repeated["config"]["seed"] == 1


def test_a_fold_that_fails_in_its_process_is_named_with_its_error(synthetic_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cv"
    shutil.copytree(synthetic_export, tmp_path / "export")
    code = main(["crossval", "--export", str(tmp_path / "export"), "--folds", "3", "--out", str(out), "--jobs", "2", "--device", "cuda:9", *TINY])
    assert code == 1
    error = capsys.readouterr().err
    assert "cross-validation folds failed: fold 1: ValueError: device 'cuda:9' requested but CUDA is not available; fold 2: " in error
    assert "; fold 3: ValueError" in error
    assert not (out / "crossval.json").exists()



def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; it only waits to be reaped


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_a_parallel_crossval_stops_its_fold_processes(signum: int, synthetic_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "cv"
    command = [sys.executable, "-m", "training", "crossval", "--export", str(synthetic_export), "--folds", "3", "--out", str(out),
               "--jobs", "2", *TINY[:-1], "500"]
    parent = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        children_file = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        folds_started = lambda: all((out / f"fold_{k}" / "run" / "metrics.jsonl").is_file() for k in (0, 1))  # noqa: E731
        assert _wait(folds_started, 120), "the two folds never started training"
        children = [int(pid) for pid in children_file.read_text().split()]
        assert len(children) >= 2
        parent.send_signal(signum)
        parent.wait(timeout=30)
        assert _wait(lambda: not any(_alive(pid) for pid in children), 15), "fold processes outlived the cross-validation"
    finally:
        parent.kill()
        parent.wait()


def _with_lung_boxes(export: Path, dest: Path, source: str, kinds: tuple[str, ...] = ()) -> Path:
    """A copy of ``export`` whose coco.json holds each lung mask's boxes, marked ``box_source``, and,
    with ``kinds``, each image's ``lung_mask`` (taken in turn from ``kinds``)."""
    shutil.copytree(export, dest)
    images, annotations = [], []
    for n, record in enumerate(r for r in read_export(dest).records if r.has_lung_mask):
        images.append({"id": n, "file_name": f"{record.image_id}.png", "width": record.width, "height": record.height})
        if kinds:
            images[-1]["lung_mask"] = kinds[n % len(kinds)]
        pixels = np.asarray(Image.open(dest / "masks" / "lung" / f"{record.image_id}.png")) > 0
        for side, category in (("right", 1), ("left", 2)):
            box = lung_boxes_from_mask(pixels)[side] or [0, 0, record.width // 2, record.height]
            x0, y0, x1, y1 = box
            annotations.append({"image_id": n, "category_id": category, "bbox": [x0, y0, x1 - x0, y1 - y0], "attributes": {"box_source": source}})
    coco = {"categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}], "images": images, "annotations": annotations}
    (dest / "coco.json").write_text(json.dumps(coco))
    return dest


def test_rescore_scores_the_trained_folds_again_without_training(crossval_run: Path, synthetic_export: Path, tmp_path: Path) -> None:
    cv = tmp_path / "cv"
    shutil.copytree(crossval_run, cv, symlinks=True)
    weights = {p.parts[-3]: torch.load(p, weights_only=True)["state_dict"] for p in cv.glob("fold_*/run/best.pt")}

    def rescore(export: Path) -> list[dict]:
        assert main(["crossval", "--export", str(export), "--folds", "3", "--out", str(cv), "--rescore", "--no-verify", *TINY]) == 0
        return json.loads((cv / "crossval.json").read_text())["fold_metrics"]

    drawn = rescore(_with_lung_boxes(synthetic_export, tmp_path / "drawn", "drawn"))
    assert any(m.get("lung_box_iou_annotated") is not None for m in drawn)
    # The same boxes, computed from the outlines: not annotators' boxes, so nothing to score them against.
    outline = rescore(_with_lung_boxes(synthetic_export, tmp_path / "outline", "outline"))
    assert all(m.get("lung_box_iou_annotated") is None for m in outline)
    assert [m["lung_dice"] for m in outline] == [m["lung_dice"] for m in drawn]
    for path in cv.glob("fold_*/run/best.pt"):
        checkpoint = torch.load(path, weights_only=True)
        assert "box_calibration" not in checkpoint  # too few drawn boxes left: none, not a stale one
        assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in weights[path.parts[-3]].items())  # not retrained


def test_lung_dice_against_outlines_leaves_filled_boxes_out_and_the_box_iou_has_an_interval(
    crossval_run: Path, synthetic_export: Path, tmp_path: Path
) -> None:
    cv = tmp_path / "cv"
    shutil.copytree(crossval_run, cv, symlinks=True)
    export = _with_lung_boxes(synthetic_export, tmp_path / "kinds", "drawn", kinds=("outline", "boxes", "outline"))
    assert main(["crossval", "--export", str(export), "--folds", "3", "--out", str(cv), "--rescore", "--no-verify", *TINY]) == 0
    report = json.loads((cv / "crossval.json").read_text())
    rows = [r for fold in sorted(cv.glob("fold_*/metrics.json")) for r in json.loads(fold.read_text())["rows"]]
    outline = [r["lung_dice"] for r in rows if r.get("lung_mask") == "outline"]
    boxes = [r["lung_dice"] for r in rows if r.get("lung_mask") == "boxes"]
    assert outline and boxes and len(outline) + len(boxes) == sum(1 for r in rows if "lung_dice" in r)
    assert report["pooled"]["lung_dice_outline"] == pytest.approx(np.mean(outline))
    assert report["pooled"]["lung_dice"] == pytest.approx(np.mean(outline + boxes))
    for fold in sorted(cv.glob("fold_*/metrics.json")):
        saved = json.loads(fold.read_text())
        mine = [r["lung_dice"] for r in saved["rows"] if r.get("lung_mask") == "outline"]
        assert saved["metrics"]["lung_outline_images"] == len(mine)
        assert saved["metrics"]["lung_dice_outline"] == (pytest.approx(np.mean(mine)) if mine else None)
    low, high = report["pooled"]["lung_box_iou_annotated_ci95"]
    assert low <= report["pooled"]["lung_box_iou_annotated"] <= high
    assert report["pooled"]["lung_boxes_both_iou_0_9"] <= report["pooled"]["lung_boxes_both_iou_0_8"]
    with open(cv / "per_image.csv", newline="") as fh:
        kinds = Counter(row["lung_mask"] for row in csv.DictReader(fh) if row["lung_dice"])
    assert kinds == Counter(outline=len(outline), boxes=len(boxes))
    assert "Pooled box IoU against drawn boxes" in (cv / "crossval.md").read_text()


def test_evaluate_split_all_scores_the_whole_export(trained_run, synthetic_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "all.json"
    assert main(["evaluate", "--checkpoint", str(trained_run.best_checkpoint), "--export", str(synthetic_export), "--split", "all", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    export = read_export(synthetic_export)
    assert metrics["split"] == "all" and metrics["n_images"] == len(export.records)
    assert len(export.split("train")) < metrics["n_images"]


def test_predicted_lung_boxes_are_in_the_images_own_pixels() -> None:
    prob = torch.zeros(32, 32)
    prob[4:28, 2:14] = 0.9  # image-left lung: the patient's right
    prob[6:26, 18:30] = 0.9
    boxes = predicted_lung_boxes(prob, width=320, height=160)
    # Bilinear resizing blurs each edge by up to one model pixel (10 px across, 5 px down here).
    assert boxes["right"] == pytest.approx([20, 20, 140, 140], abs=10)
    assert boxes["left"] == pytest.approx([180, 30, 300, 130], abs=10)


def test_annotated_lung_boxes_are_read_from_coco(tmp_path: Path) -> None:
    coco = {
        "categories": [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}, {"id": 3, "name": "consolidation"}],
        "images": [{"id": 7, "file_name": "a.png"}, {"id": 8, "file_name": "b.png"}, {"id": 9, "file_name": "c.png"}, {"id": 10, "file_name": "d.png"}],
        "annotations": [
            {"image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40]},  # older exports: no attributes
            {"image_id": 7, "category_id": 2, "bbox": [50, 20, 30, 40]},
            {"image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5]},
            {"image_id": 8, "category_id": 1, "bbox": [1, 1, 2, 2]},  # one box only: not a lung-box image
            {"image_id": 9, "category_id": 1, "bbox": [10, 20, 30, 40], "attributes": {"box_source": "outline"}},
            {"image_id": 9, "category_id": 2, "bbox": [50, 20, 30, 40], "attributes": {"box_source": "outline"}},
            {"image_id": 10, "category_id": 1, "bbox": [11, 20, 30, 40], "attributes": {"box_source": "drawn"}},
            {"image_id": 10, "category_id": 2, "bbox": [50, 20, 30, 40], "attributes": {"box_source": "drawn"}},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    # Boxes computed from an outline are not what annotators draw: c is left out.
    assert annotated_lung_boxes(tmp_path) == {
        "a": {"right": [10, 20, 40, 60], "left": [50, 20, 80, 60]},
        "d": {"right": [11, 20, 41, 60], "left": [50, 20, 80, 60]},
    }
    assert annotated_lung_boxes(tmp_path / "nowhere") == {}


def test_the_bootstrap_interval_surrounds_the_auc_and_resamples_whole_subjects() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(40), np.zeros(40)]
    scores = labels * 0.6 + rng.random(80)
    low, high = bootstrap_ci(labels, scores, resamples=500)
    assert low < roc_auc(labels, scores) < high and high - low < 0.4
    assert bootstrap_ci(labels, labels, resamples=200) == (1.0, 1.0)
    # One subject holding all the images: every resample is the same data.
    same = bootstrap_ci(labels, scores, groups=["s"] * 80, resamples=50)
    assert same == pytest.approx((roc_auc(labels, scores),) * 2)
    assert bootstrap_ci(np.ones(5), np.ones(5)) is None


def test_the_disease_suggestion_bench_scores_every_image_of_a_crossval_once(crossval_run: Path, synthetic_export: Path, tmp_path: Path) -> None:
    from bench import disease_suggestions
    from training.data import load_gray

    out, per_image = tmp_path / "suggestions.json", tmp_path / "per_image.csv"
    assert disease_suggestions.main([f"tiny={crossval_run}", "--out", str(out), "--per-image", str(per_image)]) == 0
    export = read_export(synthetic_export)
    with open(per_image, newline="") as fh:
        rows = {r["image_id"]: r for r in csv.DictReader(fh)}
    assert sorted(rows) == sorted(r.image_id for r in export.records)
    for record in export.records:
        drawn = record.has_disease_mask and bool((load_gray(record.disease_mask_path(export.root)) > 0).any())
        expected = "finding" if drawn else "healthy" if record.healthy == "positive" else "empty_mask" if record.has_disease_mask else "no_mask"
        assert rows[record.image_id]["kind"] == expected
        assert 0 <= float(rows[record.image_id]["area"]) <= 1
    summary = json.loads(out.read_text())["runs"]["tiny"]
    assert summary["finding_images"] == sum(r["kind"] == "finding" for r in rows.values()) > 0
    assert summary["healthy_images"] == sum(r["kind"] == "healthy" for r in rows.values()) > 0
