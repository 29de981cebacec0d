"""brainmri.predictor: the one predict-and-explain API, on tiny random checkpoints."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from brainmri import cam as cams
from brainmri import models
from brainmri.classes import CLASSES
from brainmri.io import ImageLoadError
from brainmri.predictor import Explanation, Prediction, Predictor

from .synthetic import scan

ARCHS = tuple(models.ARCHS)     # every registered architecture


@pytest.fixture(scope="module")
def predictors(tiny_checkpoints) -> dict[str, Predictor]:
    return {arch: Predictor.from_checkpoint(path, device="cpu")
            for arch, path in tiny_checkpoints.items()}


@pytest.fixture(scope="module")
def wide_scan() -> np.ndarray:
    """A non-square (H=150, W=190) greyscale scan, so any H/W mix-up shows."""
    return np.pad(np.asarray(scan(7, size=150)), ((0, 0), (25, 15)))


def _check_prediction(p: Prediction) -> None:
    assert isinstance(p, Prediction)
    assert tuple(p.probabilities) == CLASSES
    assert all(0.0 <= v <= 1.0 for v in p.probabilities.values())
    assert math.isclose(sum(p.probabilities.values()), 1.0, abs_tol=1e-5)
    assert p.label in CLASSES
    assert p.label == max(p.probabilities, key=p.probabilities.get)


@pytest.mark.parametrize("arch", ARCHS)
def test_predict_from_pil_array_path_and_bytes_agree(predictors, arch, tmp_path):
    predictor = predictors[arch]
    image = scan(2, size=120)
    path = tmp_path / "scan.png"
    image.save(path)
    results = [predictor.predict(source) for source in
               (image, np.asarray(image), path, str(path), path.read_bytes())]
    for p in results:
        _check_prediction(p)
        assert p.is_mri and math.isnan(p.mri_score)          # tiny checkpoints carry no detector
    for p in results[1:]:                                     # one picture, one answer
        assert p.label == results[0].label
        for c in CLASSES:
            assert p.probabilities[c] == pytest.approx(results[0].probabilities[c], abs=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_grey_and_rgb_give_the_same_prediction(predictors, arch):
    grey, rgb = predictors[arch].predict(scan(4)), predictors[arch].predict(scan(4, rgb=True))
    assert grey.label == rgb.label and grey.probabilities == rgb.probabilities


def test_predict_batch_matches_single_predictions(predictors):
    predictor = predictors["baseline"]
    images = [scan(i, size=96 + 8 * i) for i in range(3)]
    batch = predictor.predict_batch(images)
    assert len(batch) == 3
    for image, p in zip(images, batch):
        single = predictor.predict(image)
        assert p.label == single.label
        assert p.probabilities == pytest.approx(single.probabilities, abs=1e-5)


def test_predictor_reads_everything_from_the_checkpoint(predictors):
    predictor = predictors["baseline"]
    assert predictor.classes == CLASSES
    assert predictor.name == "tiny-baseline"
    assert (predictor.preset.size, predictor.preset.channels) == (64, 1)
    assert predictor.preset.mean == (0.5,)                   # lists in JSON become tuples again
    assert predictor.temperature == 1.0


def test_temperature_softens_but_keeps_the_label(predictors):
    base = predictors["baseline"]
    hot = Predictor(base.model, {**base.meta, "calibration": {"temperature": 50.0}}, base.device)
    a, b = base.predict(scan(5)), hot.predict(scan(5))
    assert a.label == b.label
    assert max(b.probabilities.values()) <= max(a.probabilities.values())
    assert max(b.probabilities.values()) - min(b.probabilities.values()) < 0.05


@pytest.mark.parametrize("arch", ARCHS)
def test_explain_heatmap_and_overlay_follow_the_input(predictors, arch, wide_scan):
    e = predictors[arch].explain(wide_scan)
    assert isinstance(e, Explanation)
    _check_prediction(e.prediction)
    assert e.method == "gradcam" and e.target == e.prediction.label
    assert e.heatmap.shape == (150, 190) and e.heatmap.dtype == np.float32
    assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
    assert e.overlay.shape == (150, 190, 3) and e.overlay.dtype == np.uint8
    assert np.array_equal(e.grey, wide_scan)
    x0, y0, x1, y1 = predictors[arch].preset.prepare(wide_scan).box
    outside = np.ones_like(e.heatmap, bool)
    outside[y0:y1, x0:x1] = False
    assert not e.heatmap[outside].any()                      # nothing outside the head crop


def test_explain_rgb_input_gives_input_sized_overlay(predictors):
    e = predictors["resnet50"].explain(scan(6, size=100, rgb=True), method="Grad-CAM++")
    assert e.method == "gradcam++"
    assert e.overlay.shape == (100, 100, 3) and e.overlay.dtype == np.uint8


@pytest.mark.parametrize("method", cams.FAST_METHODS + cams.FUSED_METHODS + ("scorecam",))
def test_every_method_gives_a_map_in_unit_range(predictors, method, wide_scan):
    e = predictors["baseline"].explain(wide_scan, method=method)
    assert e.method == method
    assert e.heatmap.shape == wide_scan.shape
    assert 0.0 <= e.heatmap.min() and e.heatmap.max() <= 1.0


def test_explain_target_by_name_and_index(predictors, wide_scan):
    predictor = predictors["baseline"]
    by_name = predictor.explain(wide_scan, target="meningioma")
    by_index = predictor.explain(wide_scan, target=CLASSES.index("meningioma"))
    assert by_name.target == by_index.target == "meningioma"
    assert np.array_equal(by_name.heatmap, by_index.heatmap)
    maps = {c: predictor.explain(wide_scan, target=c).heatmap for c in CLASSES}
    assert any(not np.allclose(maps[CLASSES[0]], m) for m in maps.values())   # target matters


def test_fast_gradcam_equals_the_library_path(predictors):
    """The single-pass Grad-CAM is pytorch-grad-cam's own Grad-CAM, not an approximation."""
    predictor = predictors["baseline"]
    batch = torch.stack([predictor.preset(scan(i)) for i in range(2)])
    acts = predictor.features(batch)
    targets = [0, 2]
    _, grads = predictor.classify(acts, targets)
    fast = cams.cam_from_activations("gradcam", acts, grads, batch.shape[-2:])
    reference = cams.reference_cam(predictor.model, "gradcam", batch, targets)
    assert fast.shape == reference.shape == (2, 64, 64)
    assert np.allclose(fast, reference, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "deeplift"}, "unknown CAM method 'deeplift'"),
    ({"target": "astrocytoma"}, "unknown target class 'astrocytoma'"),
    ({"target": 4}, "target index 4 out of range"),
    ({"target": -1}, "target index -1 out of range"),
])
def test_bad_method_or_target_raise_value_error(predictors, kwargs, match):
    with pytest.raises(ValueError, match=match):
        predictors["baseline"].explain(scan(0, size=64), **kwargs)


def test_unreadable_input_raises_image_load_error(predictors, tmp_path):
    with pytest.raises(ImageLoadError):
        predictors["baseline"].predict(b"certainly not an image")
    with pytest.raises(ImageLoadError, match="no such file"):
        predictors["baseline"].predict(tmp_path / "absent.png")
