#!/usr/bin/env python
"""What out-of-fold COVID AUC a classifier with no COVID signal gets on an export, with crossval's folds.

``crossval`` scores the COVID output on subject-disjoint folds. When the COVID-negative class is a few
patients with several similar images each (the sample: 37 negative images), a classifier learns what
sets the *training* negatives apart; a held-out negative patient is, by construction, none of them,
and the class averages it is compared with were computed without it. Out of fold, ranks can reverse
even where there is nothing to learn.

This script measures how far, on the export itself and without training a network: simple image
features (intensity statistics and borders, or a 16x16 thumbnail), one logistic regression per fold
fitted on the fold's training images and scored on its test images, with ``crossval``'s folds
(``subject_folds``, same seed), for

- the true COVID labels, and
- ``--shuffles`` times the COVID labels shuffled among patients (each patient keeps its images; the
  folds are stratified again by the shuffled labels, as crossval would): no feature can tell COVID
  there, so the spread of those AUCs is what "no signal" gives under such folds.

Prints a table and writes ``bench/results/covid_null.json``. With ``--crossval RUN`` the network's
pooled out-of-fold AUC from that run's ``per_image.csv`` is printed beside them, and that of a logistic
regression on each fold model's encoder features (fitted on the fold's training images). Patients
with images of both labels (the sample has two) are left out: they have no one label to shuffle.

    python bench/covid_null.py EXPORT [--folds 5] [--shuffles 200] [--crossval runs/cv]
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR  # noqa: E402
from training.crossval import subject_folds  # noqa: E402
from training.data import load_gray, resize_image  # noqa: E402
from training.export import ExportRecord, read_export  # noqa: E402

RESULTS = RESULTS_DIR / "covid_null.json"
KNOWN = ("positive", "negative")


def features(root: Path, records: list[ExportRecord]) -> dict[str, np.ndarray]:
    """Per image: intensity statistics (mean, sd, 5/50/95th percentiles, the four border strips' means,
    aspect ratio) and a 16x16 thumbnail, both from the 64 px grayscale image."""
    stats, thumbs = [], []
    for record in records:
        image = resize_image(load_gray(record.image_path(root)), 64).astype(np.float32) / 255.0
        border = [image[:8].mean(), image[-8:].mean(), image[:, :8].mean(), image[:, -8:].mean()]
        stats.append([image.mean(), image.std(), *np.percentile(image, [5, 50, 95]), *border, record.width / record.height])
        thumbs.append(image.reshape(16, 4, 16, 4).mean((1, 3)).ravel())
    return {"image statistics": np.array(stats), "16x16 thumbnail": np.array(thumbs)}


def out_of_fold_auc(x: np.ndarray, records: list[ExportRecord], folds: int, seed: int) -> tuple[float, list[float]]:
    """Pooled out-of-fold AUC and the per-fold AUCs of a logistic regression, on crossval's folds."""
    fold_of = subject_folds(records, folds, seed)
    fold = np.array([fold_of[r.subject_id] for r in records])
    y = np.array([r.covid == "positive" for r in records], dtype=int)
    scores, per_fold = np.zeros(len(y)), []
    for k in range(folds):
        test = fold == k
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000))
        model.fit(x[~test], y[~test])
        scores[test] = model.predict_proba(x[test])[:, 1]
        if len(set(y[test])) == 2:
            per_fold.append(float(roc_auc_score(y[test], scores[test])))
    return float(roc_auc_score(y, scores)), per_fold


def shuffled(records: list[ExportRecord], rng: np.random.Generator) -> list[ExportRecord]:
    """The records with their patients' COVID labels shuffled among patients (a patient keeps one label)."""
    subjects = sorted({r.subject_id for r in records})
    label = {r.subject_id: r.covid for r in records}
    new = dict(zip(subjects, rng.permutation([label[s] for s in subjects])))
    return [dataclasses.replace(r, covid=str(new[r.subject_id])) for r in records]


