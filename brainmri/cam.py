"""Class activation maps: one registry of methods, and a fast path that needs no trunk backward.

For a `Classifier` (trunk -> global average pool -> head) the gradient of a class score with
respect to the target layer's activations is known without back-propagating through the trunk
(see `brainmri.models`). `cam_from_activations` feeds those activations and gradients to
pytorch-grad-cam's *own* per-method code (`get_cam_image`) and scaling, so every fast map is
the library's map. Methods that need extra forward passes (Score-CAM, Ablation-CAM) go through
`reference_cam`, which builds the library's object with its hooks and releases them at once.

"Layer-CAM, 2 layers" (`layercamfused`) is pytorch-grad-cam's Layer-CAM with two target layers,
the last block and the last earlier block whose map has at least twice its side (`fusion_index`:
ResNet-50's layer3, or layer2 when layer4 is dilated), fused
by the library's own mean. The earlier layer's gradient needs a backward through the blocks
after it (inputs only, no weight gradients, no hooks): finer maps for that backward's cost
(timed in docs/benchmarks.md).
Where the next block reads the finer map with a stride-2 1x1 convolution (ResNet v1 strides),
only one position in each 2x2 cell gets a gradient; `spread_lattice` gives the other three
that position's gradient, instead of the library's dot pattern (3 of 4 positions blank).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import (AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM,
                              LayerCAM, ScoreCAM, XGradCAM)
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from threadpoolctl import threadpool_limits

@dataclass(frozen=True)
class Method:
    """One CAM method: its key, its label, the pytorch-grad-cam class whose math it is, and
    the path that computes it (`Predictor.maps` decides by this field alone):
    - "fast": from the target layer's activations and the head's gradient (one trunk pass);
    - "fused": two target layers, one forward and a backward after the finer block;
    - "reference": the library's own object with hooks (extra forward passes)."""
    name: str
    label: str
    engine: type
    path: str
    class_agnostic: bool = False      # the map does not depend on the class asked about

    @property
    def hook_free(self) -> bool:
        """Needs no hooks on the model: safe to run side by side on one model."""
        return self.path != "reference"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("gradcam", "Grad-CAM", GradCAM, "fast"),
    Method("gradcam++", "Grad-CAM++", GradCAMPlusPlus, "fast"),
    Method("xgradcam", "XGrad-CAM", XGradCAM, "fast"),
    Method("layercam", "Layer-CAM", LayerCAM, "fast"),
    # The activations' first principal component: the same map for every class.
    Method("eigencam", "Eigen-CAM", EigenCAM, "fast", class_agnostic=True),
    Method("hirescam", "HiRes-CAM", HiResCAM, "fast"),
    Method("scorecam", "Score-CAM", ScoreCAM, "reference"),
    Method("ablationcam", "Ablation-CAM", AblationCAM, "reference"),
    Method("layercamfused", "Layer-CAM, 2 layers", LayerCAM, "fused"),
)}
# Views of the registry, in its order.
LABELS = {name: m.label for name, m in METHODS.items()}
FAST_METHODS = tuple(name for name, m in METHODS.items() if m.path == "fast")
FUSED_METHODS = tuple(name for name, m in METHODS.items() if m.path == "fused")
HOOK_FREE = FAST_METHODS + FUSED_METHODS
CLASS_AGNOSTIC = frozenset(name for name, m in METHODS.items() if m.class_agnostic)
DEFAULT_METHOD = "gradcam"       # a checkpoint that names no `default_cam`


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


def _math_only(cls):
    """A pytorch-grad-cam method object without __init__: no model, no hooks; only its math."""
    engine = cls.__new__(cls)
    engine.activations_and_grads = _NoHooks()
    return engine


