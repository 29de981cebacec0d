"""The app's handlers as a library: brainmri.service, on tiny checkpoints and synthetic scans."""
from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest

from brainmri.checkpoint import update_metadata
from brainmri.io import ImageLoadError
from brainmri.ood import MahalanobisOOD
from brainmri.predictor import Explanation, Prediction, Predictor
from brainmri.protocols import DESCRIPTIONS
from brainmri import outcomes
from brainmri.outcomes import Outcome
from brainmri.service import PREDICTED, Service, class_label
from brainmri.texts import REFUSED
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import scan


@pytest.fixture(scope="module")
def service(tiny_checkpoints) -> Service:
    return Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()})


def png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class FakeEngine:
    """Anything with `explain` and the three attributes can stand in for a Predictor (the seam
    a request batcher will use)."""

    def __init__(self, probs: dict[str, float], is_mri: bool = True):
        self.classes, self.meta, self.default_method = tuple(probs), {"arch": "fake"}, "gradcam"
        self.probs, self.is_mri, self.calls = probs, is_mri, 0

    def explain(self, image, method=None, target=None, alpha=0.45):
        self.calls += 1
        grey = np.full((20, 30), 100, np.uint8)
        heat = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30)
        label = max(self.probs, key=self.probs.get)
        p = Prediction(label, dict(self.probs), self.is_mri, 0.0 if self.is_mri else 1e6)
        return Explanation(p, method or "gradcam", target or label, heat,
                           np.zeros((20, 30, 3), np.uint8), grey)


PROBS = {"glioma": 0.7, "meningioma": 0.1, "notumor": 0.1, "pituitary": 0.1}


def test_classify_contract(service):
    image = scan(seed=1, size=96)
    r = service.classify(png(image), "resnet50", "gradcam", PREDICTED, 0.45)
    assert r.label in service.classes and r.target == r.label and r.method == "gradcam"
    assert set(r.probabilities) == set(service.classes)
    assert math.isclose(sum(r.probabilities.values()), 1.0, abs_tol=1e-5)
    assert r.heatmap.shape == (96, 96) and r.heatmap.dtype == np.float32
    assert 0.0 <= r.heatmap.min() and r.heatmap.max() <= 1.0
    assert r.overlay.shape == (96, 96, 3) and r.overlay.dtype == np.uint8
    assert r.heatmap_rgb.shape == (96, 96, 3) and r.time_ms > 0
    assert class_label(r.label) in r.headline and REFUSED not in r.headline


@pytest.mark.parametrize("method", ["gradcam++", "Layer-CAM", "eigencam", "hirescam", "xgradcam",
                                    "layercam-fused"])
def test_methods_and_explicit_target(service, method):
    r = service.classify(scan(seed=2, size=80), "baseline", method, "meningioma")
    assert r.target == "meningioma"
    assert (class_label("meningioma") in r.headline) != (method == "eigencam")  # class-agnostic
    assert r.heatmap.shape == (80, 80) and 0.0 <= r.heatmap.min() <= r.heatmap.max() <= 1.0


def test_bad_requests_name_the_value(service):
    image = scan(seed=1, size=64)
    with pytest.raises(ValueError, match="banana"):
        service.classify(image, "resnet50", "gradcam", "banana")
    with pytest.raises(ValueError, match="vgg"):
        service.classify(image, "vgg", "gradcam")
    with pytest.raises(ValueError, match="fancycam"):
        service.classify(image, "resnet50", "fancycam")
    with pytest.raises(ImageLoadError, match="empty"):
        service.classify(b"", "resnet50")
    with pytest.raises(ImageLoadError, match="not an image|not a readable image"):
        service.classify(b"hello, I am a text file pretending to be a JPEG", "resnet50")


