"""Several fast CAM methods from one trunk pass, for evaluation (the app uses `explain_batch`).

    maps = explain_methods(predictor, predictor.prepare(paths), ("gradcam", "layercam"))
    maps[0].heatmaps["gradcam"]        # (H, W) float32 in [0, 1], the input image's pixels

Every map is exactly what `Predictor.explain_batch(..., method=m)` returns for the same
image and target; only the trunk pass and the head's gradient are shared.
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
    """(B, C, S, S) model input -> (logits (B, K), pooled (B, F), targets, {method: (B, S, S)}).

    `targets` are class indices (None: the predicted class); maps are over the model input.
    """
    unknown = [m for m in methods if cams.canonical_method(m) not in cams.FAST_METHODS]
    if unknown:
        raise ValueError(f"not a fast CAM method: {unknown}; fast: {', '.join(cams.FAST_METHODS)}")
    acts = predictor.features(batch)                                  # (B, K, h, w)
    logits, _ = predictor._head(acts, None)
    if targets is None:
        targets = logits.argmax(dim=1).tolist()
    _, grads = predictor._head(acts, list(targets))
    size = batch.shape[-2:]
    maps = {cams.canonical_method(m): cams.cam_from_activations(m, acts, grads, size) for m in methods}
    return logits, acts.mean(dim=(2, 3)), list(targets), maps


def explain_methods(predictor: Predictor, prepared: Sequence[Prepared], methods: Sequence[str],
                    targets: Sequence[int] | None = None) -> list[MethodMaps]:
    """Prediction and one heatmap per method for each prepared image, from one trunk pass."""
    batch = torch.stack([p.tensor for p in prepared])
    logits, pooled, targets, maps = input_maps(predictor, batch, methods, targets)
    return [MethodMaps(predictor._prediction(logits, pooled, i), predictor.classes[targets[i]],
                       {m: to_input_pixels(maps[m][i], p) for m in maps})
            for i, p in enumerate(prepared)]
