"""PNG plots of a run: loss curves and ROC curves.

Uses matplotlib's object API with the Agg canvas, never ``pyplot``: no global backend state, safe in
a headless Celery worker and from several threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_loss_curves(history: Sequence[dict], path: str | Path) -> Path:
    """Draw per-epoch training/validation losses (total and per task) from metrics.jsonl rows."""
    path = Path(path)
    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    ax_total, ax_parts = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax_total.plot(epochs, [float("nan") if v is None else v for v in values], style, marker="o", label=key)
    ax_total.set_xlabel("epoch")
    ax_total.set_ylabel("multi-task loss")
    ax_total.set_title("total loss")
    ax_total.legend(loc="best")
    parts = sorted({k for row in history for k in row.get("train_parts", {}) if k != "total"})
    for name in parts:
        values = [row.get("train_parts", {}).get(name) for row in history]
        ax_parts.plot(epochs, [float("nan") if v is None else v for v in values], marker=".", label=name)
    ax_parts.set_xlabel("epoch")
    ax_parts.set_title("training loss per task")
    if parts:
        ax_parts.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_roc(curves: dict[str, dict | None], path: str | Path, title: str = "COVID ROC") -> Path:
    """Draw ROC curves: ``curves`` maps a name to {"fpr": [...], "tpr": [...], "auc": float} or None."""
    path = Path(path)
    figure = Figure(figsize=(5, 5), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    drawn = 0
    for name, curve in curves.items():
        if not curve:
            continue
        auc = curve.get("auc")
        label = f"{name} (AUC {auc:.3f})" if auc is not None else name
        ax.plot(curve["fpr"], curve["tpr"], label=label)
        drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no ROC: the split lacks positives or negatives", ha="center", va="center", fontsize=9)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path
