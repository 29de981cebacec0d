"""Figures for the data audit: the r histogram of candidate pairs and a gallery of pairs on
either side of the duplicate threshold. Plotting only; the numbers come from `studies.audit`.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import cv2
import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from brainmri.io import load_image, to_grey  # noqa: E402
from brainmri.presets import head_box  # noqa: E402


def head_thumb(path: str | Path, size: int) -> np.ndarray:
    """The head crop of an image as (size, size) float32 luminance in [0, 255]."""
    grey = to_grey(load_image(path))
    x0, y0, x1, y1 = head_box(grey)
    return cv2.resize(grey[y0:y1, x0:x1], (size, size),
                      interpolation=cv2.INTER_AREA).astype(np.float32)


def aligned_r(a: np.ndarray, b: np.ndarray) -> tuple[float, bool]:
    """(best Pearson r of a with b or b's mirror, whether the mirror gave it)."""
    def z(t):
        v = t - t.mean()
        return v / (np.linalg.norm(v) or 1.0)
    plain, mirror = float((z(a) * z(b)).sum()), float((z(a) * z(b[:, ::-1])).sum())
    return max(plain, mirror), mirror > plain


def plot_histogram(hist: dict, threshold: float, path: Path) -> Path:
    """Counts of candidate pairs per r bin (log scale), greyscale-greyscale pairs and the rest
    as separate lines, the threshold marked."""
    edges = np.asarray(hist["edges"])
    grey, other = np.asarray(hist["greyscale_pairs"]), np.asarray(hist["other_pairs"])
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.stairs(other, edges, label="other pairs (at least one RGB file: Br35H / SARTAJ)",
              color="#3b6ea5", lw=1.5)
    ax.stairs(grey, edges, label="both greyscale (figshare)", color="#d9822b", lw=1.5)
    ax.axvline(threshold, color="k", lw=1, ls="--")
    ax.text(threshold, 0.98, f"threshold {threshold:.3f} ", ha="right", va="top", fontsize=8,
            transform=ax.get_xaxis_transform())
    if max(grey.max(), other.max()) > 0:           # log scale needs a positive count
        ax.set_yscale("log")
    ax.set_xlabel("thumbnail correlation r (best of plain / mirrored)")
    ax.set_ylabel("candidate pairs per 0.01")
    ax.set_title(f"{hist['pairs']:,} candidate pairs ({hist['below_range']:,} with r < {edges[0]})",
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_gallery(rows: Sequence[dict], path: Path, size: int = 96) -> Path:
    """One row per pair: image A, image B (mirrored when that matches better), |z(A) - z(B)|.

    Each row dict: a, b (paths), title_a, title_b (short labels), r (the thumbnail r), side
    ("above"/"below"), kind ("greyscale"/"other"). The 128 px r of the crops is computed here
    and shown beside it.
    """
    if not rows:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no candidate pairs near the threshold", ha="center", va="center")
        ax.axis("off")
        fig.savefig(path, dpi=72)
        plt.close(fig)
        return path
    fig, axes = plt.subplots(len(rows), 3, figsize=(4.2, 1.6 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows):
        r_hi, mirrored = aligned_r(head_thumb(row["a"], 128), head_thumb(row["b"], 128))
        a, b = head_thumb(row["a"], size), head_thumb(row["b"], size)
        b = b[:, ::-1] if mirrored else b
        diff = np.abs((a - a.mean()) / (a.std() or 1) - (b - b.mean()) / (b.std() or 1))
        caption = f"{row['side']} ({row['kind']})\nr={row['r']:.4f} r@128px={r_hi:.3f}"
        panels = ((a, "gray", 255, row["title_a"]), (b, "gray", 255, row["title_b"]),
                  (diff, "magma", 2, caption))
        for ax, (img, cmap, vmax, title) in zip(ax_row, panels):
            ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax)
            ax.set_title(title, fontsize=5.5)
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=96)
    plt.close(fig)
    # A 64-colour palette keeps the file small enough to commit next to the docs.
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path
