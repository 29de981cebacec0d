"""brainmri.tapstats: the helpers behind the familiarity fit and the shift bench."""
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from brainmri.tapstats import auroc, from_file, shifted, tap_stats, weights_digest


def test_auroc_is_sklearn_s_with_the_out_scores_as_positives():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    inside, outside = rng.normal(0, 1, 50), rng.normal(1, 1, 30)
    want = roc_auc_score(np.r_[np.zeros(50), np.ones(30)], np.r_[inside, outside])
    assert auroc(inside, outside) == pytest.approx(want) and 0.5 < want < 1
    assert auroc(np.zeros(3), np.ones(3)) == 1.0 and auroc(np.ones(3), np.zeros(3)) == 0.0


def test_weights_digest_ignores_the_detectors_a_refit_replaces(tmp_path):
    weights = {"trunk.w": torch.arange(6, dtype=torch.float32), "head.b": torch.ones(2)}
    save_file(weights, tmp_path / "a.safetensors")
    save_file({**weights, "ood.mean": torch.zeros(3), "fam.tap1": torch.ones(4)}, tmp_path / "b.safetensors")
    save_file({**weights, "head.b": torch.zeros(2)}, tmp_path / "c.safetensors")
    a, b, c = (weights_digest(tmp_path / f"{n}.safetensors") for n in "abc")
    assert a == b and a != c and len(a) == 64


def test_shifted_sources_are_seeded_by_the_file_name(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (32, 40), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        Image.fromarray(grey).save(tmp_path / name)

    def noise(image, rng):
        return np.clip(image.astype(int) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    a1, a2, b = (shifted(tmp_path / n, noise)() for n in ("a.png", "a.png", "b.png"))
    assert a1.shape == grey.shape and np.array_equal(a1, a2) and not np.array_equal(a1, b)
    assert from_file(tmp_path / "a.png")() == tmp_path / "a.png"


def test_tap_stats_pairs_each_tap_s_means_and_stds_in_tap_order():
    stats = {"mean10": np.ones((2, 3)), "std10": np.zeros((2, 3)), "mean2": np.full((2, 4), 2.0),
             "std2": np.full((2, 4), 3.0), "probabilities": np.zeros((2, 4))}
    taps = tap_stats(stats)
    assert list(taps) == [2, 10] and taps[2][1][0, 0] == 3.0 and taps[10][0].shape == (2, 3)
