"""Several hook-free CAM methods at once, for evaluation (the app uses `explain_batch`).

    maps = explain_methods(predictor, predictor.prepare(paths), ("gradcam", "layercam"))
    maps[0].heatmaps["gradcam"]        # (H, W) float32 in [0, 1], the input image's pixels

Every map is exactly what `Predictor.explain_batch(..., method=m)` returns for the same
image and target: both go through `Predictor.maps`, where the fast methods share the trunk
pass and the head's gradient (the fused Layer-CAM needs its own pass).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import cam as cams
from .predictor import Prediction, Predictor, to_input_pixels
from .presets import Prepared


@dataclass(frozen=True)
class MethodMaps:
    prediction: Prediction
    target: str                         # the class every heatmap explains
    heatmaps: dict[str, np.ndarray]     # method -> (H, W) float32 in [0, 1], input pixels


def input_maps(predictor: Predictor, batch: torch.Tensor, methods: Sequence[str],
               targets: Sequence[int] | None = None):
    """(B, C, S, S) model input -> (logits (B, K), pooled (B, F), targets, {method: (B, S, S)})
    for hook-free methods (`cams.HOOK_FREE`).

    `targets` are class indices (None: the predicted class); maps are over the model input.
    """
    methods = [cams.canonical_method(m) for m in methods]
    unknown = [m for m in methods if m not in cams.HOOK_FREE]
    if unknown:
        raise ValueError(f"not a hook-free CAM method: {unknown}; these are: {', '.join(cams.HOOK_FREE)}")
    return predictor.maps(batch, methods, None if targets is None else (lambda _: list(targets)))


def explain_methods(predictor: Predictor, prepared: Sequence[Prepared], methods: Sequence[str],
                    targets: Sequence[int] | None = None) -> list[MethodMaps]:
    """Prediction and one heatmap per method for each prepared image, from one trunk pass."""
    batch = torch.stack([p.tensor for p in prepared])
    (logits, pooled, targets, maps), taps = predictor.recorded(
        batch, lambda: input_maps(predictor, batch, methods, targets), probe=True)
    return [MethodMaps(predictor.prediction(logits, pooled, i, taps=taps), predictor.classes[targets[i]],
                       {m: to_input_pixels(maps[m][i], p) for m in maps})
            for i, p in enumerate(prepared)]
