"""bench/covid_null.py: the out-of-fold COVID AUC of a classifier without signal under crossval's folds,
against the same classifier with the true labels, on an export where COVID shows in the image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from bench import covid_null
from tests.training.sample_export import build_synthetic_export


def _export_where_covid_is_brighter(dest: Path) -> Path:
    export = build_synthetic_export(dest, n_images=48)
    with open(export / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = list(reader.fieldnames or []), list(reader)
    for row in rows:
        number = int(row["subject_id"].lstrip("s"))
        row["covid"] = "negative" if number % 3 == 0 else "positive"  # 8 of 24 patients negative, two images each
        if row["covid"] == "positive":
            path = export / "images" / f"{row['image_id']}.png"
            image = np.asarray(Image.open(path).convert("L")).astype(np.int16)
            Image.fromarray(np.clip(image + 70, 0, 255).astype(np.uint8)).save(path)
    with open(export / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return export


def test_a_visible_label_ranks_far_above_what_shuffled_labels_give(tmp_path: Path, capsys) -> None:
    export = _export_where_covid_is_brighter(tmp_path / "export")
    out = tmp_path / "covid_null.json"
    assert covid_null.main([str(export), "--shuffles", "30", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == 48 and result["negative_images"] == 16
    stats = next(row for row in result["rows"] if row["features"] == "image statistics")
    assert stats["true_pooled_auc"] > 0.95 and len(stats["true_fold_aucs"]) == 5
    # Shuffled among patients, the labels say nothing: AUCs spread around 0.5, far below the true one.
    low, high = stats["null_ci95"]
    assert 0.3 < stats["null_mean"] < 0.7 and stats["null_sd"] > 0.02 and high < stats["true_pooled_auc"]
    assert stats["true_rank_in_null"] == 1.0
    assert "| image statistics |" in capsys.readouterr().out