def test_reblend_matches_and_runs_no_model(service):
    r = service.classify(scan(seed=4, size=72), "baseline", alpha=0.3)
    np.testing.assert_array_equal(service.reblend(r.grey, r.heatmap, 0.3), r.overlay)
    plain = service.reblend(r.grey, r.heatmap, 0.0)
    np.testing.assert_array_equal(plain, np.repeat(r.grey[:, :, None], 3, axis=2))
    engine = FakeEngine(PROBS)
    Service({"baseline": engine}, warmup=False).reblend(r.grey, r.heatmap, 0.9)
    assert engine.calls == 0


def test_compare_runs_every_model_once(service):
    c = service.compare(scan(seed=5, size=90, rgb=True), "gradcam")
    assert list(c.results) == ["baseline", "resnet50"]
    for r in c.results.values():
        assert r.target == r.label and r.overlay.shape == (90, 90, 3) and r.time_ms > 0
    labels = {r.label for r in c.results.values()}
    assert c.agree == (len(labels) == 1)
    assert ("agree:" if c.agree else "disagree") in c.summary


def test_engines_are_swappable_and_warmed_up():
    engines = {"baseline": FakeEngine(PROBS), "resnet50": FakeEngine(PROBS)}
    svc = Service(engines)
    assert [e.calls for e in engines.values()] == [1, 1]
    c = svc.compare(scan(seed=0, size=64))
    assert c.agree is True and "agree" in c.summary


def test_not_mri_is_said_plainly():
    svc = Service({"resnet50": FakeEngine(PROBS, is_mri=False),
                   "baseline": FakeEngine(PROBS)}, warmup=False)
    r = svc.classify(scan(seed=0, size=64), "resnet50")
    assert r.headline.startswith(f"### {REFUSED}\n")
    assert "%" not in r.headline and r.probabilities == {} and r.label is None   # not a finding
    assert r.reasons == (outcomes.UNLIKE_TRAINING,) and r.reasons[0].text in r.headline
    c = svc.compare(scan(seed=0, size=64))
    assert c.agree is None and REFUSED in c.summary


def test_not_mri_with_a_real_detector(tmp_path):
    """A tiny checkpoint whose OOD threshold refuses everything goes through the real path."""
    path = make_tiny_checkpoint(tmp_path / "baseline.safetensors", "baseline")
    rng = np.random.default_rng(0)
    ood = MahalanobisOOD.fit(rng.normal(size=(40, 32)), np.arange(40) % 4, dims=8)
    update_metadata(path, extra=ood.tensors(), ood={"method": "mahalanobis-pca",
                                                    "threshold": -1.0, "quantile": 0.995})
    svc = Service.from_folder(tmp_path, device="cpu")
    r = svc.classify(scan(seed=1, size=64), "baseline")
    assert not r.is_mri and REFUSED in r.headline and r.reasons == (outcomes.UNLIKE_TRAINING,)
    assert "trained on" in r.headline and "CT" in r.headline     # says against what, and what else lands here
    assert r.label is None and r.probabilities == {} and r.target is None
    assert "99.5th percentile of validation scans" in svc.model_card()
    update_metadata(path, ood={"method": "mahalanobis-pca", "threshold": -1.0, "quantile": 0.995,
                               "refused": 0.001, "scale": 1.4})
    card = Service.from_folder(tmp_path, device="cpu").model_card()
    assert "refusing 0.1% of unseen training and validation scans" in card


def test_model_card_names_the_lesion_signals(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "resnet50.safetensors", "resnet50")
    update_metadata(path, recipe="lesion", args={"counterfactual": 0.15, "guidance": 1.0, "acquisition": 1})
    card = Service.from_folder(tmp_path, device="cpu", warmup=False).model_card()
    assert ("`lesion`; 15% of boxed tumour scans also shown with the tumour painted out as no tumour, "
            "with balanced control paintings; map mass outside the tumour box penalised (weight 1); "
            "contrast and acquisition augmentation") in card


