"""Intensity changes of a whole scan that keep its anatomy, shared by training and inference.

`invert_head` inverts tissue intensities inside the head and keeps the background black: a
crude T2-like contrast, where fluid is bright. Training draws it as an augmentation
(`train.augment`), and `brainmri.predictor` uses it to ask whether an answer survives a
change of contrast the model was trained to ignore.
"""
from __future__ import annotations

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
