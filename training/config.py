"""Typed configuration for CMTNet and its training runs.

Every run writes its ``TrainConfig`` to ``<run_dir>/config.json`` and every checkpoint carries the
``ModelConfig`` (architecture) and the ``TrainConfig`` (how it was trained), so a run can be resumed
and a model served from the checkpoint alone. The dataclass defaults are the paper's configuration
(width 1, 224x224x3, plain per-task losses with equal weights); the command line offers the faster
from-scratch recipe of BENCHMARKS.md on top of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Task numbers as in the paper's Table V.
TASK_LUNG = 1  # lung segmentation
TASK_DISEASE = 2  # disease (finding) segmentation
TASK_HEALTH = 3  # healthy / unhealthy classification
TASK_DIAGNOSIS = 4  # multi-label [COVID, other disease] classification
ALL_TASKS: tuple[int, ...] = (TASK_LUNG, TASK_DISEASE, TASK_HEALTH, TASK_DIAGNOSIS)
TASK_NAMES = {TASK_LUNG: "lung", TASK_DISEASE: "disease", TASK_HEALTH: "health", TASK_DIAGNOSIS: "diagnosis"}

# The encoder downsamples five times by 2, so the input side must be a multiple of 32.
IMAGE_SIZE_MULTIPLE = 32


def parse_tasks(value: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Turn ``"1,3,4"`` (or a sequence of ints) into a sorted, validated task tuple."""
    items = [int(t) for t in value.split(",") if t.strip()] if isinstance(value, str) else [int(t) for t in value]
    tasks = tuple(sorted(set(items)))
    if not tasks:
        raise ValueError("at least one task is needed (1 lung, 2 disease, 3 healthy, 4 covid/other)")
    unknown = [t for t in tasks if t not in ALL_TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}: tasks are 1 lung, 2 disease, 3 healthy, 4 covid/other")
    return tasks


@dataclass
class ModelConfig:
    """CMTNet architecture. ``width`` multiplies every channel count (1.0 is VGG16-BN's 64..512)."""

    width: float = 1.0
    image_size: int = 224
    in_channels: int = 3
    tasks: tuple[int, ...] = ALL_TASKS
    # Hidden sizes of the two 3-layer FC heads at width 1 (scaled by ``width``); 512 -> 256 -> 128 -> 2
    # reproduces the paper model's 44.6 M parameters together with the encoder and the two decoders.
    head_hidden: tuple[int, int] = (256, 128)
    # Initialise the encoder from torchvision's ImageNet VGG16-BN when the weights are available locally
    # (only meaningful for width 1 and 3 input channels).
    pretrained: bool = True
    # Outside training, answer with the mean of the image's and its left-right mirror's outputs (the
    # mirror's maps mirrored back), one batch of both: a second forward pass for steadier lung boxes
    # (the small presets; training/README.md, "Answering with the mirror too").
    mirror_average: bool = False
    # Outside training, answer also at these input sides (multiples of 32, at ``image_size`` scale) and
    # average: the image resized to each, its maps resized back, logits and embeddings averaged with
    # those at ``image_size`` (each side mirrored too with ``mirror_average``). Empty: one size.
    test_sizes: tuple[int, ...] = ()
    # Histogram-equalise every input image at model size before normalising it (training, evaluation
    # and serving alike: the checkpoint carries the flag), so that radiographs of other exposures,
    # windowing and sources reach the network with the same spread of grey levels.
    equalize: bool = False

    def __post_init__(self) -> None:
        self.tasks = parse_tasks(self.tasks)
        self.head_hidden = tuple(int(h) for h in self.head_hidden)  # type: ignore[assignment]
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.image_size <= 0 or self.image_size % IMAGE_SIZE_MULTIPLE:
            raise ValueError(f"image_size must be a positive multiple of {IMAGE_SIZE_MULTIPLE}, got {self.image_size}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {self.in_channels}")
        self.test_sizes = tuple(sorted({int(s) for s in self.test_sizes} - {self.image_size}))  # type: ignore[assignment]
        odd = [s for s in self.test_sizes if s <= 0 or s % IMAGE_SIZE_MULTIPLE]
        if odd:
            raise ValueError(f"test_sizes must be positive multiples of {IMAGE_SIZE_MULTIPLE}, got {odd}")