def test_model_card_from_metadata(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "resnet50.safetensors", "resnet50")
    update_metadata(path, metrics={"official": {"accuracy": 0.991, "macro_f1": 0.99},
                                   "clean": {"accuracy": 0.9}},
                    recipe="dilate", args={"outside_weight": 1.0})
    svc = Service.from_folder(tmp_path, device="cpu", warmup=False)
    assert svc.models == ["resnet50"]
    card = svc.model_card()
    assert "`dilate`, last map kept inside the head (penalty weight 1)" in card
    update_metadata(path, args={"outside_weight": 1.0, "finer_weight": 0.5})
    assert ("`dilate`, last map and a finer map kept inside the head (penalty weights 1 and 0.5)"
            in Service.from_folder(tmp_path, device="cpu", warmup=False).model_card())
    for text in ("Research and education only", "not for diagnosis", "Known limitations",
                 "Duplicated data", "Source shortcuts", "| clean | 0.900 | – |",
                 "| official | 0.991 | 0.990 |", "| protocol | accuracy | macro F1 |", DESCRIPTIONS["clean"], "Kaggle"):
        assert text in card


def test_from_folder_without_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="baseline.safetensors"):
        Service.from_folder(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        Service({})


def test_default_method_follows_checkpoint(service):
    assert service.default_method == "gradcam"
    assert set(service.methods) >= {"gradcam", "gradcam++", "xgradcam", "layercam", "eigencam",
                                    "hirescam", "layercamfused"}


def test_from_folder_batches_concurrent_requests(tmp_path):
    """With batch > 1 each model sits behind a Batcher: concurrent classify calls return what
    unbatched calls return, in fewer forward passes than requests."""
    from concurrent.futures import ThreadPoolExecutor
    from brainmri.batching import Batcher
    make_tiny_checkpoint(tmp_path / "resnet50.safetensors", "resnet50")
    plain = Service.from_folder(tmp_path, device="cpu", warmup=False)
    svc = Service.from_folder(tmp_path, device="cpu", batch=8, max_wait_ms=200, workers=2)
    try:
        assert isinstance(svc.engines["resnet50"], Batcher)
        assert svc.engines["resnet50"].workers == 2
        assert svc.predictor("resnet50") is svc.engines["resnet50"].predictor
        assert plain.predictor("resnet50") is plain.engines["resnet50"]
        with pytest.raises(ValueError, match="unknown model 'nope'; loaded: resnet50"):
            svc.predictor("nope")
        images = [scan(seed=s, size=64) for s in range(6)]
        before = svc.engines["resnet50"].batches
        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(lambda im: svc.classify(im, "resnet50", "gradcam"), images))
        assert svc.engines["resnet50"].batches - before < len(images)
        for image, r in zip(images, got):
            want = plain.classify(image, "resnet50", "gradcam")
            assert r.label == want.label
            assert np.allclose(list(r.probabilities.values()), list(want.probabilities.values()), atol=1e-5)
            assert np.abs(r.heatmap - want.heatmap).max() < 1e-4
    finally:
        svc.close()
    with pytest.raises(RuntimeError, match="closed"):
        svc.classify(images[0], "resnet50")


def test_method_choices_are_plain_and_the_card_shows_measured_scores(tmp_path):
    for arch in ("baseline", "resnet50"):
        make_tiny_checkpoint(tmp_path / f"{arch}.safetensors", arch)
    update_metadata(tmp_path / "resnet50.safetensors", default_cam="layercam",
                    cam_scores={"gradcam": 0.812, "layercam": 0.934},
                    cam_scores_about="pointing game on 40 validation scans")
    update_metadata(tmp_path / "baseline.safetensors", cam_scores={"gradcam": 0.04})
    svc = Service.from_folder(tmp_path, device="cpu", warmup=False)
    assert svc.models == ["baseline", "resnet50"] and svc.default_method == "layercam"
    choices = dict((key, label) for label, key in svc.method_choices())
    assert choices["gradcam"] == "Grad-CAM" and choices["layercam"] == "Layer-CAM"
    assert choices["eigencam"] == "Eigen-CAM (same map for every class)"
    assert set(choices) == set(svc.methods)
    r = svc.classify(scan(seed=2, size=64), "resnet50", "eigencam", target="glioma")
    assert "Eigen-CAM (the same map for every class)" in r.headline
    card = svc.model_card()
    assert "pointing game on 40 validation scans): Layer-CAM (default) 93%, Grad-CAM 81%" in card


