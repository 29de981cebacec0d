"""Intensity changes of a whole scan that keep its anatomy, shared by training and inference.

`invert_head` inverts tissue intensities inside the head and keeps the background black: a
crude T2-like contrast, where fluid is bright. Training draws it as an augmentation
(`train.augment`), and `studies.generalisation` uses it to ask whether an answer survives a
change of contrast the model was trained to ignore. `match_landmarks` maps a scan's in-head
intensity landmarks onto given ones: `standardise` onto fixed ones (a preset with
`standardise=True` applies it to every head crop, in training and at inference alike), and
`train.augment.LookSwap` onto another source's, so that a scan is rendered in the *look* of a
source it did not come from (`looks` measures each source's).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

HEAD_LEVEL = 0.04          # intensities above this (of 1) count as head for the mask
TISSUE_LEVEL = 0.02        # pixels at or below this stay black when inverted


def head_of(x: torch.Tensor, level: float = HEAD_LEVEL) -> torch.Tensor:
    """(B, 1, S, S) in [0, 1] -> a soft mask of the head: `x > level`, smoothed by a 5x5 box,
    so that inversion leaves the black background black."""
    mask = (x > level).float()
    return F.avg_pool2d(mask, 5, 1, 2)


def invert_head(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) in [0, 1] -> the same scans with intensities inverted inside the head."""
    head = head_of(x)
    return head * (1 - x) * (x > TISSUE_LEVEL) + (1 - head) * x


# In-head intensity standardisation (Nyul and Udupa's landmark matching, five landmarks): each
# scan's in-head percentiles LANDMARKS are mapped piecewise-linearly onto REFERENCE, the mean of
# those percentiles over every tenth training head crop (of 1; brainmri.protocols train split,
# brainmri.presets.EvalPreset crops, pixels above HEAD_LEVEL_U8). What varies between scanners
# and exports (brightness, contrast, a monotone curve) is removed; the order of tissues is kept.
LANDMARKS = (1, 25, 50, 75, 99)
REFERENCE = (0.05, 0.204, 0.284, 0.355, 0.74)
HEAD_LEVEL_U8 = 10


def landmarks(grey: np.ndarray) -> np.ndarray | None:
    """(H, W) uint8 -> its in-head percentiles LANDMARKS (pixels above HEAD_LEVEL_U8), in uint8
    units and strictly increasing; None for a picture with almost no head (under 64 pixels)."""
    head = grey > HEAD_LEVEL_U8
    if int(head.sum()) < 64:
        return None
    marks = np.percentile(grey[head], LANDMARKS).astype(np.float64)
    return np.maximum.accumulate(marks + np.arange(len(marks)) * 1e-3)    # strictly increasing


def match_landmarks(grey: np.ndarray, reference) -> np.ndarray:
    """(H, W) uint8 -> the same scan with its in-head landmarks mapped piecewise-linearly onto
    `reference` (len(LANDMARKS) increasing values of 1), uint8. The background stays near
    black and the order of tissues is kept; a picture with almost no head comes back unchanged."""
    marks = landmarks(grey)
    if marks is None:
        return grey
    xp = np.concatenate([[0.0], marks, [max(255.0, marks[-1] + 1e-3)]])
    fp = np.concatenate([[0.0], np.asarray(reference, np.float64), [1.0]])
    out = np.interp(grey.astype(np.float64), xp, fp)
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def standardise(grey: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> the same scan with its in-head intensity landmarks on REFERENCE, uint8."""
    return match_landmarks(grey, REFERENCE)


def looks(greys, groups) -> dict[str, tuple[float, ...]]:
    """Each group's *look*: the median, over its pictures, of their landmarks (of 1).
    `greys`: uint8 pictures; `groups`: one name per picture (e.g. its source,
    `brainmri.protocols.group_sources`). Pictures without a head are left out."""
    by: dict[str, list[np.ndarray]] = {}
    for grey, group in zip(greys, groups):
        marks = landmarks(np.asarray(grey))
        if marks is not None:
            by.setdefault(str(group), []).append(marks / 255.0)
    return {g: tuple(float(v) for v in np.maximum.accumulate(np.median(m, axis=0)))
            for g, m in sorted(by.items())}
