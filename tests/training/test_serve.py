"""The Predictor the inference worker uses: original-size maps, probabilities, uncertainty, speed settings."""

from __future__ import annotations

import numpy as np
import pytest

from training.serve import Predictor, binary_entropy, uncertainty_score


@pytest.fixture(scope="module")
def predictor(trained_run) -> Predictor:
    return Predictor(trained_run.best_checkpoint, device="cpu", threads=1)


def test_maps_come_back_at_the_original_size_with_probabilities(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    for shape in [(37, 53), (300, 200), (32, 32)]:
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        result = predictor.predict(image)
        assert result.lung.shape == shape and result.disease.shape == shape
        assert result.lung.dtype == np.float32
        assert 0.0 <= result.lung.min() and result.lung.max() <= 1.0
        assert set(result.probabilities) == {"healthy", "covid", "other_disease"}
        assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())
        assert 0.0 <= result.uncertainty <= 1.0


def test_batch_prediction_matches_single_predictions(predictor: Predictor) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(40 + 7 * i, 50), dtype=np.uint8) for i in range(3)]
    batch = predictor.predict_batch(images)
    for image, together in zip(images, batch):
        alone = predictor.predict(image)
        assert np.allclose(alone.lung, together.lung, atol=1e-5)
        assert alone.probabilities == pytest.approx(together.probabilities, abs=1e-5)


def test_cpu_optimisations_do_not_change_the_answer(trained_run) -> None:
    image = np.random.default_rng(2).integers(0, 256, size=(64, 48), dtype=np.uint8)
    fast = Predictor(trained_run.best_checkpoint, device="cpu", threads=1).predict(image)
    plain = Predictor(trained_run.best_checkpoint, device="cpu", threads=1, optimize=False, channels_last=False).predict(image)
    assert np.allclose(fast.lung, plain.lung, atol=1e-4)
    assert fast.probabilities == pytest.approx(plain.probabilities, abs=1e-4)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.float32), np.zeros(10, np.uint8)],
    ids=["rgb", "float", "1d"],
)
def test_non_grayscale_uint8_input_is_rejected_clearly(predictor: Predictor, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="2-D uint8 grayscale"):
        predictor.predict(bad)


def test_predictor_exposes_what_the_registry_needs(predictor: Predictor, trained_run) -> None:
    assert predictor.label_names["diagnosis"] == ["covid", "other_disease"]
    assert predictor.metrics["split"] == "test"
    assert predictor.image_size == 32


def test_uncertainty_is_mean_binary_entropy() -> None:
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.0) == pytest.approx(0.0, abs=1e-9)
    assert uncertainty_score(0.5, 1.0) == pytest.approx(0.5, abs=1e-6)
    assert uncertainty_score(None, 0.5) == pytest.approx(1.0)
    assert uncertainty_score(None, None) is None


def test_images_preprocessed_one_at_a_time_predict_like_one_batch(predictor: Predictor) -> None:
    """What the pre-annotation worker does: each image preprocessed in a decoding thread, then one forward pass."""
    import torch

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, size=(30 + 11 * i, 60 - 5 * i), dtype=np.uint8) for i in range(4)]
    together = predictor.predict_preprocessed(torch.cat([predictor.preprocess([image]) for image in images]), [i.shape for i in images])
    for image, batched in zip(images, together):
        alone = predictor.predict(image)
        assert batched.lung.shape == image.shape
        assert np.allclose(alone.lung, batched.lung, atol=1e-5) and np.allclose(alone.disease, batched.disease, atol=1e-5)
        assert alone.probabilities == pytest.approx(batched.probabilities, abs=1e-5)
    with pytest.raises(ValueError, match="shapes"):
        predictor.predict_preprocessed(predictor.preprocess(images[:2]), [images[0].shape])