def network_auc(run: Path) -> float | None:
    """The pooled out-of-fold COVID AUC of a crossval run's network (its per_image.csv)."""
    with open(run / "per_image.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["covid_label"] not in ("", None) and r["covid_prob"] not in ("", None)]
    y = [int(float(r["covid_label"])) for r in rows]
    return float(roc_auc_score(y, [float(r["covid_prob"]) for r in rows])) if len(set(y)) == 2 else None


def embedding_auc(run: Path) -> tuple[float, list[float]]:
    """Pooled and per-fold out-of-fold AUC of a logistic regression on each fold model's pooled encoder
    features (fitted on the fold's training images, the network's own folds): is what the encoder
    learnt about COVID transferable to other patients, whatever the head makes of it?"""
    import torch

    from training.checkpoint import load_model
    from training.evaluate import checkpoint_dataset

    scores, labels, per_fold = [], [], []
    for fold_dir in sorted(run.glob("fold_*")):
        model, checkpoint = load_model(fold_dir / "run" / "best.pt")
        view = read_export(fold_dir / "export")
        split = {}
        for name in ("train", "test"):
            records = [r for r in view.split(name) if r.covid in KNOWN]
            dataset = checkpoint_dataset(view.root, records, model, checkpoint)
            with torch.inference_mode():
                embedding = torch.cat([model(torch.stack([dataset[j]["image"] for j in range(i, min(i + 16, len(dataset)))])).embedding for i in range(0, len(dataset), 16)])
            split[name] = (embedding.numpy(), np.array([r.covid == "positive" for r in records], dtype=int))
        (x, y), (x_test, y_test) = split["train"], split["test"]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)).fit(x, y)
        fold_scores = model.predict_proba(x_test)[:, 1]
        scores += list(fold_scores)
        labels += list(y_test)
        if len(set(y_test)) == 2:
            per_fold.append(float(roc_auc_score(y_test, fold_scores)))
    return float(roc_auc_score(labels, scores)), per_fold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="crossval's fold seed")
    parser.add_argument("--shuffles", type=int, default=200)
    parser.add_argument("--crossval", type=Path, help="a crossval run of the same export: its network's pooled COVID AUC is shown too")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    export = read_export(args.export)
    records = [r for r in export.records if r.covid in KNOWN]
    # A patient with images of both labels has no one label to shuffle.
    labels_of: dict[str, set[str]] = {}
    for record in records:
        labels_of.setdefault(record.subject_id, set()).add(record.covid)
    records = [r for r in records if len(labels_of[r.subject_id]) == 1]
    negatives = [r for r in records if r.covid == "negative"]
    print(
        f"{len(records)} images with a COVID label ({len(negatives)} negative, of {len({r.subject_id for r in negatives})} patients), "
        f"{len({r.subject_id for r in records})} patients, {args.folds} folds; {args.shuffles} shuffles"
    )
    rng = np.random.default_rng(args.seed)
    shuffles = [shuffled(records, rng) for _ in range(args.shuffles)]
    rows = []
    for name, x in features(export.root, records).items():
        true_pooled, true_folds = out_of_fold_auc(x, records, args.folds, args.seed)
        null = np.array([out_of_fold_auc(x, s, args.folds, args.seed)[0] for s in shuffles])
        rows.append({
            "features": name,
            "true_pooled_auc": true_pooled,
            "true_fold_aucs": true_folds,
            "null_mean": float(null.mean()),
            "null_sd": float(null.std(ddof=1)),
            "null_ci95": [float(v) for v in np.percentile(null, [2.5, 97.5])],
            "null_below_half": float((null < 0.5).mean()),
            "true_rank_in_null": float((null <= true_pooled).mean()),
        })
    print("| features | AUC, true labels (pooled; per fold) | AUC, labels shuffled among patients: mean ± sd (95%) | shuffles below 0.5 |")
    print("|---|---|---|---|")
    for row in rows:
        folds = " / ".join(f"{v:.2f}" for v in row["true_fold_aucs"])
        low, high = row["null_ci95"]
        print(f"| {row['features']} | {row['true_pooled_auc']:.3f} ({folds}) | {row['null_mean']:.3f} ± {row['null_sd']:.3f} ({low:.2f}–{high:.2f}) | {row['null_below_half']:.0%} |")
    result = {"export": str(args.export), "folds": args.folds, "seed": args.seed, "shuffles": args.shuffles, "images": len(records),
              "negative_images": len(negatives), "rows": rows}
    if args.crossval:
        result["network_pooled_auc"] = network_auc(args.crossval)
        pooled, per_fold = embedding_auc(args.crossval)
        result["network_embedding_pooled_auc"], result["network_embedding_fold_aucs"] = pooled, per_fold
        print(f"{args.crossval}: the network's pooled out-of-fold COVID AUC {result['network_pooled_auc']:.3f}; a logistic regression "
              f"on its fold models' encoder features {pooled:.3f} ({' / '.join(f'{v:.2f}' for v in per_fold)})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
