#!/usr/bin/env python
"""What averaging several cross-validated models would give, fold by fold, against each model alone.

Takes two or more finished ``python -m training crossval`` folders of the same export and the same
folds (``--fold-seed`` keeps the folds when ``--seed`` changes) and scores, on every fold's test
images, the mean of their outputs (logits and maps averaged, each model fed with its own
normalisation). The box-edge calibration of the average is fitted on the fold's training images, as
``crossval`` does for one model. Prints one row per model and one for the average (lung Dice, box IoU
against drawn boxes over folds and pooled with its interval, disease Dice, pooled COVID AUC) and writes
``bench/results/ensemble_crossval.json``. Every row, each model alone included, is scored here the
same way (calibration fitted on all of the fold's training images, as ``crossval --rescore`` does).

    python bench/ensemble_crossval.py runs/cv runs/cv-seed1 [runs/cv-seed2 ...]

A measurement, not a product feature: it says whether a second model per run would pay for its
training and inference time.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.checkpoint import load_model  # noqa: E402
from training.crossval import pooled_metrics, summarize_folds  # noqa: E402
from training.data import ExportDataset  # noqa: E402
from training.evaluate import box_calibration_fit, run_model, summarize  # noqa: E402
from training.export import annotated_lung_boxes, lung_mask_kinds, read_export  # noqa: E402
from training.model import CMTNetOutput  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ensemble_crossval.json"


class Average(nn.Module):
    """The mean output of several CMTNets of the same size and tasks, each normalising [0, 1] input itself."""

    def __init__(self, members: list[tuple[nn.Module, dict]]) -> None:
        super().__init__()
        self.members = nn.ModuleList([model for model, _ in members])
        self.config = members[0][0].config
        channels = self.config.in_channels
        self.norms = [
            (torch.tensor(ckpt["normalization"]["mean"][:channels]).view(1, -1, 1, 1), torch.tensor(ckpt["normalization"]["std"][:channels]).view(1, -1, 1, 1))
            for _, ckpt in members
        ]

    def forward(self, images: torch.Tensor) -> CMTNetOutput:
        outputs = [model((images - mean) / std) for model, (mean, std) in zip(self.members, self.norms)]
        return CMTNetOutput(*(None if parts[0] is None else torch.stack(parts).mean(0) for parts in zip(*outputs)))


def _raw_dataset(root: Path, records: list, config) -> ExportDataset:
    # Identity normalisation: the models normalise for themselves.
    channels = config.in_channels
    return ExportDataset(root, records, image_size=config.image_size, in_channels=channels,
                         normalization={"mean": [0.0] * channels, "std": [1.0] * channels}, augment=None, cache=False,
                         equalize=config.equalize)


def score_fold(checkpoints: list[Path], view: Path) -> tuple[dict, list[dict]]:
    members = [load_model(path, "cpu") for path in checkpoints]
    model = Average(members).eval()
    export = read_export(view)
    annotated = annotated_lung_boxes(export.root)
    device = torch.device("cpu")
    calibration = box_calibration_fit(model, _raw_dataset(export.root, export.split("train"), model.config), annotated, device=device)
    outputs = run_model(model, _raw_dataset(export.root, export.split("test"), model.config), device=device,
                        annotated_boxes=annotated, box_calibration=calibration, lung_masks=lung_mask_kinds(export.root))
    return summarize(outputs), outputs.rows


def _row(name: str, fold_metrics: list[dict], rows: list[dict]) -> dict:
    summary, pooled = summarize_folds(fold_metrics), pooled_metrics(rows)
    pick = lambda key: summary.get(key, {})  # noqa: E731
    return {
        "name": name,
        "lung_dice_outline": pick("lung_dice_outline"),
        "lung_box_iou_annotated": pick("lung_box_iou_annotated"),
        "pooled_box_iou": pooled.get("lung_box_iou_annotated"),
        "pooled_box_iou_ci95": pooled.get("lung_box_iou_annotated_ci95"),
        "both_boxes_0_8": pooled.get("lung_boxes_both_iou_0_8"),
        "disease_dice": pick("disease_dice"),
        "pooled_covid_auc": pooled.get("covid_auc"),
        "pooled_covid_auc_ci95": pooled.get("covid_auc_ci95"),
        "per_fold_box_iou": [m.get("lung_box_iou_annotated") for m in fold_metrics],
        "per_fold_lung_dice": [m.get("lung_dice_outline") for m in fold_metrics],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished crossval --out folders (same export, same folds)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error("give at least two crossval folders")
    reports = [json.loads((run / "crossval.json").read_text(encoding="utf-8")) for run in args.runs]
    if any(r["fold_of_subject"] != reports[0]["fold_of_subject"] for r in reports):
        parser.error("the runs do not share their folds (use crossval --fold-seed)")
    folds = reports[0]["folds"]
    # Each model alone is scored the same way as the average (calibration fitted on all the fold's
    # training images, as ``crossval --rescore`` does), so the rows differ only by the averaging.
    sets = [(str(run), [run]) for run in args.runs] + [(f"average of {len(args.runs)}", list(args.runs))]
    table = []
    for name, runs in sets:
        fold_metrics, rows = [], []
        for k in range(folds):
            metrics, fold_rows = score_fold([run / f"fold_{k}" / "run" / "best.pt" for run in runs], args.runs[0] / f"fold_{k}" / "export")
            fold_metrics.append(metrics)
            rows += [{"fold": k, **row} for row in fold_rows]
            print(f"{name}, fold {k + 1}/{folds}: lung Dice {metrics.get('lung_dice_outline'):.3f}, "
                  f"box IoU {metrics.get('lung_box_iou_annotated'):.3f}", flush=True)
        table.append(_row(name, fold_metrics, rows))

    def ms(value: dict) -> str:
        return f"{value['mean']:.3f} ± {value['sd']:.3f}" if value else "–"

    print("\n| models | lung Dice vs outlines | box IoU vs drawn boxes | pooled (95% CI) | both ≥ 0.8 | disease Dice | pooled COVID AUC (95% CI) |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        box_ci, auc_ci = row["pooled_box_iou_ci95"], row["pooled_covid_auc_ci95"]
        print(f"| {row['name']} | {ms(row['lung_dice_outline'])} | {ms(row['lung_box_iou_annotated'])} | "
              f"{row['pooled_box_iou']:.3f} ({box_ci[0]:.3f}–{box_ci[1]:.3f}) | {row['both_boxes_0_8']:.0%} | {ms(row['disease_dice'])} | "
              f"{row['pooled_covid_auc']:.3f} ({auc_ci[0]:.2f}–{auc_ci[1]:.2f}) |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": [str(r) for r in args.runs], "rows": table}, indent=2) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
