"""Training presets by device: the one definition of "how CMTNet is trained" on a CPU and on a GPU.

Used by ``python -m training train --preset cpu|cuda-small|paper`` (default chosen by the device), by the admin
page that starts a training run and by the periodic retraining task, so that all three train the same
way. A preset builds a ``TrainConfig``; keyword overrides replace any of its fields (``epochs=3``,
``model=ModelConfig(...)``), so tests and experiments start from the same recipe.

- ``cpu``: the small network (width 0.25) at 128 px, from scratch, with the classification losses
  weighted down (``CPU_CLASSIFICATION_WEIGHT``) and the lungs learning from boxes as boxes (the box
  term, not filled rectangles: ``LUNG_BOX_WEIGHT``); fits in about 15 minutes on a
  2-core machine for an export of a few hundred images (see training/README.md for the measured time).
- ``paper``: the paper's configuration (width 1, 224 px, Adam 5e-5, batch 16, 30 epochs, ImageNet
  VGG16-BN encoder), for a CUDA machine that has the ImageNet weights locally; its lungs too learn
  from boxes through the box term (lung Dice +0.021 in every fold from scratch on a GPU).
- ``cuda-small``: the ``cpu`` recipe on a CUDA device, in fp32 like on the CPU, the default there when
  the ImageNet weights are not available: from scratch, the paper's network learned the lungs worse
  than the small one in 5-fold cross-validation on the sample (lung Dice 0.843 +/- 0.028 against
  0.896 +/- 0.018, every fold; training/README.md, "The paper preset on a GPU").

All add what cross-validation on the sample showed every task needs to learn (class balance from the
export's label counts, a Dice term on both masks, checkpoint selection on validation metrics); the
figures are in training/README.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from training.config import AugmentConfig, LossConfig, ModelConfig, TrainConfig


# The health and diagnosis losses at a quarter of the mask losses' weight: by 5-fold cross-validation on
# the sample this recovers most of what the two classification heads cost the lung task at this size
# (lung Dice 0.888 -> 0.902, lung-only 0.911; box IoU 0.822 -> 0.841) with a disease Dice of 0.45
# instead of 0.40 (training/README.md, "Cross-validation on the sample").
CPU_CLASSIFICATION_WEIGHT = 0.25

# Lung boxes teach the lung map through the box term (projections and their pairwise part), and a
# lung mask that is only the two boxes filled is not taught as a rectangle: from boxes alone, lung Dice
# against the outlines 0.838 instead of 0.775 and boxes level (0.811 against 0.806); with outlines, level
# with outlines alone (training/README.md, "Learning the lungs from boxes as boxes"). The paper's
# network from scratch on a GPU: lung Dice 0.887 instead of 0.866, better in every fold ("The paper
# preset on a GPU").
LUNG_BOX_WEIGHT = 1.0

# The small network answers with the mean over the image and its left-right mirror: by 5-fold
# cross-validation on the sample, on the same five checkpoints, box IoU against drawn boxes 0.857
# instead of 0.848 (every fold better), both boxes >= 0.8 on 75% of the images instead of 60%, lung and
# disease Dice level, for a second forward pass (training/README.md, "Answering with the mirror too").
MIRROR_AVERAGE = True

# The small network keeps a moving average of its weights (decay 0.99 per step, about 4 epochs of the
# sample), validated and saved instead of the weights themselves: by 5-fold cross-validation on the
# sample, on the same training trajectory (same seed, same folds), lung Dice 0.903 instead of 0.896
# and box IoU against drawn boxes 0.852 instead of 0.840 (no fold worse), at no measurable cost
# (training/README.md, "Answering at three sizes, a moving average of the weights, ...").
WEIGHT_AVERAGE = 0.99

# The small network histogram-equalises every input (training and answering), and the disease BCE
# weighs foreground pixels 5 times: by 5-fold cross-validation on the sample the disease decoder then
# learns in every fold (Dice 0.549 +/- 0.184 instead of 0.473 +/- 0.293, whose second fold stayed at 0
# in every earlier run; pooled 0.565 instead of 0.369), lung Dice 0.905 instead of 0.900 and the boxes
# level (0.861 both) (training/README.md, "Equalised inputs and a weighted disease foreground").
EQUALIZE = True
DISEASE_FOREGROUND_WEIGHT = 5.0


def _small_config(export_dir: str, run_dir: str, *, device: str) -> TrainConfig:
    return TrainConfig(
        export_dir=export_dir,
        run_dir=run_dir,
        model=ModelConfig(width=0.25, image_size=128, pretrained=False, mirror_average=MIRROR_AVERAGE, equalize=EQUALIZE),
        loss=LossConfig(
            lung_dice=True,
            disease_dice=True,
            disease_foreground_weight=DISEASE_FOREGROUND_WEIGHT,
            class_balance=True,
            health_weight=CPU_CLASSIFICATION_WEIGHT,
            diagnosis_weight=CPU_CLASSIFICATION_WEIGHT,
            lung_box_weight=LUNG_BOX_WEIGHT,
            lung_box_pairwise=True,
            filled_boxes_as_mask=False,
        ),
        augment=AugmentConfig(generic=True),
        epochs=30,
        batch_size=8,
        lr=1e-3,
        schedule="cosine",
        device=device,
        weight_average=WEIGHT_AVERAGE,
        # fp32 on CUDA too: with bf16 autocast the same folds on an H200 gave 0.837 box IoU instead of
        # 0.847 (4 of 5 folds worse) at the same speed; the small network gains nothing from it.
        amp=False,
    )


def _paper_config(export_dir: str, run_dir: str) -> TrainConfig:
    return TrainConfig(
        export_dir=export_dir,
        run_dir=run_dir,
        model=ModelConfig(width=1.0, image_size=224, pretrained=True),
        loss=LossConfig(
            lung_dice=True, disease_dice=True, class_balance=True,
            lung_box_weight=LUNG_BOX_WEIGHT, lung_box_pairwise=True, filled_boxes_as_mask=False,
        ),
        augment=AugmentConfig(generic=True),
        epochs=30,
        batch_size=16,
        # The paper's rate; it assumes the ImageNet encoder. Without local weights (only when this
        # preset is asked for by name) the run starts from scratch and train() picks the from-scratch
        # rate (lr=None), see training.train.
        lr=None,
        schedule="constant",
        device="cuda",
    )


@dataclass(frozen=True)
class Preset:
    """A named training recipe for one kind of device.

    ``seconds_per_sample`` is the measured wall-clock of one training sample per epoch (forward,
    backward and the validation pass, spread over the samples), used by ``estimate_seconds``.
    """

    name: str
    title: str
    description: str
    device: str
    build: Callable[[str, str], TrainConfig] = dataclasses.field(repr=False, compare=False)
    seconds_per_sample: float = 0.0
    setup_seconds: float = 0.0

    def train_config(self, *, export_dir: str, run_dir: str, **overrides: Any) -> TrainConfig:
        """The preset's ``TrainConfig`` for an export and a run directory; ``overrides`` replace fields.

        Unknown override names raise ``ValueError`` naming the known fields.
        """
        config = self.build(str(export_dir), str(run_dir))
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(config, **overrides)

    def estimate_seconds(self, n_images: int) -> float:
        """Rough wall-clock of a run on ``n_images`` exported images (both splits), on this preset's device.

        About 80% of the images are in the train split, and class balancing adds copies of the minority
        COVID class; 1.3 samples per exported image covers both on exports like the sample.
        """
        epochs = self.build("", "").epochs
        samples = max(0, int(n_images)) * 1.3
        return self.setup_seconds + epochs * samples * self.seconds_per_sample


PRESETS: dict[str, Preset] = {
    "cpu": Preset(
        name="cpu",
        title="CPU: width 0.25, 128 px, 30 epochs",
        description=(
            "The small CMTNet (a quarter of the paper's channels) at 128x128 px, trained from scratch with "
            "lr 1e-3, a cosine schedule, Dice terms on both masks, the healthy and COVID/other losses at a "
            "quarter of the mask losses' weight, random rotation/shift/scale/contrast and class balancing; "
            "a lung with only its two boxes learns from them as boxes (where the lung ends), not as filled "
            "rectangles; every image is histogram-equalised, disease pixels weigh 5 times in the disease loss, a moving average of the weights is kept, and it answers with the mean over the image and its left-right mirror. For machines without a GPU: about 15 minutes for a few hundred images on 2 cores."
        ),
        device="cpu",
        build=partial(_small_config, device="cpu"),
        seconds_per_sample=0.06,
        setup_seconds=20.0,
    ),
    "cuda-small": Preset(
        name="cuda-small",
        title="GPU without ImageNet weights: width 0.25, 128 px, 30 epochs",
        description=(
            "The CPU preset's recipe on a CUDA GPU: the small CMTNet at 128x128 px from scratch, lr 1e-3 "
            "with a cosine schedule, Dice terms, the classification losses at a quarter weight, class "
            "balancing, lungs learnt from their boxes as boxes, equalised images, disease pixels weighted 5 times and a moving average of the weights. The default on a GPU when the ImageNet VGG16-BN weights are not available: from "
            "scratch, the paper's full network learned the lungs worse on the sample. About a minute."
        ),
        device="cuda",
        build=partial(_small_config, device="cuda"),
        seconds_per_sample=0.012,
        setup_seconds=10.0,
    ),
    "paper": Preset(
        name="paper",
        title="GPU: the paper's CMTNet, width 1, 224 px, 30 epochs",
        description=(
            "The paper's configuration: full-width VGG16-BN encoder (ImageNet weights when available) at "
            "224x224 px, Adam 5e-5, batch 16, 30 epochs, plus Dice terms on both masks, class balancing and "
            "lungs learnt from their boxes as boxes. "
            "Needs a CUDA GPU (the default there when the ImageNet weights are available); a minute or two "
            "for a few hundred images."
        ),
        device="cuda",
        build=_paper_config,
        seconds_per_sample=0.012,
        setup_seconds=10.0,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown training preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def preset_for_device(device: str = "auto") -> Preset:
    """The preset for a device: ``cpu`` without CUDA; on a CUDA device (``"cuda"``, ``"cuda:1"``, or
    ``"auto"`` with CUDA present) ``paper`` when the ImageNet VGG16-BN weights are available locally,
    else ``cuda-small`` (the paper's network from scratch was the worse recipe, see the module docstring)."""
    name = str(device or "auto").strip().lower()
    if name == "auto":
        import torch

        cuda = torch.cuda.is_available()
    else:
        cuda = name.startswith("cuda")
    if not cuda:
        return PRESETS["cpu"]
    from training.model import imagenet_weights_available

    return PRESETS["paper"] if imagenet_weights_available() else PRESETS["cuda-small"]
