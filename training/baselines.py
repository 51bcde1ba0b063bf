"""The paper's Table IV comparison on any export: other classifiers for COVID vs non-COVID.

- DenseNet121, MobileNetV2, ResNet18 and "VGG19 + FC" from torchvision, each with a single COVID
  logit, trained on the export's train split (images whose COVID label is known, with the paper's
  COVID augmentation) and scored on its test split. ImageNet weights are used when torchvision has
  them locally, otherwise the networks start from scratch (logged). "VGG19 + FC" is VGG19's conv
  features, global average pooling and two FC layers (512 -> 256 -> 1): torchvision's 4096-wide
  classifier on 7x7 features would be 100 M parameters of FC, far too slow for CPU runs.
- RandomForest and SVM (sigmoid and RBF kernels) from scikit-learn on CMTNet's pooled encoder
  embeddings, and CMTNet itself, when a CMTNet checkpoint is given.

Columns: model, accuracy, AUC, sensitivity at 90% and 99% specificity, EER (all for COVID).
"""

from __future__ import annotations

import logging
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from training.checkpoint import load_model
from training.config import AugmentConfig
from training.data import IMAGENET_NORMALIZATION, ExportDataset, compute_normalization
from training.evaluate import run_model
from training.export import ExportRecord, read_export
from training.metrics import classification_metrics, roc_auc, roc_curve
from training.plots import plot_roc
from training.report import write_table
from training.runtime import resolve_device, seed_everything

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("model", "accuracy", "auc", "sensitivity_at_90_specificity", "sensitivity_at_99_specificity", "eer", "test_images", "note")
CNN_NAMES = ("densenet121", "mobilenet_v2", "resnet18", "vgg19_fc")


@dataclass
class BaselineConfig:
    export_dir: str
    out_dir: str
    checkpoint: str | None = None
    models: tuple[str, ...] = CNN_NAMES
    image_size: int = 224
    epochs: int = 10
    batch_size: int = 8
    lr: float | None = None  # None: 1e-4 with ImageNet weights, 1e-3 from scratch
    pretrained: bool = True
    covid_copies: bool = True
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # data loader worker processes (augmentation runs there)
    amp: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    progress_bar: bool = False


def _torchvision_model(name: str, pretrained: bool) -> tuple[nn.Module, bool]:
    """A torchvision network with a 1-logit head; (model, whether ImageNet weights were loaded)."""
    from torchvision import models

    builders: dict[str, tuple[Callable[..., nn.Module], Any]] = {
        "densenet121": (models.densenet121, models.DenseNet121_Weights.IMAGENET1K_V1),
        "mobilenet_v2": (models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1),
        "resnet18": (models.resnet18, models.ResNet18_Weights.IMAGENET1K_V1),
        "vgg19_fc": (models.vgg19, models.VGG19_Weights.IMAGENET1K_V1),
    }
    if name not in builders:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(builders)}")
    builder, weights = builders[name]
    model, loaded = None, False
    if pretrained:
        try:
            model, loaded = builder(weights=weights), True
        except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
            log.warning("%s: ImageNet weights are not available (%s); starting from scratch", name, exc)
    if model is None:
        model = builder(weights=None)
    if name == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, 1)
    elif name == "mobilenet_v2":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, 1)
    elif name == "resnet18":
        model.fc = nn.Linear(model.fc.in_features, 1)
    else:  # vgg19_fc
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, 1))
    return model, loaded


def _known_covid(records: list[ExportRecord]) -> list[ExportRecord]:
    return [r for r in records if r.covid != "unknown"]


def _row(name: str, labels: np.ndarray, scores: np.ndarray, predictions: np.ndarray | None = None, note: str = "") -> dict[str, Any]:
    metrics = classification_metrics(labels, scores)
    if predictions is not None:
        metrics["accuracy"] = float((predictions == labels).mean()) if len(labels) else None
    curve = roc_curve(labels, scores) if len(labels) else None
    return {
        "model": name,
        **{k: metrics[k] for k in ("accuracy", "auc", "sensitivity_at_90_specificity", "sensitivity_at_99_specificity", "eer")},
        "test_images": int(len(labels)),
        "note": note,
        "_roc": None if curve is None else {"fpr": curve[0].tolist(), "tpr": curve[1].tolist(), "auc": roc_auc(labels, scores)},
    }


