"""Export-v1 reading and verification: every kind of damage is reported and names its file."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.export import LABEL_COLUMNS, ExportError, read_export, verify_export


def rewrite_labels(root: Path, edit) -> None:
    with open(root / "labels.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = list(reader.fieldnames), list(reader)
    columns, rows = edit(columns, rows)
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def refresh_manifest(root: Path) -> None:
    """Re-hash every file, so that only the deliberate damage remains."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_a_sound_export_has_no_problems(synthetic_export: Path) -> None:
    assert verify_export(synthetic_export) == []


def test_reader_parses_typed_records(synthetic_export: Path) -> None:
    export = read_export(synthetic_export)
    assert len(export.records) == 12
    first = export.records[0]
    assert first.image_id == "img000" and first.covid == "positive" and first.has_lung_mask is True
    assert isinstance(first.width, int)
    assert {r.split for r in export.records} == {"train", "test"}
    assert export.identity["manifest_sha256"] and export.identity["created"]


def test_reader_rejects_a_missing_column_with_a_clear_error(make_synthetic_export) -> None:
    root = make_synthetic_export()
    rewrite_labels(root, lambda cols, rows: ([c for c in cols if c != "covid"], rows))
    with pytest.raises(ExportError) as error:
        read_export(root)
    assert "labels.csv" in str(error.value) and "covid" in str(error.value) and "missing column" in str(error.value)


def test_reader_rejects_unknown_label_values_naming_the_line(make_synthetic_export) -> None:
    root = make_synthetic_export()

    def edit(cols, rows):
        rows[2]["healthy"] = "maybe"
        return cols, rows

    rewrite_labels(root, edit)
    with pytest.raises(ExportError, match=r"labels.csv line 4: healthy is 'maybe'"):
        read_export(root)


def test_reader_without_labels_csv_says_so(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="labels.csv not found"):
        read_export(tmp_path)


def damage_changed_file(root: Path) -> str:
    with open(root / "images" / "img001.png", "ab") as fh:
        fh.write(b"\0")
    return "images/img001.png: sha256 does not match"


def damage_missing_file(root: Path) -> str:
    (root / "masks" / "lung" / "img000.png").unlink()
    return "masks/lung/img000.png: listed in manifest.json but missing"


def damage_unlisted_file(root: Path) -> str:
    (root / "notes.txt").write_text("hello")
    return "notes.txt: present but not listed"


def damage_format(root: Path) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format"] = "lungmark-export/2"
    (root / "manifest.json").write_text(json.dumps(manifest))
    return "manifest.json: format is 'lungmark-export/2'"


def damage_manifest_json(root: Path) -> str:
    (root / "manifest.json").write_text("{not json")
    return "manifest.json: not valid JSON"


def damage_missing_column(root: Path) -> str:
    rewrite_labels(root, lambda cols, rows: ([c for c in cols if c != "split"], rows))
    refresh_manifest(root)
    return "labels.csv: missing column(s) split"


def damage_bad_split(root: Path) -> str:
    def edit(cols, rows):
        rows[0]["split"] = "validation"
        return cols, rows

    rewrite_labels(root, edit)
    refresh_manifest(root)
    return "labels.csv line 2: split is 'validation'"


def damage_flag_without_mask(root: Path) -> str:
    def edit(cols, rows):
        rows[1]["has_disease_mask"] = "1"  # img001 has no disease mask file
        return cols, rows

    rewrite_labels(root, edit)
    refresh_manifest(root)
    return "masks/disease/img001.png: missing although labels.csv has has_disease_mask=1"


def damage_mask_without_flag(root: Path) -> str:
    def edit(cols, rows):
        rows[0]["has_lung_mask"] = "0"
        return cols, rows

    rewrite_labels(root, edit)
    refresh_manifest(root)
    return "masks/lung/img000.png: present although labels.csv has has_lung_mask=0"


def damage_mask_size(root: Path) -> str:
    Image.new("L", (5, 5), 255).save(root / "masks" / "lung" / "img000.png")
    refresh_manifest(root)
    return "masks/lung/img000.png: size 5x5 differs from the image's"


def damage_mask_values(root: Path) -> str:
    path = root / "masks" / "lung" / "img000.png"
    mask = np.asarray(Image.open(path)).copy()
    mask[0, 0] = 128
    Image.fromarray(mask).save(path)
    refresh_manifest(root)
    return "masks/lung/img000.png: not binary"


def damage_image_mode(root: Path) -> str:
    path = root / "images" / "img002.png"
    Image.open(path).convert("RGB").save(path)
    refresh_manifest(root)
    return "images/img002.png: mode RGB, expected 8-bit grayscale"


def damage_image_size(root: Path) -> str:
    def edit(cols, rows):
        rows[3]["width"] = "999"
        return cols, rows

    rewrite_labels(root, edit)
    refresh_manifest(root)
    return "images/img003.png: size"


def damage_subject_in_both_splits(root: Path) -> str:
    def edit(cols, rows):
        rows[0]["subject_id"] = rows[4]["subject_id"]  # img004 is a test subject, img000 train
        rows[0]["split"] = "train"
        return cols, rows

    rewrite_labels(root, edit)
    refresh_manifest(root)
    return "is in both train and test"


def damage_orphan_mask(root: Path) -> str:
    Image.new("L", (8, 8), 0).save(root / "masks" / "disease" / "ghost.png")
    refresh_manifest(root)
    return "masks/disease/ghost.png: no row in labels.csv"


def damage_duplicate_row(root: Path) -> str:
    rewrite_labels(root, lambda cols, rows: (cols, rows + [rows[0]]))
    refresh_manifest(root)
    return "image_id 'img000' repeats line 2"


@pytest.mark.parametrize(
    "damage",
    [
        damage_changed_file,
        damage_missing_file,
        damage_unlisted_file,
        damage_format,
        damage_manifest_json,
        damage_missing_column,
        damage_bad_split,
        damage_flag_without_mask,
        damage_mask_without_flag,
        damage_mask_size,
        damage_mask_values,
        damage_image_mode,
        damage_image_size,
        damage_subject_in_both_splits,
        damage_orphan_mask,
        damage_duplicate_row,
    ],
)
def test_verify_export_reports_each_kind_of_damage_naming_the_file(make_synthetic_export, damage) -> None:
    root = make_synthetic_export()
    expected = damage(root)
    problems = verify_export(root)
    assert any(expected in p for p in problems), problems


def test_verify_export_of_a_missing_folder(tmp_path: Path) -> None:
    assert verify_export(tmp_path / "nope") == [f"{tmp_path / 'nope'}: not a directory"]


def test_label_columns_are_the_design_contract() -> None:
    assert LABEL_COLUMNS == (
        "image_id", "subject_id", "dataset", "view", "healthy", "covid", "other_disease",
        "has_lung_mask", "has_disease_mask", "split", "width", "height",
    )
