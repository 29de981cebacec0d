"""brainmri.familiarity: the score, the thresholds' round trip and the outcomes it leads to."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from brainmri import familiarity as fam
from brainmri.outcomes import LOW_CONFIDENCE, UNFAMILIAR, UNLIKE_TRAINING, Outcome, decide
from brainmri.checkpoint import load_checkpoint, update_metadata
from brainmri.ood import MahalanobisOOD
from brainmri.predictor import Predictor
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import scan


def two_classes(seed: int = 0, n: int = 200, dim: int = 12):
    """Statistics of one tap: class 0 around +3 e0, class 1 around +3 e1."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, dim))
    centres[0, 0], centres[1, 1] = 3.0, 3.0
    y = np.arange(n) % 2
    return centres[y] + rng.normal(size=(n, dim)), y, centres, rng


def test_unfamiliarity_is_class_conditional_and_grows_with_the_shift():
    x, y, centres, rng = two_classes()
    det = fam.Familiarity.fit({0: x}, y, "mean", dims=8)
    near = centres[0] + rng.normal(size=(50, 12))
    far = centres[0] + rng.normal(size=(50, 12)) + 6.0
    u_near, u_far = det.unfamiliarity({0: near}, [0] * 50), det.unfamiliarity({0: far}, [0] * 50)
    assert u_near.max() < u_far.min()
    # a typical scan of class 1 is unfamiliar *as class 0*: the predicted class matters
    ones = centres[1] + rng.normal(size=(50, 12))
    assert np.median(det.unfamiliarity({0: ones}, [0] * 50)) > 3 * np.median(
        det.unfamiliarity({0: ones}, [1] * 50))


def test_familiarity_is_the_share_of_validation_at_least_as_unfamiliar():
    det = fam.Familiarity([0], "mean", {0: {}}, val_unfamiliarity=np.arange(1.0, 101.0))
    f = det.familiarity(np.array([0.0, 1.0, 50.5, 100.0, 1e9]))
    np.testing.assert_allclose(f, [1.0, 1.0, 0.5, 0.01, 0.0])
    assert np.isnan(fam.Familiarity([0], "mean", {0: {}}).familiarity(np.array([1.0]))).all()


@pytest.mark.parametrize("is_mri, familiarity, top, outcome, reasons", [
    (True, 0.5, 0.99, Outcome.CONFIDENT, ()),
    (True, 0.01, 0.99, Outcome.CAUTION, (UNFAMILIAR,)),
    (True, 0.5, 0.6, Outcome.CAUTION, (LOW_CONFIDENCE,)),
    (True, 0.01, 0.6, Outcome.CAUTION, (UNFAMILIAR, LOW_CONFIDENCE)),
    (False, 0.5, 0.99, Outcome.NOT_MRI, ()),
    (False, 0.01, 0.6, Outcome.NOT_MRI, (UNFAMILIAR, LOW_CONFIDENCE)),
])
def test_outcome_on_constructed_cases(is_mri, familiarity, top, outcome, reasons):
    det = fam.Familiarity([0], "mean", {0: {}}, min_familiarity=0.025, min_confidence=0.9)
    assert det.reasons(familiarity, top) == reasons
    verdict = decide(det.reasons(familiarity, top), is_mri)
    assert verdict.outcome is outcome
    # a refusal carries why it was refused, never the cautions about a class it does not give
    assert verdict.reasons == (reasons if is_mri else (UNLIKE_TRAINING,))


def test_meanstd_doubles_the_features_and_unknown_statistics_are_named():
    stats = {3: (torch.ones(2, 5), torch.zeros(2, 5))}
    assert fam.as_features(stats, [3], "meanstd")[3].shape == (2, 10)
    with pytest.raises(ValueError, match="unknown statistics 'median'"):
        fam.as_features(stats, [3], "median")


def test_taps_record_once_per_pass_without_hooks():
    trunk = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3)), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3)))
    assert fam.default_taps(trunk) == [0, 2]
    fam.add_taps(trunk, [0, 2])
    x = torch.randn(3, 1, 10, 10)
    trunk(x)                                                 # not recording: nothing kept
    with fam.recording() as stats:
        out = trunk(x)
        trunk(torch.zeros(1, 1, 10, 10))                     # a second pass does not overwrite
    assert set(stats) == {0, 2} and stats[2][0].shape == (3, 6) and stats[2][1].shape == (3, 6)
    torch.testing.assert_close(stats[2][0], out.mean(dim=(2, 3)))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in trunk.modules())
    assert isinstance(trunk[0][0], torch.nn.Conv2d) and len(trunk[2]) == 1   # still reads as the block
    assert trunk[2][0].out_channels == 6 and trunk[0].index == 0


