"""Command line: ``python -m training {train,crossval,evaluate,predict,verify,baselines,ablation} ...``.

``train`` and ``crossval`` start from a preset of ``training.presets`` (``--preset cpu|cuda-small|paper``,
default by device) and take options that change it; ``--paper`` switches to the paper's plain
settings. Progress bars go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

# Heavy imports (torch and friends) happen inside the commands so that ``--help`` is instant.


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=float, help="channel width multiplier (1 = the paper's VGG16-BN)")
    parser.add_argument("--image-size", type=int, help="square input size in px, a multiple of 32 (paper: 224)")


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    """The options of a training recipe, shared by ``train`` and ``crossval``."""
    _add_model_args(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="default: 5e-5 with ImageNet weights (paper), 1e-3 from scratch")
    p.add_argument("--tasks", help="comma-separated subset of 1 (lung), 2 (disease), 3 (healthy), 4 (covid/other)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--weight-average", type=float, metavar="DECAY", help="validate and keep a moving average of the weights with this decay per step, e.g. 0.99 (default: the preset's; 0 keeps the weights)")
    p.add_argument("--workers", type=int, help="data loader worker processes (default 0)")
    p.add_argument("--preset", help="cpu, cuda-small or paper (training.presets); default: by device (paper with CUDA and local ImageNet weights, cuda-small with CUDA only, else cpu)")
    p.add_argument("--paper", action="store_true", help="the paper's plain settings: no Dice terms, constant lr, no generic augmentation")
    p.add_argument("--schedule", choices=["constant", "cosine"])
    p.add_argument("--lung-dice", action=argparse.BooleanOptionalAction, default=None, help="add a soft Dice term to the lung loss")
    p.add_argument("--disease-foreground-weight", type=float, help="weight of foreground pixels in the disease BCE (default: the preset's)")
    p.add_argument("--healthy-empty-disease", action=argparse.BooleanOptionalAction, default=None, help="images labelled healthy without a disease mask train the disease map with an empty one (default: the preset's)")
    p.add_argument("--disease-dice", action=argparse.BooleanOptionalAction, default=None, help="add a soft Dice term to the disease loss")
    p.add_argument("--class-balance", action=argparse.BooleanOptionalAction, default=None, help="class weights from the label counts")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None, help="generic rotation/shift/scale/contrast")
    p.add_argument("--flip-prob", type=float, help="with --augment: share of training samples mirrored left-right (default: the preset's)")
    p.add_argument("--mirror-average", action=argparse.BooleanOptionalAction, default=None, help="outside training, answer with the mean over the image and its left-right mirror (default: the preset's)")
    p.add_argument("--test-sizes", help="outside training, also answer at these input sides (multiples of 32, e.g. 96,160) and average; 'none' for one size (default: the preset's)")
    p.add_argument("--equalize", action=argparse.BooleanOptionalAction, default=None, help="histogram-equalise every input image (training and answering alike; default: the preset's)")
    p.add_argument("--covid-copies", action=argparse.BooleanOptionalAction, default=None, help="the paper's augmented copies of the minority COVID class")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None, help="ImageNet VGG16-BN encoder if available")
    p.add_argument("--val-fraction", type=float, help="subject-disjoint part of train used to pick the best epoch")
    p.add_argument(
        "--task-weights",
        help="weights of the task losses, e.g. health=0.3,diagnosis=0.3 (names: lung, disease, health, diagnosis; default: the preset's, cpu and cuda-small 1,1,0.25,0.25, paper 1 each)",
    )
    p.add_argument(
        "--box-calibration",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fit the box-edge calibration on the training images' annotated boxes at the end (default: on)",
    )
    p.add_argument("--lung-box-weight", type=float, help="weight of the box term: the lung map's extent fitted to each image's two lung boxes (BoxInst; default: the preset's)")
    p.add_argument("--lung-box-pairwise", action=argparse.BooleanOptionalAction, default=None, help="with the box term: outside the boxes is background, similar neighbours agree")
    p.add_argument("--filled-box-masks", action=argparse.BooleanOptionalAction, default=None, help="train the lung map on filled-box lung masks pixel by pixel (--no-: only through the box term)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast while training on CUDA (default: on; ignored on the CPU)")
    p.add_argument("--no-verify", action="store_true", help="skip the manifest sha256 check")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train, evaluate and serve CMTNet on Lungmark exports.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train CMTNet on an export snapshot")
    p.add_argument("--export", help="export snapshot folder (optional with --resume)")
    p.add_argument("--run-dir", required=True, help="where config, metrics, plots and checkpoints go")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt with its saved config")
    p.add_argument("--nproc", help="processes sharing the run with DDP: N, or auto (one per CUDA device); default 1")
    p.add_argument("--pseudo-lungs", metavar="CHECKPOINT", help="a trained model whose lung maps teach the training images that have neither outline nor boxes (self-training)")
    _add_recipe_args(p)

    p = sub.add_parser("crossval", help="k-fold subject-disjoint cross-validation of a recipe over a whole export")
    p.add_argument("--export", required=True, help="export snapshot folder (all its images, whatever their split)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out", required=True, help="folder for the fold runs, crossval.json/.md and per_image.csv")
    p.add_argument("--rescore", action="store_true", help="re-fit the box calibration of each fold's best.pt and score it again, without training")
    p.add_argument("--jobs", type=int, default=1, help="folds trained at once, each in its own process with its share of the cores (default 1)")
    p.add_argument("--fold-seed", type=int, help="seed of the subject folds (default: --seed): repeat a recipe with another --seed on the same folds")
    p.add_argument("--teachers", help="an earlier crossval --out of the same export and folds: each fold's unlabelled training images learn the lung masks of its model of that fold (self-training)")
    _add_recipe_args(p)

    p = sub.add_parser("evaluate", help="score a checkpoint on an export split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--export", required=True)
    p.add_argument("--split", default="test", choices=["train", "test", "all"], help="all: the whole export (e.g. a foreign dataset)")
    p.add_argument("--out", help="metrics JSON path (roc.png is written next to it)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")

    p = sub.add_parser("predict", help="masks and probabilities for image files")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("images", nargs="+", help="image files (PNG/JPEG, converted to 8-bit grayscale)")
    p.add_argument("--out", default="predictions", help="output folder (default ./predictions)")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold of the PNG masks")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("verify", help="check an export snapshot (manifest hashes, labels, masks)")
    p.add_argument("export")

    p = sub.add_parser("baselines", help="paper Table IV: torchvision CNNs and RF/SVM on CMTNet embeddings")
    p.add_argument("--export", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", help="CMTNet checkpoint for the embedding baselines (RF, SVM)")
    p.add_argument("--models", default="densenet121,mobilenet_v2,resnet18,vgg19_fc")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--width", type=float, help="ignored: torchvision baselines have fixed widths")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float)
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("ablation", help="paper Table V: CMTNet trained on task subsets")
    p.add_argument("--export", required=True)
    p.add_argument("--out", required=True)
    _add_model_args(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float)
    p.add_argument("--subsets", help="semicolon-separated task subsets, e.g. '4;3,4;1,2,3,4' (default: the paper's)")
    p.add_argument("--paper", action="store_true", help="paper settings (see train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True)
    return parser


def _train_config(args: argparse.Namespace) -> Any:
    from training.config import ModelConfig, TrainConfig, parse_tasks

    run_dir = Path(args.run_dir)
    stored = run_dir / "config.json"
    resume = getattr(args, "resume", False)
    if resume and stored.is_file():
        config = TrainConfig.from_dict(json.loads(stored.read_text(encoding="utf-8")))
    else:
        if not args.export:
            raise SystemExit("train: --export is required (unless resuming a run that has config.json)")
        config = _preset_config(args, export_dir=args.export, run_dir=str(run_dir))
    model = config.model
    overrides_model = {
        "width": args.width,
        "image_size": args.image_size,
        "tasks": parse_tasks(args.tasks) if args.tasks else None,
        "pretrained": args.pretrained,
    }
    for key, value in overrides_model.items():
        if value is not None:
            setattr(model, key, value)
    config.model = ModelConfig(**{f: getattr(model, f) for f in model.__dataclass_fields__})  # re-validate
    if args.lung_dice is not None:
        config.loss.lung_dice = args.lung_dice
    if args.disease_dice is not None:
        config.loss.disease_dice = args.disease_dice
    if args.disease_foreground_weight is not None:
        if not args.disease_foreground_weight > 0:
            raise SystemExit("--disease-foreground-weight must be a number > 0")
        config.loss.disease_foreground_weight = args.disease_foreground_weight
    if args.healthy_empty_disease is not None:
        config.loss.healthy_empty_disease = args.healthy_empty_disease
    if args.class_balance is not None:
        config.loss.class_balance = args.class_balance
    if args.augment is not None:
        config.augment.generic = args.augment
    if args.covid_copies is not None:
        config.augment.covid_copies = args.covid_copies
    if args.flip_prob is not None:
        if not 0 <= args.flip_prob <= 1:
            raise SystemExit("--flip-prob must be between 0 and 1")
        config.augment.flip_probability = args.flip_prob
    if args.mirror_average is not None:
        config.model.mirror_average = args.mirror_average
    if args.test_sizes is not None:
        config.model.test_sizes = _test_sizes(args.test_sizes)
    if args.equalize is not None:
        config.model.equalize = args.equalize
    for name, weight in _task_weights(args.task_weights).items():
        setattr(config.loss, f"{name}_weight", weight)
    if args.box_calibration is not None:
        config.box_calibration = args.box_calibration
    if args.lung_box_weight is not None:
        if not args.lung_box_weight >= 0:
            raise SystemExit("--lung-box-weight must be a number >= 0")
        config.loss.lung_box_weight = args.lung_box_weight
    if args.lung_box_pairwise is not None:
        config.loss.lung_box_pairwise = args.lung_box_pairwise
    if args.filled_box_masks is not None:
        config.loss.filled_boxes_as_mask = args.filled_box_masks
    if getattr(args, "pseudo_lungs", None):
        if not Path(args.pseudo_lungs).is_file():
            raise SystemExit(f"--pseudo-lungs: no checkpoint at {args.pseudo_lungs}")
        config.pseudo_lungs = args.pseudo_lungs
    for key in ("epochs", "batch_size", "lr", "device", "seed", "workers", "schedule", "val_fraction", "nproc", "amp", "weight_average"):
        value = getattr(args, key, None)
        if value is not None:
            setattr(config, key, value)
    if args.export:
        config.export_dir = args.export
    config.run_dir = str(run_dir)
    config.resume = resume
    config.verify = not args.no_verify
    config.progress_bar = True
    return TrainConfig.from_dict(config.to_dict())  # re-validate the whole thing


def _task_weights(value: str | None) -> dict[str, float]:
    """``"health=0.3,diagnosis=0.3"`` -> ``{"health": 0.3, "diagnosis": 0.3}``; a clear error otherwise."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        name, _, number = item.partition("=")
        name = name.strip()
        if name not in TASK_WEIGHT_NAMES:
            raise SystemExit(f"--task-weights: unknown task {name!r}; known: {', '.join(TASK_WEIGHT_NAMES)}")
        try:
            weights[name] = float(number)
        except ValueError:
            raise SystemExit(f"--task-weights: {item!r} is not name=number") from None
        if not weights[name] >= 0:
            raise SystemExit(f"--task-weights: {name} must be a number >= 0")
    return weights


