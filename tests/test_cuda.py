"""The same code on a CUDA GPU: skipped without one (CI has none); run on a GPU machine with
`pytest tests/test_cuda.py`. Tiny checkpoints and synthetic scans, as on the CPU."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from benchmarks.precision import tf32
from brainmri import cam as cams
from brainmri import models
from brainmri.batching import Batcher
from brainmri.predictor import Predictor
from brainmri.service import Service

from .synthetic import scan

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
ARCHS = tuple(models.ARCHS)     # every registered architecture


@pytest.fixture
def strict_fp32():
    """float32 without TF32 (PyTorch lets cuDNN convolutions use TF32 by default), restored after."""
    with tf32(False):
        yield


@pytest.fixture(scope="module")
def cpu(tiny_checkpoints) -> dict[str, Predictor]:
    return {a: Predictor.from_checkpoint(p, "cpu") for a, p in tiny_checkpoints.items()}


@pytest.fixture(scope="module")
def gpu(tiny_checkpoints) -> dict[str, dict[str, Predictor]]:
    return {precision: {a: Predictor.from_checkpoint(p, "cuda", precision=precision)
                        for a, p in tiny_checkpoints.items()} for precision in ("fp32", "bf16")}


def test_default_device_and_precision_on_a_gpu(tiny_checkpoints):
    p = Predictor.from_checkpoint(tiny_checkpoints["resnet50"])
    assert p.device.type == "cuda" and p.precision == "auto"
    assert next(p.model.parameters()).is_cuda
    bf16 = Predictor.from_checkpoint(tiny_checkpoints["resnet50"], precision="bf16")
    assert isinstance(p.autocast(), nullcontext)               # auto is float32 (docs/gpu.md)
    assert isinstance(bf16.autocast(), torch.autocast)
    assert bf16.bf16 and not p.bf16


# ResNet-50's fused map spreads its lattice gradients on purpose, so it is not the library's
# map there: test_cam checks that maths, and test_gpu_and_cpu_agree that the GPU gives the same.
CASES = [(a, m) for a in ARCHS for m in cams.FAST_METHODS + cams.FUSED_METHODS
         if not (a == "resnet50" and m in cams.FUSED_METHODS)]


@pytest.mark.parametrize(("arch", "method"), CASES)
def test_gpu_fast_path_equals_the_library_on_the_gpu(gpu, arch, method, strict_fp32):
    """float32 on the GPU: every hook-free map equals pytorch-grad-cam's hooked path there."""
    p = gpu["fp32"][arch]
    x = torch.stack([p.preset(scan(i)) for i in (1, 2)]).to("cuda")
    targets = [0, 2]
    if method in cams.FUSED_METHODS:
        _, _, _, fast = p.fused(x, lambda _: targets)
    else:
        acts = p.features(x)
        _, grads = p.classify(acts, targets)
        fast = cams.cam_from_activations(method, acts, grads, x.shape[-2:])
    reference = cams.reference_cam(p.model, method, x, targets)
    p.model.zero_grad(set_to_none=True)
    assert np.abs(fast - reference).max() < 1e-4
    assert fast.max() > 0.5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["gradcam", "layercamfused"])
def test_gpu_and_cpu_agree(cpu, gpu, arch, method, strict_fp32):
    images = [scan(i) for i in range(4)]
    for c, g in zip(cpu[arch].explain_batch(images, method),
                    gpu["fp32"][arch].explain_batch(images, method)):
        assert c.prediction.label == g.prediction.label
        for k in c.prediction.probabilities:
            assert abs(c.prediction.probabilities[k] - g.prediction.probabilities[k]) < 1e-4
        assert np.abs(c.heatmap - g.heatmap).max() < 1e-3


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["gradcam", "layercamfused", "scorecam"])
def test_bf16_gives_unit_range_maps_and_probabilities(cpu, gpu, arch, method):
    image = scan(3)
    e = gpu["bf16"][arch].explain(image, method)
    ref = cpu[arch].explain(image, method)
    assert e.heatmap.shape == ref.heatmap.shape and e.overlay.shape == ref.overlay.shape
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0 and e.heatmap.max() > 0.5
    assert sum(e.prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    for k in ref.prediction.probabilities:      # bfloat16 keeps about 3 significant digits
        assert abs(e.prediction.probabilities[k] - ref.prediction.probabilities[k]) < 0.05


def test_batcher_on_the_gpu_matches_one_at_a_time(gpu, strict_fp32):
    p = gpu["fp32"]["resnet50"]
    images = [scan(i) for i in range(6)]
    with Batcher(p, max_batch=4, max_wait_ms=20) as batcher, ThreadPoolExecutor(6) as pool:
        batched = list(pool.map(lambda image: batcher.explain(image, "gradcam"), images, timeout=60))
    for image, b in zip(images, batched):
        one = p.explain(image, "gradcam")
        assert b.prediction.label == one.prediction.label
        assert np.abs(b.heatmap - one.heatmap).max() < 1e-3


def test_service_on_the_gpu(tiny_checkpoints):
    service = Service({a: Predictor.from_checkpoint(p, "cuda") for a, p in tiny_checkpoints.items()})
    try:
        comparison = service.compare(scan(5))
        assert set(comparison.results) == set(tiny_checkpoints)
        for result in comparison.results.values():
            assert result.overlay.dtype == np.uint8 and result.overlay.ndim == 3
        assert f"({torch.cuda.get_device_name(0)}), float32" in service.model_card()
    finally:
        service.close()


def test_library_targets_move_to_the_gpu():
    """ClassifierOutputTarget indexes a CUDA output (the reference path relies on it)."""
    out = torch.randn(2, 4, device="cuda")
    assert float(ClassifierOutputTarget(1)(out[0])) == float(out[0, 1])