def train_cnn_baseline(name: str, config: BaselineConfig, train_records: list[ExportRecord], test_records: list[ExportRecord], root: Path) -> dict[str, Any]:
    """Train one torchvision classifier for COVID and score it on the test records."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    model, loaded = _torchvision_model(name, config.pretrained)
    lr = config.lr if config.lr is not None else (1e-4 if loaded else 1e-3)
    train_set = ExportDataset(root, train_records, config.image_size, 3, augment=AugmentConfig(covid_copies=config.covid_copies), seed=config.seed)
    normalization = dict(IMAGENET_NORMALIZATION) if loaded else compute_normalization(train_set)
    train_set.normalization = normalization
    test_set = ExportDataset(root, test_records, config.image_size, 3, normalization=normalization, augment=None, cache=False)
    if config.workers:
        train_set.preload()  # decode once, before the workers fork, so they share the cache
    model.to(device)
    use_amp = config.amp and device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    started = time.monotonic()
    for epoch in range(config.epochs):
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        drop_last = len(train_set) > config.batch_size and len(train_set) % config.batch_size == 1
        loader = DataLoader(
            train_set, batch_size=config.batch_size, shuffle=True, generator=generator, drop_last=drop_last,
            num_workers=config.workers, pin_memory=device.type == "cuda", persistent_workers=False,
        )
        if config.progress_bar:
            from tqdm import tqdm

            loader = tqdm(loader, desc=f"{name} epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for batch in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(batch["image"].to(device, non_blocking=True))[:, 0]
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["diagnosis"][:, 0].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    scores, labels = [], []
    with torch.inference_mode():
        for batch in DataLoader(test_set, batch_size=config.batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(batch["image"].to(device))[:, 0]
            scores.append(torch.sigmoid(logits.float()).cpu().numpy())
            labels.append(batch["diagnosis"][:, 0].numpy())
    note = f"{'ImageNet' if loaded else 'scratch'}, {config.epochs} ep, {time.monotonic() - started:.0f}s"
    log.info("%s: %s", name, note)
    return _row(name, np.concatenate(labels) if labels else np.zeros(0), np.concatenate(scores) if scores else np.zeros(0), note=note)


def embedding_baselines(checkpoint: str | Path, train_records: list[ExportRecord], test_records: list[ExportRecord], root: Path, config: BaselineConfig) -> list[dict[str, Any]]:
    """CMTNet itself, and RandomForest / SVM (sigmoid, RBF) fitted on CMTNet's embeddings."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    device = resolve_device(config.device)
    model, ckpt = load_model(checkpoint, device)

    def embed(records: list[ExportRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dataset = ExportDataset(root, records, model.config.image_size, model.config.in_channels, normalization=ckpt["normalization"], augment=None, cache=False, equalize=model.config.equalize)
        outputs = run_model(model, dataset, device=device, batch_size=config.batch_size, keep_embeddings=True)
        labels = np.asarray(outputs.covid_label, dtype=float)
        return np.stack(outputs.embeddings) if outputs.embeddings else np.zeros((0, model.embedding_dim)), labels, np.asarray(outputs.covid_prob)

    x_train, y_train, _ = embed(train_records)
    x_test, y_test, cmtnet_scores = embed(test_records)
    rows = []
    if np.isfinite(cmtnet_scores).all() and len(y_test):
        rows.append(_row("CMTNet", y_test, cmtnet_scores, note=f"checkpoint epoch {ckpt.get('epoch')}"))
    if len(np.unique(y_train)) < 2:
        log.warning("the train split has a single COVID class; RandomForest/SVM baselines skipped")
        return rows
    classifiers = {
        "RandomForest (CMTNet features)": RandomForestClassifier(n_estimators=200, random_state=config.seed),
        "SVM sigmoid (CMTNet features)": make_pipeline(StandardScaler(), SVC(kernel="sigmoid", random_state=config.seed)),
        "SVM RBF (CMTNet features)": make_pipeline(StandardScaler(), SVC(kernel="rbf", random_state=config.seed)),
    }
    for name, classifier in classifiers.items():
        classifier.fit(x_train, y_train)
        # SVM scores are decision values (threshold 0), not probabilities: accuracy uses predict().
        scores = classifier.predict_proba(x_test)[:, 1] if hasattr(classifier, "predict_proba") and name.startswith("Random") else classifier.decision_function(x_test)
        rows.append(_row(name, y_test, np.asarray(scores, dtype=float), predictions=classifier.predict(x_test), note="sklearn"))
    return rows


def run_baselines(config: BaselineConfig) -> list[dict[str, Any]]:
    """Train and score every baseline; write baselines.csv, baselines.md and roc.png to ``out_dir``."""
    export = read_export(config.export_dir)
    train_records, test_records = _known_covid(export.split("train")), _known_covid(export.split("test"))
    if not train_records:
        raise ValueError(f"{export.root}: no train images with a known COVID label")
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    if config.checkpoint:
        rows += embedding_baselines(config.checkpoint, train_records, test_records, export.root, config)
    else:
        log.warning("no --checkpoint: the RandomForest/SVM rows (on CMTNet embeddings) are skipped")
    for name in config.models:
        rows.append(train_cnn_baseline(name, config, train_records, test_records, export.root))
    plot_roc({row["model"]: row["_roc"] for row in rows}, out_dir / "roc.png", title="COVID ROC (test split)")
    table = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    write_table(table, TABLE_COLUMNS, out_dir / "baselines.csv", out_dir / "baselines.md", "COVID classification baselines (paper Table IV)")
    return table