def eigen_projection(acts: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's `get_2d_projection` (EigenCAM) with a thin SVD: the first right
    singular vector is the same, without building the (K, K) matrix (K = 2048 channels for
    ResNet-50 against a few dozen positions).

    The SVD runs on one BLAS thread: woken OpenBLAS worker threads spin against torch's
    threads and slow the next forward pass on a machine with few cores.
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
    cls = METHODS[canonical_method(method)].engine
    engine = _math_only(cls)
    acts = activations.detach().float().cpu().numpy()
    grad = grads.detach().float().cpu().numpy() if grads is not None else np.zeros_like(acts)
    if cls is EigenCAM:
        cam = eigen_projection(acts)
    else:
        cam = engine.get_cam_image(None, None, None, acts, grad, False)
    cam = scale_cam_image(np.maximum(cam, 0), (int(size[1]), int(size[0])))
    return scale_cam_image(np.maximum(cam, 0))


def fusion_index(model: torch.nn.Module, size: Sequence[int]) -> int:
    """Index of the last trunk block whose map side is at least twice the last map's, for a
    (H, W) input; cached per model and size (one probe forward at batch 1 the first time)."""
    cache = model.__dict__.setdefault("_fusion_index", {})
    key = (int(size[0]), int(size[1]))
    if key not in cache:
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        x = torch.zeros(1, first.in_channels, *key, device=first.weight.device)
        sides = []
        with torch.no_grad():
            for block in model.trunk:
                x = block(x)
                sides.append(min(x.shape[-2:]))
        found = [i for i, side in enumerate(sides[:-1]) if side >= 2 * sides[-1]]
        if not found:
            raise ValueError("no trunk block has a map twice the side of the last one")
        cache[key] = found[-1]
    return cache[key]


def lattice_cells(support: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(h, w) bool map of where gradients are non-zero -> (rows, cols) indices that give each
    2x2 cell its stride-2 lattice point (`grads[:, :, rows][:, :, :, cols]`), or None when the
    support is not one such lattice."""
    h, w = support.shape
    for pi in (0, 1):
        for pj in (0, 1):
            lattice = np.zeros_like(support)
            lattice[pi::2, pj::2] = True
            if support[lattice].any() and not support[~lattice].any():
                rows = pi + 2 * np.clip((np.arange(h) - pi) // 2, 0, (h - pi - 1) // 2)
                cols = pj + 2 * np.clip((np.arange(w) - pj) // 2, 0, (w - pj - 1) // 2)
                return rows, cols
    return None


def spread_lattice(grads: np.ndarray) -> np.ndarray:
    """(B, C, h, w) gradients that are zero everywhere but on one stride-2 lattice (a stride-2
    1x1 convolution reads only those positions) -> each 2x2 cell takes its lattice point's
    gradient. Any other gradients are returned unchanged."""
    cells = lattice_cells(np.abs(grads).sum(axis=(0, 1)) > 0)
    if cells is None:
        return grads
    rows, cols = cells
    return np.ascontiguousarray(grads[:, :, rows][:, :, :, cols])


def layercam_map(activations: torch.Tensor, grads: torch.Tensor, size: Sequence[int]) -> np.ndarray:
    """One layer's Layer-CAM (pytorch-grad-cam's per-layer math and scaling) from (B, K, h, w)
    activations and gradients, lattice gradients spread (`spread_lattice`; dense ones are
    used as they are) -> (B, H, W) in [0, 1] for a (H, W) input."""
    cam = _math_only(LayerCAM).get_cam_image(None, None, None, activations.detach().float().cpu().numpy(),
                                           spread_lattice(grads.detach().float().cpu().numpy()), False)
    return scale_cam_image(np.maximum(cam, 0), (int(size[1]), int(size[0])))


def layercam_blocks(model: torch.nn.Module, batch: torch.Tensor, blocks: Sequence[int],
                    choose: Callable[[torch.Tensor], Sequence[int]], context=None,
                    versus: int | None = None):
    """Layer-CAM of the trunk blocks `blocks` without hooks -> (last acts (B, K, h, w), logits,
    targets, {block: (B, H, W) map in [0, 1]}).

    The trunk runs once: without autograd up to the first of `blocks`, with it after; only
    input gradients are taken. `choose` maps the logits to one target class per image.
    `context` wraps the forward (bfloat16 autocast, when asked for). Each map is `layercam_map` of its block.
    With `versus`, a map explains the target's logit minus class `versus`'s logit (a contrastive
    map: why this class rather than that one); an image whose target is `versus` keeps its plain map.
    """
    first, last = min(blocks), len(model.trunk) - 1
    context = context or contextlib.nullcontext()
    x = batch
    with torch.no_grad(), context:
        for block in model.trunk[:first + 1]:
            x = block(x)
    outs = {first: x.float().detach().requires_grad_(True)}
    with torch.enable_grad(), context:
        acts = outs[first]
        for i, block in enumerate(model.trunk[first + 1:], first + 1):
            acts = outs[i] = block(acts)
        acts = outs[last] = acts.float()
        logits = model.classify(acts)
        targets = list(choose(logits.detach()))
        index = torch.as_tensor(targets, device=logits.device)
        chosen = logits[torch.arange(len(targets)), index]
        if versus is not None:
            chosen = chosen - (index != versus).to(logits.dtype) * logits[:, versus]
        grads = torch.autograd.grad(chosen.sum(), [outs[b] for b in blocks])
    size = batch.shape[-2:]
    maps = {b: layercam_map(outs[b], g, size) for b, g in zip(blocks, grads)}
    return acts.detach(), logits.detach(), targets, maps


def fused_cam(model: torch.nn.Module, batch: torch.Tensor,
              choose: Callable[[torch.Tensor], Sequence[int]], context=None):
    """Layer-CAM on two layers without hooks -> (last acts (B, K, h, w), logits, targets, maps).

    `layercam_blocks` on the finer block (`fusion_index`) and the last one, averaged by
    pytorch-grad-cam's rule. Same maps as the library's LayerCAM with
    target_layers=[trunk[j], trunk[-1]], but for `spread_lattice` on the finer layer's gradient.
    """
    j, last = fusion_index(model, batch.shape[-2:]), len(model.trunk) - 1
    acts, logits, targets, maps = layercam_blocks(model, batch, [j, last], choose, context)
    per_layer = [maps[j][:, None], maps[last][:, None]]
    return acts, logits, targets, np.float32(_math_only(LayerCAM).aggregate_multi_layers(per_layer))


def smooth_maps(maps: np.ndarray, sigma: float) -> np.ndarray:
    """(B, H, W) maps -> the same blurred by a Gaussian of std `sigma` x the longer side, each
    rescaled to [0, 1] by the library's `scale_cam_image`; `sigma` 0 returns `maps` unchanged."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    maps = np.asarray(maps, np.float32)
    if sigma == 0:
        return maps
    std = float(sigma) * max(maps.shape[-2:])
    return scale_cam_image(np.stack([cv2.GaussianBlur(m, (0, 0), std) for m in maps]))


def reference_cam(model: torch.nn.Module, method: str, batch: torch.Tensor,
                  targets: Sequence[int]) -> np.ndarray:
    """pytorch-grad-cam's usual path (hooks, full backward); hooks are released on return."""
    spec = METHODS[canonical_method(method)]
    cls = spec.engine
    layers = ([model.trunk[fusion_index(model, batch.shape[-2:])], model.trunk[-1]]
              if spec.path == "fused" else [model.trunk[-1]])
    with cls(model=model, target_layers=layers) as engine:
        if hasattr(engine, "batch_size"):
            engine.batch_size = 32
        maps = engine(input_tensor=batch, targets=[ClassifierOutputTarget(t) for t in targets])
    return np.asarray(maps, np.float32)
