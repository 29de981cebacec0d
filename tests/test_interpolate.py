"""train.interpolate: weight interpolation between two checkpoints of one architecture."""
from __future__ import annotations

import argparse

import pytest
import torch

from brainmri.checkpoint import load_checkpoint, update_metadata
from brainmri.predictor import Predictor
from brainmri.protocols import build_splits
from train.interpolate import interpolate, main, training_batches

from tests.conftest import make_tiny_checkpoint
from tests.test_train import ARGS, run, tiny_data  # noqa: F401  (a fixture)


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
    result = main(argparse.Namespace(a=a, b=b, alpha=0.5, data=tiny_data, out=out, batch_size=8,
                                     bn_statistics="interpolate", name="mid"))
    model, meta = load_checkpoint(out)
    assert meta["name"] == "mid" != load_checkpoint(b)[1].get("name")
    want = interpolate(load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict(), 0.5)
    got = model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-2) for k in want)
    assert meta["interpolated"]["alpha"] == 0.5 and 0 <= result["val_accuracy"] <= 1
    assert meta["interpolated"]["bn_statistics"] == "interpolate"


def test_batch_norm_statistics_are_those_of_the_averaged_layers(tiny_data, tmp_path):
    """`clean`: the running statistics are recomputed on B's training split, prepared as the
    predictor prepares it: the first batch-norm's mean and variance are then its input's, per
    channel, over those scans (one batch holds them all); the weights stay the average."""
    a, b = (make_tiny_checkpoint(tmp_path / f"{n}.safetensors", "baseline", size=32, seed=s)
            for n, s in (("a", 0), ("b", 1)))
    for path in (a, b):
        update_metadata(path, args={"seed": 0, "val_fraction": 0.25})
    out = tmp_path / "mid.safetensors"
    main(argparse.Namespace(a=a, b=b, alpha=0.5, data=tiny_data, out=out, batch_size=1000,
                            bn_statistics="clean"))
    model, meta = load_checkpoint(out)
    assert meta["interpolated"]["bn_statistics"] == "clean"
    want = interpolate(load_checkpoint(a)[0].state_dict(), load_checkpoint(b)[0].state_dict(), 0.5)
    got = model.state_dict()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    statistics = {k for k in want if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-2) for k in want.keys() - statistics)
    train = build_splits(tiny_data, 0.25, 0).train
    prepared = Predictor(load_checkpoint(out)[0], meta, torch.device("cpu"), ood=None, fold_bn=False).prepare(
        [s.path for s in train])
    with torch.no_grad():
        x = conv(torch.stack([p.tensor for p in prepared]).float())
    mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean.float(), mean, rtol=1e-2, atol=1e-3)
    assert torch.allclose(bn.running_var.float(), var, rtol=1e-2, atol=1e-3)
    name = next(k for k in got if k.endswith("running_mean"))
    assert not torch.allclose(got[name].float(), want[name].float(), atol=1e-3)


def test_training_statistics_come_from_the_runs_own_batches(tiny_data, tmp_path):
    """`training`: the statistics of one epoch of B's training batches as its trainer builds
    them (augmented; a cumulative average of the batches' statistics), here from a tiny run
    averaged with itself; a checkpoint whose arguments describe no run is refused."""
    import sys
    trained = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(trained), *ARGS,
         "--epochs", "1", "--precision", "fp32"], tmp_path)
    b = trained / "model.safetensors"
    out = tmp_path / "self.safetensors"
    main(argparse.Namespace(a=b, b=b, alpha=0.5, data=tiny_data, out=out, batch_size=8,
                            bn_statistics="training"))
    model, meta = load_checkpoint(out)
    assert meta["interpolated"]["bn_statistics"] == "training"
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        means = [conv(x.float()).mean(dim=(0, 2, 3)) for x in training_batches(meta["args"], tiny_data)]
    assert len(means) > 1
    assert torch.allclose(bn.running_mean.float(), torch.stack(means).mean(0), rtol=1e-2, atol=1e-3)
    before = next(m for m in load_checkpoint(b)[0].modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(before.running_mean, bn.running_mean.float(), atol=1e-4)

    bare = make_tiny_checkpoint(tmp_path / "bare.safetensors", "baseline", size=32)
    with pytest.raises(SystemExit, match="do not describe a training run"):
        main(argparse.Namespace(a=bare, b=bare, alpha=0.5, data=tiny_data, out=tmp_path / "x.safetensors",
                                batch_size=8, bn_statistics="training"))
