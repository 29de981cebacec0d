"""brainmri.ood: the two "is this a brain MRI?" detectors on synthetic features."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors import safe_open

from brainmri import ood
from brainmri.checkpoint import update_metadata
from brainmri.predictor import Predictor
from tests.conftest import make_tiny_checkpoint


def clusters(seed: int = 0, n: int = 400, rare: float = 0.05, dim: int = 32):
    """Features of one class: a common style (mode A) and a rare one (mode B), far apart."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(dim), np.zeros(dim)
    a[0], b[1] = 10.0, 10.0
    n_b = int(n * rare)
    x = np.r_[a + rng.normal(size=(n - n_b, dim)), b + rng.normal(size=(n_b, dim))]
    return x, np.zeros(n, dtype=int), a, b, rng


def test_knn_scores_in_distribution_low_and_far_high():
    x, y, a, _, rng = clusters()
    det = ood.fit("knn-cosine", x, y, dims=16, k=5)
    near, far = a + rng.normal(size=(20, 32)), rng.normal(size=(20, 32)) * 10 - a
    assert det.score(near).max() < det.score(far).min()


def test_knn_is_cosine_so_scale_free():
    x, y, a, _, rng = clusters()
    det = ood.fit("knn-cosine", x, y, dims=16, k=5)
    q = a + rng.normal(size=(8, 32))
    np.testing.assert_allclose(det.score(q), det.score(q * 7.5), rtol=1e-4, atol=1e-6)


def test_knn_k1_scores_a_training_point_zero():
    x, y, *_ = clusters()
    det = ood.fit("knn-cosine", x, y, dims=32, k=1)
    assert det.score(x[:10]).max() < 1e-3


def test_unknown_method_named():
    with pytest.raises(ValueError, match="unknown OOD method 'svm'"):
        ood.fit("svm", np.zeros((4, 3)), np.zeros(4))


def test_knn_round_trip_through_checkpoint_replaces_old_detector(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "baseline.safetensors", "baseline")
    x, y, a, _, rng = clusters(dim=32)
    maha = ood.fit("mahalanobis-pca", x, y, dims=8)
    update_metadata(path, extra=maha.tensors(), ood={"method": "mahalanobis-pca", "threshold": 3.0})
    knn = ood.fit("knn-cosine", x, y, dims=8, k=4)
    update_metadata(path, extra=knn.tensors(), drop_prefix=ood.PREFIX,
                    ood={"method": "knn-cosine", "threshold": 0.25})
    with safe_open(str(path), framework="pt") as f:
        names = {k for k in f.keys() if k.startswith(ood.PREFIX)}
    assert names == {"ood.mean", "ood.components", "ood.bank", "ood.k"}      # no stale tensors
    loaded = Predictor.from_checkpoint(path, device="cpu").ood
    assert isinstance(loaded, ood.KNNOOD) and loaded.k == 4 and loaded.threshold == 0.25
    q = a + rng.normal(size=(6, 32))
    np.testing.assert_allclose(loaded.score(q), knn.score(q), atol=2e-3)     # bank stored in fp16