def test_model_card_says_where_each_model_runs(service):
    card = service.model_card()
    assert "**Runs on.** Baseline CNN on the CPU (" in card and "ResNet-50 on the CPU (" in card
    assert "float32" in card


def test_model_card_skips_engines_without_a_device():
    assert "Runs on" not in Service({"resnet50": FakeEngine({"glioma": 1.0})}, warmup=False).model_card()


class LesionEngine(FakeEngine):
    """Says glioma while the scan holds a bright (>= 200) spot, else no tumour."""

    def explain(self, image, method=None, target=None, alpha=0.45):
        self.calls += 1
        grey = np.asarray(image, np.uint8)
        probs = ({"glioma": 0.9, "meningioma": 0.04, "notumor": 0.03, "pituitary": 0.03}
                 if grey.max() >= 200 else
                 {"glioma": 0.2, "meningioma": 0.1, "notumor": 0.6, "pituitary": 0.1})
        label = max(probs, key=probs.get)
        heat = np.zeros(grey.shape, np.float32)
        return Explanation(Prediction(label, probs, True, 0.0), method or "gradcam", target or label,
                           heat, np.zeros((*grey.shape, 3), np.uint8), grey)


def test_recheck_paints_out_the_hot_region_and_says_whether_it_decided():
    yy, xx = np.mgrid[:80, :80]
    grey = np.where((yy - 40) ** 2 + (xx - 40) ** 2 < 35 ** 2, 90, 0).astype(np.uint8)  # a head
    grey[20:28, 50:58] = 230                                                           # the lesion
    before = {"glioma": 0.9, "meningioma": 0.04, "notumor": 0.03, "pituitary": 0.03}
    svc = Service({"resnet50": LesionEngine(PROBS)}, warmup=False)
    on_lesion = np.exp(-((yy - 24) ** 2 + (xx - 54) ** 2) / 80.0).astype(np.float32)  # half-max r 7.4
    r = svc.recheck(grey, on_lesion, "resnet50", before)
    assert r.changed and r.painted.label == "notumor" and r.painted.grey.max() < 200
    assert "decided this answer" in r.summary and "90.0% → 20.0%" in r.summary
    assert 0 < r.region_share < 0.1
    untouched = r.painted.grey.astype(int) != grey          # only the hot region was painted
    assert untouched.any() and not untouched[60:, :].any()
    elsewhere = np.exp(-((yy - 60) ** 2 + (xx - 30) ** 2) / 30.0).astype(np.float32)
    r = svc.recheck(grey, elsewhere, "resnet50", before)
    assert not r.changed and r.painted.label == "glioma" and "holds without" in r.summary
    assert "quarter of the head" not in r.summary
    broad = np.where(grey > 0, 1.0, 0.0).astype(np.float32)               # the whole head is hot
    assert "quarter of the head" in svc.recheck(grey, broad, "resnet50", before).summary
    with pytest.raises(ValueError, match="empty"):
        svc.recheck(grey, np.zeros_like(on_lesion), "resnet50", before)
    with pytest.raises(ValueError, match="same"):
        svc.recheck(grey, on_lesion[:, :-1], "resnet50", before)


def test_recheck_runs_the_real_models(service):
    r = service.classify(scan(seed=3, size=96), "resnet50", "gradcam")
    again = service.recheck(r.grey, r.heatmap, "resnet50", r.probabilities, method="gradcam")
    assert again.painted.heatmap.shape == r.heatmap.shape and 0 < again.region_share <= 1
    assert again.painted.label in service.classes and "Hot region painted out" in again.summary
    assert again.changed == (again.painted.label != r.label)


