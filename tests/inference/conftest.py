"""Fixtures of the inference tests: tiny CMTNet checkpoints, a registered active model, sample
images to import, and the real-worker factory (``tests/inference/worker.py``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import SAMPLE
from tests.inference.worker import celery_worker  # noqa: F401  (fixture)

TINY = {"width": 0.0625, "image_size": 64}


def make_checkpoint(path: Path, *, lung: float | None = None, disease: float | None = None, seed: int = 0) -> Path:
    """Write a tiny CMTNet checkpoint (width 0.0625, 64 px) with the training package.

    Random weights by default. ``lung``/``disease`` pin that decoder's output to a constant foreground
    probability (a 1x1 classifier with zero weights and a bias), so a test knows what the model
    "sees": e.g. ``lung=0.9`` marks the whole image as lung, ``lung=0.1`` nothing.
    """
    from training.checkpoint import save_checkpoint
    from training.config import ModelConfig
    from training.model import CMTNet

    torch.manual_seed(seed)
    model = CMTNet(ModelConfig(width=TINY["width"], image_size=TINY["image_size"], pretrained=False))
    for decoder, probability in ((model.lung_decoder, lung), (model.disease_decoder, disease)):
        if probability is not None:
            logit = float(torch.logit(torch.tensor(probability)))
            with torch.no_grad():
                decoder.classifier.weight.zero_()
                decoder.classifier.bias.copy_(torch.tensor([0.0, logit]))
    return save_checkpoint(path, model, normalization={"mean": [0.5] * 3, "std": [0.25] * 3})


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Named tiny checkpoints, written once per session (each has its own sha256)."""
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        # The whole image is lung; disease probability 0.8 everywhere: one large suggested region.
        "plumbing": make_checkpoint(root / "plumbing.pt", lung=0.9, disease=0.8),
        "random": make_checkpoint(root / "random.pt", seed=1),
        "no_lungs": make_checkpoint(root / "no_lungs.pt", lung=0.1, disease=0.1),
        "all_lung": make_checkpoint(root / "all_lung.pt", lung=0.9, disease=0.1),
        "other": make_checkpoint(root / "other.pt", lung=0.9, disease=0.8, seed=2),
    }


@pytest.fixture
def register():
    """``register(path, name=..., activate=...)``: the registry service on a checkpoint file."""
    from inference.services import model_version_register

    def run(path: Path, **kwargs):
        with open(path, "rb") as fh:
            return model_version_register(file=fh, **kwargs)

    return run


@pytest.fixture
def active_model(db, register, checkpoints):
    """The plumbing checkpoint, registered and active (no radiographs yet, so nothing is queued)."""
    return register(checkpoints["plumbing"], name="tiny-plumbing", activate=True)


@pytest.fixture
def predictor_reset():
    """Each test loads models afresh (the per-process cache is keyed by sha256 and survives tests)."""
    from inference.runtime import predictor_cache_clear

    predictor_cache_clear()
    yield
    predictor_cache_clear()


def small_sample_images(count: int, *, lung_boxes_only: bool = False) -> list[Path]:
    """The ``count`` smallest frontal image files of the sample (by file size, so imports are quick).

    With ``lung_boxes_only``, only images that the sample's lung-box annotations cover.
    """
    import csv

    if not SAMPLE.is_dir():
        pytest.skip("sample data not available")
    frontal = set()
    with open(SAMPLE / "metadata.csv", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if (row.get("view") or "").strip() in {"PA", "AP", "AP Supine", "AP erect"}:
                frontal.add(row["file"])
    if lung_boxes_only:
        coco = json.loads((SAMPLE / "annotations" / "lung_boxes.json").read_text())
        frontal &= {Path(image["file_name"]).name for image in coco["images"]}
    files = sorted((p for p in (SAMPLE / "images").iterdir() if p.name in frontal), key=lambda p: (p.stat().st_size, p.name))
    if len(files) < count:
        pytest.skip(f"the sample has fewer than {count} suitable images")
    return files[:count]


def import_files(paths: list[Path], *, dataset: str = "tiny"):
    """Import sample files through the real import service (which asks for pre-annotation)."""
    from annotator.services.imports import SourceFile, dataset_get_or_create, radiographs_import

    def reader(path: Path):
        def read(limit: int) -> bytes:
            with open(path, "rb") as fh:
                return fh.read(limit)

        return read

    ds = dataset_get_or_create(name=dataset)
    sources = [SourceFile(name=p.name, size=p.stat().st_size, read=reader(p)) for p in paths]
    return radiographs_import(dataset=ds, sources=sources, metadata={})
