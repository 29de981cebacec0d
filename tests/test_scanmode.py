"""brainmri.scanmode: every slice of a scan classified as a single upload would be, slices
outside the brain marked, and the scan summarised. Tiny models on synthetic series; the
shipped ResNet-50 on real Kaggle slices under BRAINMRI_DATA."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from brainmri.classes import NO_TUMOUR
from brainmri.outcomes import Outcome
from brainmri.predictor import Prediction, Predictor
from brainmri.scanmode import SliceResult, brain_slices, classify_scan, head_share, summarise
from brainmri.scans import read_scan

from .synthetic import dicom_series, head_volume, zipped

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")


@pytest.fixture(scope="module")
def predictor(tiny_checkpoints):
    return Predictor.from_checkpoint(tiny_checkpoints["baseline"], device="cpu")


@pytest.fixture(scope="module")
def series():
    return read_scan(zipped({f"{k}.dcm": f for k, f in enumerate(dicom_series(head_volume(12)))}))


def test_slices_outside_the_head_are_marked_not_classified(predictor, series):
    r = classify_scan(predictor, series, batch_size=4)
    brain = [s.brain for s in r.slices]
    assert brain[:2] == [False, False] and brain[-2:] == [False, False] and all(brain[4:8])
    assert all((s.prediction is None) == (not s.brain) for s in r.slices)
    probs = r.probabilities()
    assert probs.shape == (12, 4)
    assert np.isnan(probs[~np.array(brain)]).all()
    assert np.allclose(probs[np.array(brain)].sum(axis=1), 1, atol=1e-5)
    assert [s.position for s in r.slices] == list(series.positions)


def test_each_slice_gets_what_a_single_upload_gets(predictor, series):
    r = classify_scan(predictor, series, batch_size=5)
    for s in r.slices:
        if s.brain:
            alone = predictor.predict(series.slices[s.index])
            assert s.prediction.label == alone.label and s.prediction.outcome == alone.outcome
            assert all(abs(s.prediction.probabilities[c] - alone.probabilities[c]) < 1e-4
                       for c in CLASSES)


def test_batch_size_changes_nothing_and_progress_is_reported(predictor, series):
    seen = []
    a = classify_scan(predictor, series, batch_size=1, progress=lambda d, t: seen.append((d, t)))
    b = classify_scan(predictor, series, batch_size=16)
    assert np.allclose(a.probabilities(), b.probabilities(), atol=1e-4, equal_nan=True)
    brain = sum(s.brain for s in a.slices)
    assert seen == [(k, brain) for k in range(1, brain + 1)]
    assert (a.finding, a.chosen, a.finding_slices) == (b.finding, b.chosen, b.finding_slices)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        classify_scan(predictor, series, batch_size=0)


def test_the_chosen_slice_is_explained_on_its_own_pixels(predictor, series):
    r = classify_scan(predictor, series)
    assert r.chosen is not None and r.slices[r.chosen].brain
    assert r.chosen in r.finding_slices or r.finding == NO_TUMOUR
    e = r.explanation
    assert e.heatmap.shape == (64, 64) and e.overlay.shape == (64, 64, 3)
    assert e.prediction.label == r.slices[r.chosen].prediction.label
    assert r.outcome == r.slices[r.chosen].prediction.outcome


def test_a_ct_series_is_not_mri_on_every_slice(predictor):
    ct = read_scan(zipped({f"{k}": f for k, f in enumerate(dicom_series(head_volume(8), modality="CT"))}))
    r = classify_scan(predictor, ct)
    assert all(s.prediction.outcome == Outcome.NOT_MRI for s in r.slices if s.brain)
    assert (r.finding, r.chosen, r.outcome, r.explanation) == ("", None, Outcome.NOT_MRI, None)


def test_an_empty_scan_says_no_slice_shows_a_head(predictor):
    volume = np.zeros((6, 48, 48), np.uint16)
    volume[3, 20:23, 20:23] = 800                          # a speck, no head
    empty = read_scan(zipped({f"{k}": f for k, f in enumerate(dicom_series(volume))}))
    r = classify_scan(predictor, empty)
    assert not any(s.brain for s in r.slices) and r.outcome == Outcome.NOT_MRI
    assert "no slice shows enough of a head" in r.notes[-1]


def test_head_share_and_the_brain_rule():
    blank = Image.new("L", (64, 64))
    disc = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 32) ** 2 + (xx - 32) ** 2 < 20 ** 2] = 150
    assert head_share(blank) == 0.0
    assert head_share(Image.fromarray(disc)) == pytest.approx(np.pi * 400 / 4096, rel=0.15)
    assert list(brain_slices(np.array([0.0, 0.04, 0.1, 0.3, 0.5]))) == [False, False, False, True, True]


def pred(label: str, p: float, is_mri: bool = True, outcome: str = "confident") -> Prediction:
    rest = (1 - p) / 3
    return Prediction(label, {c: (p if c == label else rest) for c in CLASSES}, is_mri, 0.0,
                      outcome=outcome if is_mri else Outcome.NOT_MRI)


def slices(*preds) -> tuple[SliceResult, ...]:
    return tuple(SliceResult(i, float(i), 0.5, p is not None, p) for i, p in enumerate(preds))


def test_summary_names_the_tumour_class_its_slices_and_the_most_probable_one():
    r = slices(None, pred("notumor", 0.9), pred("glioma", 0.7), pred("glioma", 0.8),
               pred("meningioma", 0.75), pred("glioma", 0.99, is_mri=False), None)
    assert summarise(r, CLASSES) == ("glioma", 3, (2, 3))


def test_summary_without_tumour_picks_the_most_suspicious_slice():
    r = slices(pred("notumor", 0.9), pred("notumor", 0.6), pred("notumor", 0.95))
    assert summarise(r, CLASSES) == ("notumor", 1, (0, 1, 2))
    assert summarise(slices(None, pred("glioma", 0.9, is_mri=False)), CLASSES) == ("", None, ())


def test_real_slices_in_a_series_through_the_shipped_model(data_dir, shipped_checkpoints):
    from brainmri.io import load_image, to_grey
    testing = data_dir / "brain-tumor-mri" / "Testing"
    glioma = to_grey(load_image(testing / "glioma" / "Te-gl_0079.jpg"))
    normal = np.asarray(Image.fromarray(to_grey(load_image(testing / "notumor" / "Te-no_0098.jpg")))
                        .resize(glioma.shape[::-1]))
    volume = np.stack([np.zeros_like(glioma), normal, glioma, np.zeros_like(glioma)]).astype(np.uint16) * 4
    s = read_scan(zipped({f"{k}.dcm": f for k, f in enumerate(dicom_series(volume))}))
    p = Predictor.from_checkpoint(shipped_checkpoints["resnet50"], device="cpu")
    r = classify_scan(p, s)
    assert [x.brain for x in r.slices] == [False, True, True, False]
    alone = p.predict(s.slices[2])
    assert r.slices[2].prediction.label == alone.label == "glioma"
    assert (r.finding, r.chosen) == ("glioma", 2) and r.outcome == alone.outcome
    assert r.explanation.heatmap.shape == glioma.shape