def test_findings_about_a_checkpoint_come_from_its_card(tmp_path):
    """The library holds no finding about a particular checkpoint: limitations and the
    recheck's note come from `meta["card"]` (`python -m train.card`), generic without it."""
    import json
    from train.card import main as write_card
    path = make_tiny_checkpoint(tmp_path / "resnet50.safetensors", "resnet50")
    grey = np.where(np.hypot(*np.mgrid[-40:40, -40:40]) < 35, 90, 0).astype(np.uint8)
    heat = np.exp(-np.hypot(*np.mgrid[-40:40, -40:40]) ** 2 / 80).astype(np.float32)
    plain = Service.from_folder(tmp_path, device="cpu", warmup=False)
    assert "Known limitations" in plain.model_card() and "studies" not in plain.model_card()
    summary = plain.recheck(grey, heat, "resnet50", PROBS).summary
    assert summary.endswith("*One slice, one painted region: a hint, not proof.*")
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"limitations": ["**Finding A.** Measured (`python -m studies.x`)."],
                                "recheck": "Painting elsewhere rarely changed it."}))
    assert write_card([str(path), str(card)])["recheck"] == "Painting elsewhere rarely changed it."
    svc = Service.from_folder(tmp_path, device="cpu", warmup=False)
    assert "\n- **Finding A.** Measured (`python -m studies.x`)." in svc.model_card()
    assert svc.recheck(grey, heat, "resnet50", PROBS).summary.endswith(
        "a hint, not proof. Painting elsewhere rarely changed it.*")
    card.write_text(json.dumps({"limits": "typo"}))
    with pytest.raises(ValueError, match="unknown card key 'limits'"):
        write_card([str(path), str(card)])


def test_shipped_cards_hold_the_studies_findings(shipped_checkpoints):
    from brainmri.checkpoint import read_metadata
    card = read_metadata(shipped_checkpoints["resnet50"])["card"]
    assert "studies.lesion_masked" in card["limitations"][0] and "docs/gpu.md" in card["precision"]
    baseline = read_metadata(shipped_checkpoints["baseline"])["card"]
    assert all("studies.lesion_masked" in c["recheck"] for c in (card, baseline))
    assert any("counterfactual" in line for line in baseline["limitations"])


def test_percent_never_rounds_to_a_certainty():
    from brainmri.texts import percent
    assert [percent(p) for p in (0.9996, 0.999, 0.998, 0.5, 0.0004, 0.0)] == [
        ">99.9%", "99.9%", "99.8%", "50.0%", "<0.1%", "0.0%"]


@pytest.mark.parametrize("probs, is_mri, outcome", [
    (PROBS, True, "confident"),
    ({"glioma": 0.5, "meningioma": 0.3, "notumor": 0.1, "pituitary": 0.1}, True, "caution"),
    (PROBS, False, "not_mri")])
def test_structured_result(probs, is_mri, outcome):
    import json
    svc = Service({"resnet50": FakeEngine(probs, is_mri)}, warmup=False)
    r = svc.classify(scan(seed=0, size=64), "resnet50")
    d = json.loads(json.dumps(r.as_dict()))                      # JSON-ready as it is
    assert d["outcome"] == r.outcome == outcome and d["is_mri"] is is_mri
    assert bool(d["reasons"]) == (outcome != "confident")
    assert [x["code"] for x in d["reasons"]] == [x.code for x in r.reasons]
    assert all(x["text"] == outcomes.REASONS[x["code"]].text for x in d["reasons"])
    assert not re.search(r"<[a-z/]", r.headline)                               # no HTML
    if is_mri:
        assert d["label"] == "glioma" and set(d["probabilities"]) == set(probs)
    else:                                    # a refusal: no class, no probabilities, anywhere
        assert d["label"] is d["label_name"] is d["probabilities"] is d["explained_class"] is None
        assert not any(class_label(c) in json.dumps(d) or c in json.dumps(d) for c in probs)
        assert not any(class_label(c) in r.headline for c in probs) and "%" not in r.headline
        assert (r.overlay == r.grey[:, :, None]).all()                # no heatmap colour