@dataclass
class LossConfig:
    """Weights of the four task losses (eq. 8: equal by default) and the optional lung Dice term."""

    lung_weight: float = 1.0
    disease_weight: float = 1.0
    health_weight: float = 1.0
    diagnosis_weight: float = 1.0
    # Not in the paper: a soft Dice term on the lung mask. BENCHMARKS.md shows BCE + Dice trains the
    # lungs much better from scratch, so the CLI turns it on; the paper configuration leaves it off.
    lung_dice: bool = False
    lung_dice_weight: float = 1.0
    # Not in the paper: the same soft Dice term on the disease mask, whose foreground is a few percent
    # of the pixels: plain per-pixel BCE is minimised by predicting no disease at all.
    disease_dice: bool = False
    disease_dice_weight: float = 1.0
    # Not in the paper: the disease BCE's foreground pixels count this many times, so that a decoder
    # unsure of a region still crosses 0.5 there (1: plain BCE).
    disease_foreground_weight: float = 1.0
    # Not in the paper: an image labelled healthy has no finding. Without a disease mask of its own it
    # trains the disease map with an empty one (eq. 8's switch on), so that a healthy chest is shown
    # to have no region; off, such images teach the disease map nothing, as in the paper.
    healthy_empty_disease: bool = False
    # Not in the paper: weight the health and diagnosis losses so that each class of each label counts
    # as much as the other over an epoch (weights from the export's label counts, training.data).
    class_balance: bool = False
    # Not in the paper: learning the lungs from their boxes as boxes (BoxInst's projection term). Per
    # side, the lung map's largest values along each column and each row must cover what the lung
    # box covers and nothing more (soft Dice of the two 1-D profiles): the box fixes where the lung
    # ends, not its shape. Applies to images with two lung boxes in the export's coco.json; 0 is off.
    lung_box_weight: float = 0.0
    # With the box term: pixels outside both boxes are background, and inside them neighbours of
    # similar intensity agree (BoxInst's pairwise term), so that boxes alone can teach a lung shape.
    lung_box_pairwise: bool = False
    # A lung mask that is a pair of filled boxes (coco.json ``images[].lung_mask == "boxes"``: the
    # image had no outline) trains the lung map pixel by pixel as a rectangle when True; when False it
    # is left to the box term above (the rectangle's corners are ribs and background, not lung).
    filled_boxes_as_mask: bool = True


@dataclass
class AugmentConfig:
    """Training-time augmentation.

    ``covid_copies`` is the paper's: every image of the rare COVID class appears up to five more times,
    rotated by +10 and -10 degrees and shifted by 10 px in x, y and xy (10 px at 224 px, scaled to the
    model size). The copies go to the minority class of the export (COVID-positive in the paper's data,
    COVID-negative in a COVID-heavy one), as many as balance it (``training.data.minority_copies``). ``generic`` adds random rotation/shift/scale/contrast to every training sample, and a left-right mirror to ``flip_probability`` of them.
    """

    covid_copies: bool = True
    generic: bool = False
    rotation_deg: float = 10.0
    shift_fraction: float = 0.06
    scale_range: float = 0.1
    contrast_range: float = 0.2
    # With ``generic``: the share of samples mirrored left-right (the two lung boxes swap sides with the
    # image). 0 keeps the heart where it is in every training image.
    flip_probability: float = 0.0


@dataclass
class TrainConfig:
    """One training run: data, model, loss, optimisation and where the run directory is."""

    export_dir: str
    run_dir: str
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    batch_size: int = 8
    # None picks 5e-5 when the encoder starts from ImageNet weights (the paper's rate) and 1e-3 when it
    # starts from scratch (BENCHMARKS.md: 5e-5 barely beats the mean lung shape from scratch).
    lr: float | None = None
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" (paper) or "cosine"
    # A subject-disjoint part of the train split that picks the best epoch; the test split is never
    # looked at during training (the registry compares models on it).
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    workers: int = 0
    resume: bool = False
    verify: bool = True  # check the export's manifest hashes before training
    cache_images: bool = True  # keep resized images in memory (cheap at model size, saves PNG decoding)
    evaluate_test: bool = True  # score the best checkpoint on the test split at the end
    # Fit the box-edge calibration (training.boxes) on the training images' annotated boxes at the end.
    box_calibration: bool = True
    # A trained checkpoint whose lung maps become the lung masks of the training images that have
    # neither an outline nor boxes (self-training, training.pseudo); None: those images teach no lungs.
    pseudo_lungs: str | None = None
    # Validate and keep an exponential moving average of the weights (and BatchNorm statistics) with
    # this decay per step instead of the weights themselves; 0 keeps the weights. Training is unchanged.
    weight_average: float = 0.0
    amp: bool = True  # mixed precision autocast on CUDA (ignored on the CPU)
    # Processes of one run (training.distributed): one per GPU with DDP, or a few on the CPU; "auto" is
    # every CUDA device of the machine (1 without CUDA). batch_size stays the global batch.
    nproc: int | str = 1
    progress_bar: bool = False  # tqdm bars (the CLI turns them on; workers use the callback instead)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0.0 <= self.weight_average < 1.0:
            raise ValueError(f"weight_average must be in [0, 1), got {self.weight_average}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.nproc != "auto":
            try:
                self.nproc = int(self.nproc)
            except (TypeError, ValueError):
                raise ValueError(f"nproc must be a positive number or 'auto', got {self.nproc!r}") from None
            if self.nproc < 1 or self.nproc > self.batch_size:
                raise ValueError(f"nproc must be between 1 and batch_size ({self.batch_size}), got {self.nproc}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/checkpoint-safe dict (tuples become lists)."""
        return to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def model_config_to_dict(config: ModelConfig) -> dict[str, Any]:
    return to_plain(dataclasses.asdict(config))


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in data.items() if k in known})


def to_plain(value: Any) -> Any:
    """Recursively turn tuples into lists so the value survives JSON and ``weights_only`` loading."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
