"""``python -m training``: train, resume, evaluate, predict, verify, baselines and ablation, end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.checkpoint import load_checkpoint
from training.cli import main

TINY = ["--width", "0.0625", "--image-size", "32", "--batch-size", "4"]


def test_train_resume_evaluate_predict_end_to_end(synthetic_export: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--export", str(synthetic_export), "--run-dir", str(run), *TINY, "--epochs", "1", "--seed", "3"]) == 0
    assert "best checkpoint" in capsys.readouterr().out
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    config = json.loads((run / "config.json").read_text())
    assert config["loss"]["lung_dice"] is True and config["schedule"] == "cosine"  # the CLI recipe
    assert config["seed"] == 3

    # Resume needs only the run directory: the stored config is reused, --epochs extends it.
    assert main(["train", "--run-dir", str(run), "--resume", "--epochs", "2"]) == 0
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert json.loads((run / "config.json").read_text())["seed"] == 3

    out = tmp_path / "eval" / "metrics.json"
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--export", str(synthetic_export), "--out", str(out)]) == 0
    assert "covid_auc" in capsys.readouterr().out
    assert "lung_box_iou" in json.loads(out.read_text())
    assert (out.parent / "roc.png").is_file()

    image = synthetic_export / "images" / "img001.png"
    jpeg = tmp_path / "photo.jpg"
    Image.open(image).convert("RGB").resize((90, 70)).save(jpeg)
    pred_dir = tmp_path / "pred"
    assert main(["predict", "--checkpoint", str(run / "best.pt"), str(image), str(jpeg), "--out", str(pred_dir)]) == 0
    width, height = Image.open(image).size
    lung = Image.open(pred_dir / "img001_lung.png")
    assert lung.size == (width, height) and set(np.unique(np.asarray(lung))) <= {0, 255}
    assert Image.open(pred_dir / "photo_disease.png").size == (90, 70)
    record = json.loads((pred_dir / "img001.json").read_text())
    assert set(record["probabilities"]) == {"healthy", "covid", "other_disease"}
    assert set(record["lung_boxes"]) == {"right", "left"} and "uncertainty" in record
    assert len(json.loads((pred_dir / "predictions.json").read_text())) == 2


def test_paper_flag_turns_the_recipe_off(synthetic_export: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--export", str(synthetic_export), "--run-dir", str(run), *TINY, "--epochs", "1", "--paper", "--tasks", "1,4"]
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["loss"]["lung_dice"] is False and config["schedule"] == "constant" and config["augment"]["generic"] is False
    assert config["model"]["tasks"] == [1, 4]


def test_task_weights_and_box_calibration_flags_reach_the_run(synthetic_export: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    args = ["train", "--export", str(synthetic_export), "--run-dir", str(run), *TINY, "--epochs", "1"]
    assert main([*args, "--task-weights", "health=0.25,diagnosis=0.5", "--no-box-calibration", "--test-sizes", "64,96", "--weight-average", "0.9", "--disease-foreground-weight", "3", "--healthy-empty-disease"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["loss"]["lung_weight"], config["loss"]["health_weight"], config["loss"]["diagnosis_weight"]) == (1.0, 0.25, 0.5)
    assert config["box_calibration"] is False and config["loss"]["disease_foreground_weight"] == 3.0
    assert config["loss"]["healthy_empty_disease"] is True
    assert config["model"]["test_sizes"] == [64, 96] and config["weight_average"] == 0.9
    assert load_checkpoint(run / "best.pt")["config"]["test_sizes"] == [64, 96]  # the served model answers at those sizes too
    capsys.readouterr()
    for bad, message in ((["--test-sizes", "40"], "multiples of 32"), (["--weight-average", "1"], "weight_average must be in")):
        assert main([*args, *bad]) == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--disease-foreground-weight must be a number > 0"):
        main([*args, "--disease-foreground-weight", "0"])
    with pytest.raises(SystemExit, match="comma-separated"):
        main([*args, "--test-sizes", "big"])

    with pytest.raises(SystemExit, match="unknown task 'covid'"):
        main([*args, "--task-weights", "covid=2"])


def test_a_model_trained_equalised_answers_another_exposure_alike(synthetic_export: Path, tmp_path: Path) -> None:
    from training.serve import Predictor

    run = tmp_path / "run"
    assert main(["train", "--export", str(synthetic_export), "--run-dir", str(run), *TINY, "--epochs", "1", "--equalize"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["equalize"] is True
    assert load_checkpoint(run / "best.pt")["config"]["equalize"] is True  # serving equalises too
    image = np.asarray(Image.open(synthetic_export / "images" / "img001.png").convert("L"))
    darker = np.round(255 * 0.6 * (image / 255.0) ** 2.2).astype(np.uint8)
    predictor = Predictor(run / "best.pt", device="cpu", threads=1)
    a, b = predictor.preprocess([image]), predictor.preprocess([darker])
    assert (a - b).abs().mean() < 0.1
    first, second = predictor.predict(image), predictor.predict(darker)
    assert np.abs(first.lung - second.lung).mean() < 0.02
    assert all(abs(first.probabilities[k] - second.probabilities[k]) < 0.02 for k in first.probabilities)


def test_verify_command_exit_codes(synthetic_export: Path, make_synthetic_export, capsys) -> None:
    assert main(["verify", str(synthetic_export)]) == 0
    broken = make_synthetic_export()
    (broken / "labels.csv").write_text("image_id\nx\n")
    assert main(["verify", str(broken)]) == 1
    assert "labels.csv" in capsys.readouterr().out


def test_bad_input_gives_one_clear_error_line(tmp_path: Path, capsys) -> None:
    code = main(["train", "--export", str(tmp_path), "--run-dir", str(tmp_path / "run"), *TINY, "--epochs", "1"])
    assert code == 2
    assert "labels.csv not found" in capsys.readouterr().err


def test_baselines_and_ablation_run_small_and_write_tables(synthetic_export: Path, trained_run, tmp_path: Path, capsys) -> None:
    out = tmp_path / "baselines"
    args = ["baselines", "--export", str(synthetic_export), "--out", str(out), "--checkpoint", str(trained_run.best_checkpoint),
            "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--no-pretrained"]
    assert main(args) == 0
    table = (out / "baselines.md").read_text()
    for model in ("densenet121", "mobilenet_v2", "resnet18", "vgg19_fc", "CMTNet", "RandomForest", "SVM sigmoid", "SVM RBF"):
        assert model in table
    header = (out / "baselines.csv").read_text().splitlines()[0]
    assert header.startswith("model,accuracy,auc,sensitivity_at_90_specificity,sensitivity_at_99_specificity,eer")
    assert (out / "roc.png").is_file()

    out = tmp_path / "ablation"
    args = ["ablation", "--export", str(synthetic_export), "--out", str(out), *TINY, "--epochs", "1", "--subsets", "3,4;1,2,3,4", "--no-pretrained"]
    assert main(args) == 0
    with open(out / "ablation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["tasks"] for r in rows] == ["{3,4}", "{1,2,3,4}"]
    assert {"covid_sensitivity_at_90_specificity", "covid_sensitivity_at_99_specificity"} <= set(rows[0])
    assert (out / "tasks_3-4" / "best.pt").is_file()
    assert "{1,2,3,4}" in capsys.readouterr().out


def test_module_entry_point_help() -> None:
    result = subprocess.run([sys.executable, "-m", "training", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("train", "evaluate", "predict", "baselines", "ablation", "verify"):
        assert command in result.stdout
