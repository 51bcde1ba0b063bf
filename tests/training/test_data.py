"""The export dataset: shapes, switches, the paper's COVID copies, paired augmentation, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.config import AugmentConfig
from training.data import (
    ExportDataset,
    class_weights,
    compute_normalization,
    equalize_histogram,
    label_target,
    load_gray,
    minority_copies,
    prepare_image,
    resize_mask,
    subject_split,
)
from training.export import ExportRecord, read_export
from training.transforms import Affine, apply_affine, covid_variants


def dataset(root: Path, augment: AugmentConfig | None = None, split: str = "train", size: int = 32) -> ExportDataset:
    export = read_export(root)
    return ExportDataset(root, export.split(split), image_size=size, augment=augment)


def test_items_have_model_size_tensors_and_switches_from_labels(synthetic_export: Path) -> None:
    ds = dataset(synthetic_export, split="train")
    for i in range(len(ds)):
        item = ds[i]
        record = ds.records[int(item["index"])]
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["lung_mask"].shape == (32, 32) and set(item["lung_mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["has_lung_mask"] == float(record.has_lung_mask)
        assert item["has_disease_mask"] == float(record.has_disease_mask)
        assert item["has_covid"] == float(record.covid != "unknown")
        assert item["has_other"] == float(record.other_disease != "unknown")
        assert item["has_health"] == float(record.healthy != "unknown")
        if record.covid == "positive":
            assert item["diagnosis"][0] == 1
        if record.healthy == "positive":
            assert item["health"] == 0  # index 0 = healthy
        if not record.has_lung_mask:
            assert item["lung_mask"].sum() == 0


def test_label_target_mapping() -> None:
    assert label_target("positive") == (1, 1.0)
    assert label_target("negative") == (0, 1.0)
    assert label_target("unknown") == (0, 0.0)
    assert label_target("positive", positive_is=0) == (0, 1.0)


def record(i: int, covid: str, healthy: str = "negative", other: str = "unknown") -> ExportRecord:
    return ExportRecord(
        image_id=f"img{i}", subject_id=f"s{i}", dataset="d", view="PA", healthy=healthy, covid=covid,
        other_disease=other, has_lung_mask=False, has_disease_mask=False, split="train", width=64, height=64,
    )


def test_the_papers_copies_go_to_the_minority_covid_class_as_many_as_balance_it() -> None:
    rare_covid = [record(0, "positive")] + [record(i, "negative") for i in range(1, 12)]
    assert minority_copies(rare_covid) == ("positive", 5)  # the paper's case: five copies of each COVID image
    covid_heavy = [record(i, "positive") for i in range(30)] + [record(i, "negative") for i in range(30, 40)] + [record(99, "unknown")]
    assert minority_copies(covid_heavy) == ("negative", 2)  # 10 x 3 = 30 negatives against 30 positives
    balanced = [record(i, "positive") for i in range(5)] + [record(i, "negative") for i in range(5, 10)]
    assert minority_copies(balanced) == (None, 0)
    assert minority_copies([record(i, "positive") for i in range(5)]) == (None, 0)


def test_the_dataset_copies_only_minority_images_and_evaluation_copies_nothing(make_synthetic_export) -> None:
    export = make_synthetic_export()
    copied = dataset(export, AugmentConfig(covid_copies=True))
    plain = dataset(export, AugmentConfig(covid_copies=False))
    label, copies = minority_copies(copied.records)
    assert len(plain) == len(plain.records)
    assert len(copied) == len(copied.records) + copies * sum(r.covid == label for r in copied.records)
    assert {copied.records[p].covid for p, variant in copied.items if not variant.is_identity} <= {label}
    assert len(dataset(export, None)) == len(plain.records)


def test_class_weights_come_from_the_label_counts_of_an_epochs_samples(make_synthetic_export) -> None:
    ds = dataset(make_synthetic_export(), AugmentConfig(covid_copies=True))
    weights = class_weights(ds)
    samples = [ds.records[p] for p, _ in ds.items]
    healthy = sum(r.healthy == "positive" for r in samples)
    unhealthy = sum(r.healthy == "negative" for r in samples)
    assert weights["health"] == pytest.approx([min(10.0, (healthy + unhealthy) / (2 * healthy)), (healthy + unhealthy) / (2 * unhealthy)])
    # Weighted, each class contributes the same total: w_pos * n_pos == w_neg * n_neg (unless capped).
    positives = sum(r.covid == "positive" for r in samples)
    negatives = sum(r.covid == "negative" for r in samples)
    assert weights["diagnosis_pos"][0] * positives == pytest.approx(weights["diagnosis_neg"][0] * negatives)


def test_covid_variants_are_the_papers_rotations_and_shifts() -> None:
    variants = covid_variants(224)
    assert sorted(v.angle for v in variants) == [-10, 0, 0, 0, 10]
    shifts = {(v.shift_x, v.shift_y) for v in variants if v.angle == 0}
    assert shifts == {(10, 0), (0, 10), (10, 10)}
    assert covid_variants(112)[2].shift_x == 5  # scaled with the image size


def test_augmented_copies_move_image_and_masks_together(synthetic_export: Path) -> None:
    augment = AugmentConfig(covid_copies=True, generic=True, contrast_range=0.0)
    ds = dataset(synthetic_export, augment, size=64)
    ds.normalization = {"mean": [0.0] * 3, "std": [1.0] * 3}  # keep raw [0, 1] intensities
    checked = 0
    for i in range(len(ds)):
        item = ds[i]
        if not item["has_lung_mask"]:
            continue
        # The synthetic lungs are the dark regions, so wherever the image is not padding (exactly 0
        # after a rotation or shift), "dark" and "lung" must agree if both moved the same way.
        image, lung = item["image"][0], item["lung_mask"] > 0
        inside = image > 0
        agree = ((image < 0.45) == lung)[inside].float().mean()
        assert agree > 0.9, f"item {i}: image and mask do not line up ({agree:.2f} agreement)"
        checked += 1
    assert checked > 0 and len(ds) > len(ds.records)  # every item is randomly moved, and copies were among them


def test_apply_affine_uses_one_transform_for_image_and_masks() -> None:
    mask = torch.zeros(48, 48)
    mask[10:30, 6:20] = 1
    image = mask.clone()[None]
    for transform in [Affine(angle=10), Affine(shift_x=5, shift_y=-3), Affine(angle=-7, shift_x=2, scale=1.1)]:
        warped_image, (warped_mask,) = apply_affine(image, [mask], transform)
        assert not torch.equal(warped_mask, mask)
        agree = ((warped_image[0] > 0.5) == (warped_mask > 0.5)).float().mean()
        assert agree > 0.98
    same_image, (same_mask,) = apply_affine(image, [mask], Affine())
    assert same_image is image and same_mask is mask


def test_generic_augmentation_is_random_per_epoch_but_reproducible(synthetic_export: Path) -> None:
    ds = dataset(synthetic_export, AugmentConfig(covid_copies=False, generic=True))
    ds.set_epoch(0)
    a = ds[0]["image"]
    assert torch.equal(a, ds[0]["image"])  # same epoch, same sample: same augmentation
    ds.set_epoch(1)
    assert not torch.equal(a, ds[0]["image"])


def test_normalization_is_computed_from_training_images(synthetic_export: Path) -> None:
    ds = dataset(synthetic_export)
    norm = compute_normalization(ds)
    pixels = np.concatenate([ds.load_resized(i)[0].ravel() / 255.0 for i in range(len(ds.records))])
    assert norm["mean"] == pytest.approx([pixels.mean()] * 3, rel=1e-6)
    assert norm["std"] == pytest.approx([pixels.std()] * 3, rel=1e-4)
    ds.normalization = norm
    stacked = torch.stack([ds[i]["image"] for i in range(len(ds.records))])
    assert stacked.mean().item() == pytest.approx(0.0, abs=1e-4)


def _darker(image: np.ndarray, gamma: float = 2.2, scale: float = 0.6) -> np.ndarray:
    """The same radiograph at another exposure: a gamma curve and less contrast, grey levels in the same order."""
    return np.round(255 * scale * (image / 255.0) ** gamma).astype(np.uint8)


def test_equalisation_undoes_another_exposure_and_spans_every_grey_level() -> None:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(120, 30, size=(64, 64)), 0, 255).astype(np.uint8)
    darker = _darker(image)
    assert np.abs(image.astype(int) - darker.astype(int)).mean() > 40  # visibly another image
    a, b = equalize_histogram(image), equalize_histogram(darker)
    assert a.min() == 0 and a.max() == 255 and b.min() == 0 and b.max() == 255
    # Grey levels keep their order, and the darker copy comes back close to the original's result
    # (it differs only where the darker curve merged neighbouring levels).
    assert np.all(np.diff(a.ravel()[np.argsort(image.ravel(), kind="stable")].astype(int)) >= 0)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
    flat = np.full((8, 8), 77, np.uint8)
    assert np.array_equal(equalize_histogram(flat), flat)


def test_an_equalising_dataset_serves_another_exposure_alike(make_synthetic_export) -> None:
    root = make_synthetic_export()
    export = read_export(root)
    record = export.records[0]
    path = record.image_path(root)
    original = load_gray(path)
    plain = ExportDataset(root, [record], image_size=32, cache=False)
    equalising = ExportDataset(root, [record], image_size=32, cache=False, equalize=True)
    before_plain, before_eq = plain[0]["image"], equalising[0]["image"]
    Image.fromarray(_darker(original)).save(path)
    assert (plain[0]["image"] - before_plain).abs().mean() > 0.5  # without it the input moves by half a std
    assert (equalising[0]["image"] - before_eq).abs().mean() < 0.1
    assert np.array_equal(equalising.load_resized(0)[0], prepare_image(_darker(original), 32, equalize=True))


def test_healthy_images_without_a_disease_mask_serve_an_empty_one_only_when_asked(make_synthetic_export) -> None:
    root = make_synthetic_export(n_images=30)
    export = read_export(root)
    plain = ExportDataset(root, export.records, image_size=32)
    teaching = ExportDataset(root, export.records, image_size=32, healthy_empty_disease=True)
    kinds = set()
    for i in range(len(teaching)):
        record, item, before = teaching.records[i], teaching[i], plain[i]
        healthy_without = record.healthy == "positive" and not record.has_disease_mask
        kinds.add((record.healthy, record.has_disease_mask))
        assert before["has_disease_mask"] == float(record.has_disease_mask)  # the paper's switch
        assert item["has_disease_mask"] == float(record.has_disease_mask or healthy_without)
        if healthy_without:
            assert item["disease_mask"].sum() == 0
        else:  # an image's own mask, drawn or empty, and every other label, are served as before
            assert torch.equal(item["disease_mask"], before["disease_mask"])
    assert {("positive", False), ("positive", True), ("negative", False), ("unknown", False)} <= kinds


def test_resize_mask_stays_binary() -> None:
    mask = np.zeros((50, 70), np.uint8)
    mask[10:40, 5:30] = 255
    resized = resize_mask(mask, 32)
    assert resized.shape == (32, 32)
    assert set(np.unique(resized)) <= {0, 1}


def test_validation_split_keeps_subjects_together(synthetic_export: Path) -> None:
    records = read_export(synthetic_export).split("train")
    keep, held = subject_split(records, 0.3, seed=0)
    assert held and keep
    assert not {r.subject_id for r in keep} & {r.subject_id for r in held}
    assert len(keep) + len(held) == len(records)
    assert subject_split(records, 0.3, seed=0)[1] == held  # stable
    assert subject_split(records, 0.0, seed=0) == (records, [])


def test_real_sample_export_is_sound_and_subject_disjoint(sample_lung_export: Path) -> None:
    sample_export = sample_lung_export
    assert verify_export_problems(sample_export) == []
    export = read_export(sample_export)
    train_subjects = {r.subject_id for r in export.split("train")}
    test_subjects = {r.subject_id for r in export.split("test")}
    assert train_subjects and test_subjects and not train_subjects & test_subjects
    assert not any(r.view in {"L", "Axial", "Coronal"} for r in export.records)
    assert any(r.has_lung_mask for r in export.records) and any(r.has_disease_mask for r in export.records)
    ds = ExportDataset(sample_export, [r for r in export.records if r.has_lung_mask][:3], image_size=64)
    item = ds[0]
    assert item["lung_mask"].sum() > 0 and item["image"].shape == (3, 64, 64)


def verify_export_problems(path: Path) -> list[str]:
    from training.export import verify_export

    return verify_export(path)
