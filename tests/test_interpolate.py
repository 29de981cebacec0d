"""train.interpolate: weight interpolation between two checkpoints of one architecture."""
from __future__ import annotations

import pytest
import torch

from train.interpolate import interpolate


def test_interpolation_ends_mean_and_integer_buffers():
    a = {"w": torch.zeros(2, 2), "n": torch.tensor(3)}
    b = {"w": torch.ones(2, 2), "n": torch.tensor(7)}
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    mid = interpolate(a, b, 0.25)
    assert torch.allclose(mid["w"], torch.full((2, 2), 0.25)) and mid["n"].item() == 7


def test_interpolation_refuses_different_architectures():
    with pytest.raises(ValueError, match="differ"):
        interpolate({"w": torch.zeros(1)}, {"v": torch.zeros(1)}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        interpolate({"w": torch.zeros(1)}, {"w": torch.zeros(2)}, 0.5)
