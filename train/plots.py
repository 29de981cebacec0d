"""Matplotlib figures for training and evaluation (Agg backend; PNG files)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from brainmri.cam import LABELS, canonical_method  # noqa: E402
from brainmri.classes import CLASSES  # noqa: E402


def confusion(cm: np.ndarray, classes, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.6, 4))
    ax.imshow(cm, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(history: list[dict], name: str, path: Path) -> None:
    """Loss and accuracy per epoch; a series is drawn over the epochs that have it (an
    epoch-0 row holds validation only, some runs log no training accuracy)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, label, colour in ((a, "train_loss", "train", "C0"), (a, "val_loss", "validation", "C1"),
                                   (b, "train_acc", "train (augmented)", "C0"),
                                   (b, "val_acc", "validation", "C1")):
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points), "o-", label=label, color=colour)
    a.set_title(f"{name}: loss")
    b.set_title(f"{name}: accuracy")
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def class_distributions(datasets: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, len(datasets), figsize=(3 * len(datasets), 2.8), sharey=False)
    for ax, (name, samples) in zip(np.atleast_1d(axes), datasets.items()):
        counts = np.bincount([s.label for s in samples], minlength=len(CLASSES))
        ax.bar(range(len(CLASSES)), counts, color="tab:blue")
        ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=40, fontsize=7)
        ax.set_title(f"{name} ({len(samples)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prediction_grid(predictor, paths, labels, pred, n: int, path: Path, seed: int = 0) -> None:
    """Random correct (top row) and incorrect (bottom row) predictions with the heatmaps of the
    checkpoint's default method (named in the title)."""
    rng = np.random.default_rng(seed)
    rows = []
    for want in (True, False):
        idx = np.flatnonzero((pred == labels) == want)
        rows.append(rng.choice(idx, size=min(n, len(idx)), replace=False) if len(idx) else [])
    cols = max(1, max(len(r) for r in rows))
    fig, axes = plt.subplots(2, cols, figsize=(1.9 * cols, 4.4), squeeze=False)
    for r, idx in enumerate(rows):
        exps = predictor.explain_batch([paths[i] for i in idx]) if len(idx) else []
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(exps):
                e, i = exps[c], idx[c]
                ax.imshow(e.overlay)
                ax.set_title(f"true {CLASSES[labels[i]]}\npred {e.prediction.label}", fontsize=7,
                             color="green" if r == 0 else "red")
    method = LABELS[canonical_method(predictor.default_method)]
    fig.suptitle(f"correct (top) and incorrect (bottom) predictions, {method} overlay", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