def _test_sizes(value: str) -> tuple[int, ...]:
    """``"96,160"`` -> ``(96, 160)``; ``"none"`` -> ``()``; a clear error otherwise (the sizes are checked by ModelConfig)."""
    if value.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise SystemExit(f"--test-sizes: {value!r} is not a comma-separated list of sides in pixels, e.g. 96,160") from None


TASK_WEIGHT_NAMES = ("lung", "disease", "health", "diagnosis")


def _preset_config(args: argparse.Namespace, *, export_dir: str, run_dir: str) -> Any:
    """The TrainConfig of ``--preset`` (default: by ``--device``), or the paper's plain one with ``--paper``."""
    from training.config import AugmentConfig, LossConfig, ModelConfig, TrainConfig
    from training.presets import get_preset, preset_for_device

    if args.paper:
        return TrainConfig(
            export_dir=export_dir,
            run_dir=run_dir,
            model=ModelConfig(),
            loss=LossConfig(),
            augment=AugmentConfig(),
            schedule="constant",
        )
    preset = get_preset(args.preset) if args.preset else preset_for_device(args.device or "auto")
    logging.getLogger("training").info("preset %s: %s", preset.name, preset.title)
    return preset.train_config(export_dir=export_dir, run_dir=run_dir)


def _summary_lines(metrics: dict[str, Any]) -> list[str]:
    keys = [
        "n_images", "lung_dice", "lung_iou", "lung_box_iou", "disease_dice", "disease_iou", "covid_accuracy", "covid_auc",
        "covid_sensitivity_at_99_specificity", "covid_sensitivity_at_90_specificity", "covid_eer", "healthy_accuracy",
    ]
    lines = []
    for key in keys:
        value = metrics.get(key)
        shown = "–" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"{key:<38} {shown}")
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    from training.distributed import environment_ranks
    from training.train import train

    config = _train_config(args)
    result = train(config)
    ranks = environment_ranks()
    if ranks is not None and not ranks.is_main:
        return 0  # under torchrun, rank 0 reports
    print(f"run directory: {result.run_dir}")
    print(f"best checkpoint: {result.best_checkpoint}")
    if result.metrics:
        print("test split:")
        print("\n".join("  " + line for line in _summary_lines(result.metrics)))
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from training.crossval import FoldsFailed, crossval, markdown_report

    args.run_dir = args.out
    config = _train_config(args)
    config.progress_bar = False  # one bar over the folds; the per-epoch lines go to the log
    try:
        report = crossval(
            config, folds=args.folds, out_dir=args.out, progress_bar=True, rescore=args.rescore, jobs=args.jobs, teachers=args.teachers,
            fold_seed=args.fold_seed,
        )
    except FoldsFailed as exc:  # each fold's traceback is in its log and above
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(markdown_report(report))
    print(f"written to {Path(args.out) / 'crossval.json'}, crossval.md and per_image.csv")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    metrics = evaluate(args.checkpoint, args.export, split=args.split, out=args.out, batch_size=args.batch_size, device=args.device, progress=True)
    print("\n".join(_summary_lines(metrics)))
    if args.out:
        print(f"metrics written to {args.out} (ROC curve: {Path(args.out).parent / 'roc.png'})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from training.metrics import lung_boxes_from_mask
    from training.serve import Predictor

    predictor = Predictor(args.checkpoint, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for path in tqdm([Path(p) for p in args.images], desc="predicting", unit="img", file=sys.stderr):
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"))
        result = predictor.predict(array)
        record: dict[str, Any] = {
            "image": str(path),
            "width": int(array.shape[1]),
            "height": int(array.shape[0]),
            "probabilities": result.probabilities,
            "uncertainty": result.uncertainty,
        }
        for name, prob in (("lung", result.lung), ("disease", result.disease)):
            if prob is None:
                continue
            mask = prob >= args.threshold
            mask_path = out / f"{path.stem}_{name}.png"
            Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
            record[f"{name}_mask"] = mask_path.name
            if name == "lung":
                record["lung_boxes"] = lung_boxes_from_mask(mask)
        (out / f"{path.stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        summary.append(record)
        probs = ", ".join(f"{k} {v:.3f}" for k, v in result.probabilities.items() if v is not None)
        print(f"{path.name}: {probs}; uncertainty {result.uncertainty if result.uncertainty is None else round(result.uncertainty, 3)}")
    (out / "predictions.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"masks and JSON written to {out}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from training.export import verify_export

    problems = verify_export(args.export)
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "export OK")
    return 1 if problems else 0


def cmd_baselines(args: argparse.Namespace) -> int:
    from training.baselines import TABLE_COLUMNS, BaselineConfig, run_baselines
    from training.report import markdown_table

    if args.width is not None:
        logging.getLogger(__name__).info("--width does not apply to the torchvision baselines; ignored")
    config = BaselineConfig(
        export_dir=args.export,
        out_dir=args.out,
        checkpoint=args.checkpoint,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        pretrained=args.pretrained,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        progress_bar=True,
    )
    rows = run_baselines(config)
    print(markdown_table(rows, TABLE_COLUMNS))
    print(f"written to {Path(args.out) / 'baselines.csv'} and baselines.md")
    return 0


def cmd_ablation(args: argparse.Namespace) -> int:
    from training.ablation import ABLATION_SUBSETS, TABLE_COLUMNS, run_ablation
    from training.config import AugmentConfig, LossConfig, ModelConfig, TrainConfig, parse_tasks
    from training.report import markdown_table

    recipe = not args.paper
    model = ModelConfig(pretrained=args.pretrained)
    if args.width is not None:
        model.width = args.width
    if args.image_size is not None:
        model.image_size = args.image_size
    base = TrainConfig(
        export_dir=args.export,
        run_dir=args.out,
        model=ModelConfig(**{f: getattr(model, f) for f in model.__dataclass_fields__}),
        loss=LossConfig(lung_dice=recipe),
        augment=AugmentConfig(generic=recipe),
        schedule="cosine" if recipe else "constant",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        progress_bar=True,
    )
    subsets = [parse_tasks(s) for s in args.subsets.split(";")] if args.subsets else list(ABLATION_SUBSETS)
    rows = run_ablation(base, args.out, subsets)
    print(markdown_table(rows, TABLE_COLUMNS))
    print(f"written to {Path(args.out) / 'ablation.csv'} and ablation.md")
    return 0


COMMANDS = {
    "train": cmd_train,
    "crossval": cmd_crossval,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "verify": cmd_verify,
    "baselines": cmd_baselines,
    "ablation": cmd_ablation,
}


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from training.export import ExportError

    try:
        return COMMANDS[args.command](args)
    except (ExportError, FileNotFoundError, ValueError) as exc:
        # Bad input (a broken export, a wrong path, an impossible option) gets one clear line.
        logging.getLogger("training").debug("command failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