def tiny_with_detector(tmp_path, min_familiarity=0.025, min_confidence=0.0, ood_threshold=None):
    """A tiny baseline checkpoint with a familiarity detector fitted on its own statistics of
    synthetic scans (and optionally a not-an-MRI detector with `ood_threshold`)."""
    path = make_tiny_checkpoint(tmp_path / "baseline.safetensors", "baseline")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    images = [scan(seed=s, size=64, lesion=s % 3 > 0) for s in range(24)]
    batch = torch.stack([p.tensor for p in predictor.prepare(images)])
    acts, stats = predictor.tapped(batch)
    labels = np.arange(24) % 4
    det = fam.Familiarity.fit(fam.as_features(stats, predictor.taps, "meanstd"), labels, "meanstd", dims=6)
    det.val_unfamiliarity = np.sort(det.unfamiliarity(fam.as_features(stats, det.taps, det.kind), labels))
    det.min_familiarity, det.min_confidence = min_familiarity, min_confidence
    extra, meta = det.tensors(), {"familiarity": det.describe()}
    if ood_threshold is not None:
        ood = MahalanobisOOD.fit(acts.mean(dim=(2, 3)).numpy(), labels, dims=6)
        extra |= ood.tensors()
        meta["ood"] = {"method": "mahalanobis-pca", "threshold": ood_threshold}
    update_metadata(path, extra=extra, **meta)
    return path, det, images


def test_round_trip_through_the_checkpoint(tmp_path):
    path, det, _ = tiny_with_detector(tmp_path, 0.05, 0.7)
    model, meta = load_checkpoint(path)                       # fam.* are not weights
    assert meta["familiarity"]["min_confidence"] == 0.7
    loaded = Predictor.from_checkpoint(path, device="cpu").familiarity
    assert loaded.taps == det.taps == [0, 1, 2] and loaded.kind == "meanstd"
    assert (loaded.min_familiarity, loaded.min_confidence) == (0.05, 0.7)
    np.testing.assert_allclose(loaded.val_unfamiliarity, det.val_unfamiliarity, rtol=1e-6)
    for t in det.taps:
        for k, v in det.blocks[t].items():
            np.testing.assert_allclose(loaded.blocks[t][k].numpy(), v.numpy(), rtol=1e-5, atol=1e-6)
    # refitting replaces, never accumulates, the tensors
    update_metadata(path, extra=det.tensors(), drop_prefix=fam.PREFIX, familiarity=det.describe())
    with safe_open(str(path), framework="pt") as f:
        names = [k for k in f.keys() if k.startswith(fam.PREFIX)]
    assert len(names) == len(set(names)) == 3 * 4 + 1


def test_predictor_outcomes_end_to_end(tmp_path):
    path, _, images = tiny_with_detector(tmp_path / "a", min_familiarity=0.0, min_confidence=0.0)
    for p in Predictor.from_checkpoint(path, device="cpu").predict_batch(images[:4]):
        assert p.outcome is Outcome.CONFIDENT and p.reasons == () and 0.0 <= p.familiarity <= 1.0
    path, _, images = tiny_with_detector(tmp_path / "b", min_familiarity=1.01, min_confidence=1.01)
    for p in Predictor.from_checkpoint(path, device="cpu").predict_batch(images[:4]):
        assert p.outcome is Outcome.CAUTION and p.reasons == (UNFAMILIAR, LOW_CONFIDENCE)
    path, _, images = tiny_with_detector(tmp_path / "c", min_familiarity=0.0, ood_threshold=-1.0)
    p = Predictor.from_checkpoint(path, device="cpu").predict(images[0])
    assert p.outcome is Outcome.NOT_MRI and not p.is_mri and p.reasons == (UNLIKE_TRAINING,)


@pytest.mark.parametrize("method", ["gradcam", "layercamfused", "gradcam++"])
def test_explain_gives_the_same_familiarity_as_predict(tmp_path, method):
    """One trunk pass in every path: the fused Layer-CAM's own pass and the hook-based ones."""
    path, _, images = tiny_with_detector(tmp_path)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    predicted = [p.familiarity for p in predictor.predict_batch(images[:3])]
    explained = [e.prediction.familiarity for e in predictor.explain_batch(images[:3], method=method)]
    np.testing.assert_allclose(explained, predicted, rtol=1e-5)
    assert not np.isnan(predicted).any()
    assert all(not m._forward_hooks for m in predictor.model.modules())


def test_no_detector_means_only_the_default_confidence_rule(tiny_checkpoints):
    from brainmri.outcomes import DEFAULT_MIN_CONFIDENCE
    predictor = Predictor.from_checkpoint(tiny_checkpoints["baseline"], device="cpu")
    for p in predictor.predict_batch([scan(seed=s, size=64) for s in range(4)]):
        unsure = max(p.probabilities.values()) < DEFAULT_MIN_CONFIDENCE
        assert np.isnan(p.familiarity) and UNFAMILIAR not in p.reasons
        assert p.outcome is (Outcome.NOT_MRI if not p.is_mri else
                             Outcome.CAUTION if unsure else Outcome.CONFIDENT)


def test_a_prediction_that_is_not_an_mri_says_so_whatever_it_was_built_with():
    from brainmri.predictor import Prediction
    p = Prediction("glioma", {"glioma": 1.0}, False, 1e6)
    assert p.outcome is Outcome.NOT_MRI and p.reasons == (UNLIKE_TRAINING,)
    p = Prediction("glioma", {"glioma": 1.0}, False, 1e6, outcome=Outcome.CAUTION, reasons=(UNFAMILIAR,))
    assert p.outcome is Outcome.NOT_MRI and p.reasons == (UNLIKE_TRAINING,)
    assert Prediction("glioma", {"glioma": 1.0}, True, 0.0).outcome is Outcome.CONFIDENT
    bare = Prediction("glioma", {"glioma": 0.4, "notumor": 0.35, "pituitary": 0.25}, True, 0.0)
    assert bare.outcome is Outcome.CAUTION and bare.reasons == (LOW_CONFIDENCE,)
