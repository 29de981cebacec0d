"""train.interpolate: weight interpolation between two checkpoints of one architecture."""
from __future__ import annotations

import argparse

import pytest
import torch

from brainmri.checkpoint import load_checkpoint, update_metadata
from train.interpolate import interpolate, main

from tests.conftest import make_tiny_checkpoint
from tests.test_train import tiny_data  # noqa: F401  (a fixture)


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


def test_the_cli_writes_a_loadable_midpoint(tiny_data, tmp_path):
    """Two tiny baselines -> a checkpoint that loads as the architecture (the predictor's
    familiarity taps once leaked their renamed tensors into it) with the mean weights."""
    a, b = (make_tiny_checkpoint(tmp_path / f"{n}.safetensors", "baseline", size=32, seed=s)
            for n, s in (("a", 0), ("b", 1)))
    for path in (a, b):
        update_metadata(path, args={"seed": 0, "val_fraction": 0.25})
    out = tmp_path / "mid.safetensors"
    result = main(argparse.Namespace(a=a, b=b, alpha=0.5, data=tiny_data, out=out, batch_size=8))
    model, meta = load_checkpoint(out)
    want = interpolate(load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict(), 0.5)
    got = model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-2) for k in want)
    assert meta["interpolated"]["alpha"] == 0.5 and 0 <= result["val_accuracy"] <= 1
