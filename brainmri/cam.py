"""Class activation maps: one registry of methods, and a fast path that needs no trunk backward.

For a `Classifier` (trunk -> global average pool -> head) the gradient of a class score with
respect to the target layer's activations is known without back-propagating through the trunk
(see `brainmri.models`). `cam_from_activations` feeds those activations and gradients to
pytorch-grad-cam's *own* per-method code (`get_cam_image`) and scaling, so every fast map is
the library's map. Methods that need extra forward passes (Score-CAM, Ablation-CAM) go through
`reference_cam`, which builds the library's object with its hooks and releases them at once.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pytorch_grad_cam import (AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM,
                              LayerCAM, ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from threadpoolctl import threadpool_limits

METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "hirescam": HiResCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
}
LABELS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
          "layercam": "Layer-CAM", "eigencam": "Eigen-CAM", "hirescam": "HiRes-CAM",
          "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM"}
# Computable from the target layer's activations and the head's gradient alone.
FAST_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "eigencam", "hirescam")
# The map does not depend on the class asked about (the activations' first principal component).
CLASS_AGNOSTIC = frozenset({"eigencam"})


def canonical_method(name: str) -> str:
    key = str(name).lower().replace("-", "").replace("_", "").replace(" ", "")
    key = key.replace("plusplus", "++")
    if key not in METHODS:
        raise ValueError(f"unknown CAM method {name!r}; known: {', '.join(METHODS)}")
    return key


class _NoHooks:
    """Stands in for the hook holder that BaseCAM.__del__ releases."""

    def release(self) -> None:
        pass


def _eigen_projection(acts: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's `get_2d_projection` (EigenCAM) with a thin SVD: the first right
    singular vector is the same, without building the (K, K) matrix (0.5 s -> ~11 ms at K=2048
    channels and 36 positions, the stage-2 6x6 map).

    The SVD runs on one BLAS thread: with OpenBLAS's worker threads woken up, they spun
    against torch's threads and slowed the next forward pass on two cores (median
    click with Eigen-CAM 205 -> 147 ms in an interleaved A/B, ResNet-50 at 192 px).
    """
    acts = np.where(np.isnan(acts), 0, acts).astype(np.float32)
    out = []
    with threadpool_limits(1, user_api="blas"):
        for a in acts:                                   # (K, h, w)
            flat = a.reshape(a.shape[0], -1).T           # (h*w, K)
            flat = flat - flat.mean(axis=0)
            _, _, vt = np.linalg.svd(flat, full_matrices=False)
            out.append((flat @ vt[0]).reshape(a.shape[1:]))
    return np.float32(out)


def cam_from_activations(method: str, activations: torch.Tensor, grads: torch.Tensor | None,
                         size: Sequence[int]) -> np.ndarray:
    """(B, K, h, w) activations and d score/d activations -> (B, H, W) float32 maps in [0, 1].

    `size` is the model input's (H, W). Identical to what pytorch-grad-cam returns for the same
    activations and gradients (its `get_cam_image`, ReLU and `scale_cam_image`).
    """
    cls = METHODS[canonical_method(method)]
    engine = cls.__new__(cls)            # no __init__: no model, no hooks; only the math is used
    engine.activations_and_grads = _NoHooks()
    acts = activations.detach().float().cpu().numpy()
    grad = grads.detach().float().cpu().numpy() if grads is not None else np.zeros_like(acts)
    if cls is EigenCAM:
        cam = _eigen_projection(acts)
    else:
        cam = engine.get_cam_image(None, None, None, acts, grad, False)
    cam = scale_cam_image(np.maximum(cam, 0), (int(size[1]), int(size[0])))
    return scale_cam_image(np.maximum(cam, 0))


def reference_cam(model: torch.nn.Module, method: str, batch: torch.Tensor,
                  targets: Sequence[int]) -> np.ndarray:
    """pytorch-grad-cam's usual path (hooks, full backward); hooks are released on return."""
    cls = METHODS[canonical_method(method)]
    with cls(model=model, target_layers=[model.trunk[-1]]) as engine:
        if hasattr(engine, "batch_size"):
            engine.batch_size = 32
        maps = engine(input_tensor=batch, targets=[ClassifierOutputTarget(t) for t in targets])
    return np.asarray(maps, np.float32)
