"""brainmri.cam: the single-pass maps are pytorch-grad-cam's maps, hook-free and trunk-backward-free."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from brainmri import cam as cams
from brainmri import models
from brainmri.models import target_layer
from brainmri.predictor import Predictor

from .synthetic import scan

ARCHS = tuple(models.ARCHS)     # every registered architecture
GRADIENT_METHODS = tuple(m for m in cams.FAST_METHODS if m != "eigencam")   # eigencam ignores the target
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


@pytest.fixture(scope="module")
def predictors(tiny_checkpoints) -> dict[str, Predictor]:
    return {arch: Predictor.from_checkpoint(path, device="cpu")
            for arch, path in tiny_checkpoints.items()}


@pytest.fixture(scope="module")
def batch(predictors) -> dict[str, torch.Tensor]:
    """Two prepared scans per architecture, (2, C, S, S) in the default (NCHW) layout."""
    return {arch: torch.stack([p.preset(scan(i)) for i in (1, 2)]) for arch, p in predictors.items()}


def library_cam(model: torch.nn.Module, method: str, batch: torch.Tensor, targets) -> np.ndarray:
    """pytorch-grad-cam built the usual way: its own hooks, forward and full backward."""
    with cams.METHODS[method].engine(model=model, target_layers=[target_layer(model)]) as engine:
        maps = engine(input_tensor=batch, targets=[ClassifierOutputTarget(t) for t in targets])
    model.zero_grad(set_to_none=True)
    return maps


def hooks_on(model: torch.nn.Module) -> list[str]:
    return [f"{name or 'model'}.{attr}" for name, module in model.named_modules()
            for attr in HOOK_DICTS if getattr(module, attr)]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", cams.FAST_METHODS)
def test_fast_path_equals_the_library(predictors, batch, arch, method):
    """Head-only gradient + our activations -> the library's own heatmap, per image and target."""
    predictor, x = predictors[arch], batch[arch]
    targets = [0, 2]                        # a different class per image in one batch
    acts = predictor.features(x)
    _, grads = predictor.classify(acts, targets)
    fast = cams.cam_from_activations(method, acts, grads, x.shape[-2:])
    reference = library_cam(predictor.model, method, x, targets)
    assert fast.shape == reference.shape == (2, *x.shape[-2:])
    assert fast.dtype == np.float32
    assert np.abs(fast - reference).max() < 1e-4
    assert fast.max() > 0.5                 # a real map, not two blank ones agreeing


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_fast_methods_never_back_propagate_through_the_trunk(predictors, arch, method):
    predictor = predictors[arch]
    model = predictor.model
    model.zero_grad(set_to_none=True)
    grad_enabled: list[bool] = []
    handle = model.trunk.register_forward_hook(lambda *_: grad_enabled.append(torch.is_grad_enabled()))
    try:
        predictor.explain(scan(3), method=method, target="glioma")
    finally:
        handle.remove()
    assert grad_enabled == [False]          # the trunk ran once, without autograd
    assert all(p.grad is None for p in model.trunk.parameters())


def test_the_trunk_check_would_see_a_library_backward(predictors, batch):
    """Guards the test above: the usual path does leave gradients on trunk parameters."""
    model = predictors["baseline"].model
    model.zero_grad(set_to_none=True)
    with cams.METHODS["gradcam"].engine(model=model, target_layers=[target_layer(model)]) as engine:
        engine(input_tensor=batch["baseline"], targets=[ClassifierOutputTarget(0)] * 2)
    assert any(p.grad is not None for p in model.trunk.parameters())
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_no_hooks_remain_after_explain(predictors, arch):
    predictor = predictors[arch]
    assert hooks_on(predictor.model) == []
    # Score-CAM (the library's hooked path) costs one forward per channel: only the small CNN.
    methods = ("gradcam", "eigencam") + (("scorecam",) if arch == "baseline" else ())
    for method in methods:
        predictor.explain(scan(4), method=method)
        assert hooks_on(predictor.model) == [], method
    global_hooks = [d for d in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                "_global_backward_hooks", "_global_backward_pre_hooks")
                    if getattr(torch.nn.modules.module, d, None)]
    assert global_hooks == []


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_non_predicted_target_gives_a_different_map(predictors, arch, method):
    predictor = predictors[arch]
    image = scan(5)
    own = predictor.explain(image, method=method)
    other = next(c for c in predictor.classes if c != own.prediction.label)
    theirs = predictor.explain(image, method=method, target=other)
    assert own.target == own.prediction.label and theirs.target == other
    assert theirs.prediction.probabilities == own.prediction.probabilities   # same answer
    assert np.abs(theirs.heatmap - own.heatmap).max() > 0.05


