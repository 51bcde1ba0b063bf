"""Fixtures for the training package's tests: tiny synthetic exports and the real-sample export.

The sample data is looked up beside the repository (``<repo>/../shared/data/cxr-sample``) or at
``$LUNGMARK_SAMPLE_DATA``; tests that need it are skipped when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.sample_export import build_sample_export, build_synthetic_export, default_sample_dir


@pytest.fixture(scope="session")
def synthetic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-image export (40-72 px) with every label situation; read-only, shared by the session."""
    return build_synthetic_export(tmp_path_factory.mktemp("synthetic") / "export")


@pytest.fixture
def make_synthetic_export(tmp_path: Path):
    """Factory for a fresh, modifiable synthetic export: ``make_synthetic_export(n_images=..., ...)``."""
    counter = iter(range(1000))

    def make(**kwargs) -> Path:
        return build_synthetic_export(tmp_path / f"export{next(counter)}", **kwargs)

    return make


@pytest.fixture(scope="session")
def sample_data_dir() -> Path:
    path = default_sample_dir()
    if not (path / "metadata.csv").is_file():
        pytest.skip(f"sample data not found at {path} (set LUNGMARK_SAMPLE_DATA)")
    return path


@pytest.fixture(scope="session")
def sample_lung_export(sample_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Export of the sample's lung-box-labelled frontal images (about 40), shrunk to 512 px."""
    return build_sample_export(sample_data_dir, tmp_path_factory.mktemp("sample-lung") / "export", lung_labelled_only=True)


@pytest.fixture(scope="session")
def trained_run(synthetic_export: Path, tmp_path_factory: pytest.TempPathFactory):
    """A tiny CMTNet (width 1/16, 32 px) trained for 2 epochs on the synthetic export, shared read-only."""
    from training.config import ModelConfig, TrainConfig
    from training.train import train

    config = TrainConfig(
        export_dir=str(synthetic_export),
        run_dir=str(tmp_path_factory.mktemp("trained") / "run"),
        model=ModelConfig(width=0.0625, image_size=32, pretrained=False),
        epochs=2,
        batch_size=4,
    )
    return train(config)