def test_ct_dicom_is_refused_with_its_reason(service):
    """pydicom's CT test file through the real loader: the Modality field reaches the check."""
    pydicom_data = pytest.importorskip("pydicom.data")
    r = service.classify(pydicom_data.get_testdata_file("CT_small.dcm"), "baseline")
    assert not r.is_mri and r.outcome == "not_mri" and r.finding is None
    assert r.reasons[0] == outcomes.MODALITY and "modality CT, not MR" in r.reasons[0].text
    assert r.reasons[0].text in r.headline and r.probabilities == {}


def test_disagreeing_models_are_both_marked_caution():
    other = {"glioma": 0.1, "meningioma": 0.7, "notumor": 0.1, "pituitary": 0.1}
    svc = Service({"resnet50": FakeEngine(PROBS), "baseline": FakeEngine(other)}, warmup=False)
    c = svc.compare(scan(seed=0, size=64))
    assert c.agree is False
    assert all(r.outcome == "caution" and r.reasons == (outcomes.DISAGREE,)
               and r.headline.count(outcomes.DISAGREE.text) == 1 for r in c.results.values())
    same = Service({"resnet50": FakeEngine(PROBS), "baseline": FakeEngine(PROBS)}, warmup=False)
    assert all(r.outcome == "confident" for r in same.compare(scan(seed=0, size=64)).results.values())


def test_model_card_says_what_confident_means():
    from brainmri.card import model_section
    meta = {"arch": "resnet50", "familiarity": {
        "taps": [4, 5, 6, 7], "stats": "mean", "min_familiarity": 0.025, "min_confidence": 0.912,
        "measured": {"by": "studies.shift_bench, 2026-12-02 13:00 UTC",
                     "clean": {"n": 329, "confident": 0.9, "accuracy_confident": 0.985}}}}
    text = model_section("resnet50", meta)
    assert "below 0.912 (reason `low_confidence`)" in text and "2.5th percentile of validation" in text
    assert "reason `unfamiliar_scan`" in text and "**treat with caution**" in text
    assert "clean: 90.0% confident, accuracy of confident answers 98.5%" in text


def test_caution_is_said_once_on_one_line_under_the_finding():
    svc = Service({"resnet50": FakeEngine({"glioma": 0.5, "meningioma": 0.3, "notumor": 0.1,
                                           "pituitary": 0.1})}, warmup=False)
    r = svc.classify(scan(seed=0, size=64), "resnet50")
    assert r.outcome is Outcome.CAUTION and r.reasons == (outcomes.LOW_CONFIDENCE,)
    lines = r.headline.split("\n")
    assert lines[0] == "### Glioma — 50.0%"
    assert lines[1] == f"> **Treat with caution:** {outcomes.LOW_CONFIDENCE.text}"
    assert r.headline.lower().count("caution") == 1 and "confidence" not in r.headline.lower()
    assert not re.search(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]", r.headline)    # no emoji
    confident = Service({"resnet50": FakeEngine(PROBS)}, warmup=False).classify(scan(seed=0, size=64), "resnet50")
    assert "caution" not in confident.headline.lower() and ">" not in confident.headline


def test_a_large_scan_is_reduced_on_reading(service):
    big = scan(seed=4, size=256).resize((2600, 2600))               # 2600 / 2: 1300
    r = service.classify(png(big), "baseline")
    assert r.grey.shape == r.heatmap.shape == (1300, 1300) and r.overlay.shape == (1300, 1300, 3)
    small = service.classify(png(scan(seed=4, size=256)), "baseline")
    assert small.grey.shape == (256, 256)                            # under the limit: as it is
    with pytest.raises(ImageLoadError, match="over the limit"):
        service.classify(png(scan(seed=4, size=64).resize((4100, 4100))), "baseline")