def test_score_cam_still_runs_through_the_library(predictors):
    predictor = predictors["baseline"]      # one forward per channel: 32 here, 2048 in ResNet-50
    image = np.asarray(scan(6, size=96))
    e = predictor.explain(image, method="Score-CAM", target="notumor")
    assert e.method == "scorecam" and e.target == "notumor"
    assert e.heatmap.shape == image.shape and e.heatmap.dtype == np.float32
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0 and e.heatmap.max() > 0
    assert hooks_on(predictor.model) == []


def trunk_sides(model: torch.nn.Module, x: torch.Tensor) -> list[int]:
    sides = []
    with torch.no_grad():
        for block in model.trunk:
            x = block(x)
            sides.append(min(x.shape[-2:]))
    return sides


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_layer_is_the_last_block_at_twice_the_side(predictors, batch, arch):
    model, x = predictors[arch].model, batch[arch]
    sides = trunk_sides(model, x[:1])
    j = cams.fusion_index(model, x.shape[-2:])
    assert sides[j] >= 2 * sides[-1]
    assert all(side < 2 * sides[-1] for side in sides[j + 1:])
    if arch == "resnet50":                   # trunk: conv1, bn1, relu, maxpool, layer1..layer4
        dilated = model.trunk[-1][1].conv2.dilation == (2, 2)
        assert j == (5 if dilated else 6)    # layer2 before a dilated layer4, else layer3


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_layercam_equals_the_library(predictors, batch, arch):
    """Two-layer Layer-CAM without hooks -> pytorch-grad-cam's LayerCAM on the same two layers,
    with the finer layer's gradient spread over its 2x2 cells where it lives on a lattice."""
    predictor, x = predictors[arch], batch[arch]
    model = predictor.model
    targets = [1, 3]
    acts, logits, chosen, fused = predictor.fused(x, lambda _: targets)
    assert chosen == targets
    layers = [model.trunk[cams.fusion_index(model, x.shape[-2:])], model.trunk[-1]]
    with cams.METHODS["layercamfused"].engine(model=model, target_layers=layers) as engine:
        reference = engine(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
        a_fine = engine.activations_and_grads.activations[0].numpy()
        g_fine = engine.activations_and_grads.gradients[0].numpy()
        a_last = engine.activations_and_grads.activations[1].numpy()
        g_last = engine.activations_and_grads.gradients[1].numpy()
        size = (x.shape[-1], x.shape[-2])
        per_layer = [scale_cam_image(np.maximum(engine.get_cam_image(None, None, None, a, g, False), 0),
                                     size)[:, None]
                     for a, g in ((a_fine, cams.spread_lattice(g_fine)), (a_last, g_last))]
        spread = engine.aggregate_multi_layers(per_layer)
    model.zero_grad(set_to_none=True)
    on_lattice = not np.abs(g_fine[:, :, 1::2, :]).any() and not np.abs(g_fine[:, :, :, 1::2]).any()
    assert on_lattice == (arch == "resnet50")      # v1 strides: a stride-2 1x1 conv reads the map
    if not on_lattice:
        assert np.abs(fused - reference).max() < 1e-4
    assert fused.shape == spread.shape == (2, *x.shape[-2:])
    assert np.abs(fused - spread).max() < 1e-4
    assert fused.max() > 0.5
    assert torch.allclose(logits, model(x), atol=1e-4)              # same forward, same answer
    assert torch.allclose(acts, predictor.features(x), atol=1e-4)
    # differs from the last layer's Layer-CAM alone: the finer layer contributes
    _, grads = predictor.classify(acts, targets)
    alone = cams.cam_from_activations("layercam", acts, grads, x.shape[-2:])
    assert np.abs(fused - alone).max() > 0.05


@pytest.mark.parametrize("phase", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_spread_lattice_fills_each_cell_from_its_lattice_point(phase):
    pi, pj = phase
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    sparse = np.zeros_like(dense)
    sparse[:, :, pi::2, pj::2] = dense[:, :, pi::2, pj::2]
    out = cams.spread_lattice(sparse)
    assert out.shape == sparse.shape and np.abs(out).min() > 0      # no blank position left
    for y in range(7):
        for x in range(6):
            ly = min(max(pi + 2 * ((y - pi) // 2), pi), pi + 2 * ((7 - 1 - pi) // 2))
            lx = min(max(pj + 2 * ((x - pj) // 2), pj), pj + 2 * ((6 - 1 - pj) // 2))
            np.testing.assert_array_equal(out[:, :, y, x], sparse[:, :, ly, lx])
    assert cams.spread_lattice(dense) is dense                      # dense gradients: unchanged
    blank = np.zeros_like(dense)
    assert cams.spread_lattice(blank) is blank


@pytest.mark.parametrize("arch", ARCHS)
def test_fused_layercam_runs_the_trunk_once_without_hooks_or_weight_gradients(predictors, arch):
    predictor = predictors[arch]
    model = predictor.model
    model.zero_grad(set_to_none=True)
    calls: list[bool] = []
    handles = [b.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
               for b in model.trunk]
    try:
        e = predictor.explain(scan(3), method="layercam-fused", target="glioma")
    finally:
        for h in handles:
            h.remove()
    j = cams.fusion_index(model, predictor.preset(scan(3)).shape[-2:])
    assert calls == [False] * (j + 1) + [True] * (len(model.trunk) - j - 1)   # each block once
    assert all(p.grad is None for p in model.parameters())
    assert hooks_on(model) == []
    assert e.method == "layercamfused" and e.target == "glioma"
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0


@pytest.mark.parametrize("versus", [3, 0])
def test_contrastive_layercam_equals_the_library_with_a_difference_target(predictors, batch, versus):
    """`versus`: the map of logit[target] - logit[versus] is the library's LayerCAM for that
    target; an image whose target is `versus` keeps its plain map."""
    predictor, x = predictors["baseline"], batch["baseline"]           # dense gradients
    model, last = predictor.model, len(predictor.model.trunk) - 1
    targets = [0, 2]
    # scaled again after the resize, as the library's aggregation (and studies.cam_layers) does
    maps = scale_cam_image(cams.layercam_blocks(model, x, [last], lambda _: targets, versus=versus)[3][last])
    wanted = [(lambda out, t=t: out[t] - out[versus]) if t != versus else ClassifierOutputTarget(t)
              for t in targets]
    with cams.METHODS["layercam"].engine(model=model, target_layers=[model.trunk[last]]) as engine:
        reference = engine(input_tensor=x, targets=wanted)
    model.zero_grad(set_to_none=True)
    assert np.abs(maps - reference).max() < 1e-4
    plain = scale_cam_image(cams.layercam_blocks(model, x, [last], lambda _: targets)[3][last])
    changed = [np.abs(maps[i] - plain[i]).max() > 1e-3 for i in range(2)]
    assert changed == [t != versus for t in targets]


def test_smooth_maps_moves_the_peak_from_a_speck_to_the_broad_region():
    maps = np.zeros((2, 64, 64), np.float32)
    yy, xx = np.mgrid[:64, :64]
    maps[0] = 0.9 * np.exp(-((yy - 40) ** 2 + (xx - 20) ** 2) / (2 * 8.0 ** 2))   # a broad region
    maps[0, 10, 50] = 1.0                                                          # a one-pixel speck
    maps[1, 30, 30] = 1.0
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (10, 50)
    smooth = cams.smooth_maps(maps, 0.05)
    assert smooth.shape == maps.shape and smooth.dtype == np.float32
    assert np.unravel_index(smooth[0].argmax(), (64, 64)) == (40, 20)
    assert np.unravel_index(smooth[1].argmax(), (64, 64)) == (30, 30)
    for m in smooth:                   # each map rescaled to [0, 1] like the library's maps
        assert m.min() == pytest.approx(0, abs=1e-6) and m.max() == pytest.approx(1, abs=1e-4)
    assert cams.smooth_maps(maps, 0) is not None and np.array_equal(cams.smooth_maps(maps, 0), maps)
    with pytest.raises(ValueError, match="sigma"):
        cams.smooth_maps(maps, -0.1)
