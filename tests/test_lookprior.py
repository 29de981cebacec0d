"""brainmri.lookprior: the look features of a head crop, and the share of each class among a
scan's nearest training looks."""
from __future__ import annotations

import numpy as np
import pytest

from brainmri.lookprior import FEATURES, LookPrior, look_features


def head(brightness: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic head crop: a disc of noisy tissue at `brightness` on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    tissue = np.clip(rng.normal(brightness, 12, (size, size)), 20, 255)
    return np.where(disc, tissue, 0).astype(np.uint8)


def test_features_shape_range_and_order():
    f = look_features(head(120), framing=0.5)
    assert f.shape == (len(FEATURES),) and np.isfinite(f).all()
    percentiles = f[:7]
    assert np.all(np.diff(percentiles) >= 0) and 0 < percentiles[0] and percentiles[-1] <= 1
    assert abs(f[FEATURES.index("framing")] - 0.5) < 1e-12
    assert 0.4 < f[FEATURES.index("head_share")] < 0.6          # the disc's share of the crop
    brighter = look_features(head(200), framing=0.5)
    assert brighter[FEATURES.index("p50")] > f[FEATURES.index("p50")]
    assert np.array_equal(look_features(head(120), 0.5), f)     # deterministic


def test_features_of_a_blank_picture_and_bad_input():
    f = look_features(np.zeros((32, 32), np.uint8), framing=1.0)
    assert f[:7].sum() == 0 and f[FEATURES.index("head_share")] == 0
    with pytest.raises(ValueError, match="uint8"):
        look_features(np.zeros((32, 32), np.float32), 1.0)


def test_shares_follow_the_look_when_look_and_class_are_tied():
    """Class 0 only ever dark, class 1 only ever bright, class 2 both: a dark scan's nearest
    looks are class 0 or 2, never 1; class 3 never seen has share 0."""
    looks, labels = [], []
    for i in range(30):
        looks += [look_features(head(60, seed=i), 0.5), look_features(head(200, seed=i), 0.5)]
        labels += [0, 1]
    for i in range(10):
        looks.append(look_features(head(60 if i % 2 else 200, seed=100 + i), 0.5))
        labels.append(2)
    prior = LookPrior.fit(np.array(looks), labels, classes=4, k=10)
    s = prior.shares(look_features(head(60, seed=999), 0.5)[None])
    assert s.shape == (1, 4) and np.isclose(s.sum(), 1.0)
    assert s[0, 1] == 0 and s[0, 3] == 0 and s[0, 0] >= 0.5
    bright = prior.answer_shares(np.stack([look_features(head(200, seed=998), 0.5)] * 2), [1, 0])
    assert bright[0] >= 0.5 and bright[1] == 0


def test_prior_checks_its_inputs():
    with pytest.raises(ValueError, match="same scans"):
        LookPrior(np.zeros((3, len(FEATURES))), np.zeros(2), classes=2)
    with pytest.raises(ValueError, match="k must be"):
        LookPrior(np.zeros((3, len(FEATURES))), np.array([0, 1, 1]), classes=2, k=4)
