"""The real datasets in $BRAINMRI_DATA (CI: ../shared/data), and the shipped checkpoints.

Skipped, with the reason, when BRAINMRI_DATA is unset or the checkpoints are absent.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from brainmri.checkpoint import INTENDED_USE
from brainmri.classes import CLASSES
from brainmri.data import Sample, discover, fingerprint
from brainmri.io import load_image, to_grey
from brainmri.predictor import Predictor

pytestmark = pytest.mark.real_data

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KAGGLE = {  # PROVENANCE.md: files per split and class
    "train": {"glioma": 1321, "meningioma": 1339, "notumor": 1595, "pituitary": 1457},
    "test": {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300},
}
ROBOFLOW = {"glioma": 564, "meningioma": 358, "notumor": 335, "pituitary": 438}
PER_CLASS = 8


@pytest.fixture(scope="module")
def kaggle(data_dir) -> list[Sample]:
    return discover(data_dir / "brain-tumor-mri")


def test_kaggle_counts(kaggle, data_dir):
    assert len(kaggle) == 7023
    counts = Counter((s.split, s.class_name) for s in kaggle)
    assert counts == {(split, c): n for split, by_class in KAGGLE.items() for c, n in by_class.items()}
    assert all(s.path.suffix == ".jpg" for s in kaggle)          # tumor_boxes.csv etc. not listed
    fp = fingerprint(kaggle, data_dir / "brain-tumor-mri")
    assert fp["files"] == 7023
    assert fp["per_class"] == {c: KAGGLE["train"][c] + KAGGLE["test"][c] for c in CLASSES}


def test_roboflow_counts(data_dir):
    root = data_dir / "roboflow-brain-mri"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    samples = discover(root)                                       # no_tumor -> notumor
    assert len(samples) == 1695
    assert Counter(s.class_name for s in samples) == ROBOFLOW
    assert {s.split for s in samples} == {"all"}
    assert all(s.path.name.startswith("Tr-") for s in samples)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def test_five_png_files_named_jpg_decode(kaggle):
    pngs = [s for s in kaggle if _head(s.path) == PNG_SIGNATURE]
    assert len(pngs) == 5
    assert "Tr-no_1005.jpg" in {s.path.name for s in pngs}
    for s in pngs:
        assert s.class_name == "notumor" and s.split == "train"
        grey = to_grey(load_image(s.path))
        assert grey.ndim == 2 and grey.dtype == np.uint8 and min(grey.shape) >= 64
        assert grey.std() > 10                                     # a picture, not a blank


def _testing_sample(kaggle: list[Sample]) -> list[Sample]:
    """`PER_CLASS` Testing scans per class, spread evenly over each class's sorted files."""
    chosen = []
    for label in range(len(CLASSES)):
        files = sorted((s for s in kaggle if s.split == "test" and s.label == label),
                       key=lambda s: s.path.name)
        step = len(files) // PER_CLASS
        chosen += files[::step][:PER_CLASS]
    return chosen


@pytest.mark.parametrize("arch", ["baseline", "resnet50"])
def test_shipped_checkpoint_classifies_real_scans(shipped_checkpoints, kaggle, arch):
    predictor = Predictor.from_checkpoint(shipped_checkpoints[arch], device="cpu")
    assert predictor.classes == CLASSES
    assert predictor.meta["arch"] == arch
    assert predictor.meta["intended_use"] == INTENDED_USE
    samples = _testing_sample(kaggle)
    assert len(samples) == PER_CLASS * len(CLASSES)
    predictions = predictor.predict_batch([s.path for s in samples])
    correct = sum(p.label == s.class_name for p, s in zip(predictions, samples))
    accuracy = correct / len(samples)
    # Chance is 0.25; 20 of 32 right by luck has odds of about one in a million.
    assert accuracy >= 0.6, f"{arch}: {correct}/{len(samples)} correct"
    for p in predictions:
        assert abs(sum(p.probabilities.values()) - 1) < 1e-5


@pytest.mark.parametrize("arch", ["baseline", "resnet50"])
def test_shipped_checkpoint_says_how_sure_it_is(shipped_checkpoints, kaggle, arch):
    """The shipped checkpoints carry the familiarity detector (refit after retraining:
    `python -m train.fit_familiarity CKPT --data DATA --write`), and real scans get outcomes."""
    from brainmri.outcomes import Outcome
    predictor = Predictor.from_checkpoint(shipped_checkpoints[arch], device="cpu")
    assert predictor.familiarity is not None, (
        f"{arch}: no familiarity detector; run python -m train.fit_familiarity "
        f"checkpoints/{arch}.safetensors --data ../shared/data --write")
    info = predictor.meta["familiarity"]
    assert info["quantile"] == info["min_familiarity"] == 0.025 and 0 < info["min_confidence"] < 1
    predictions = predictor.predict_batch([s.path for s in _testing_sample(kaggle)])
    assert all(0 <= p.familiarity <= 1 and p.outcome in Outcome for p in predictions)
    assert sum(p.outcome is Outcome.CONFIDENT for p in predictions) >= len(predictions) // 2
