"""brainmri.checkpoint: self-describing safetensors files, and every way loading can fail."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from brainmri.checkpoint import (FORMAT, INTENDED_USE, CheckpointError, load_checkpoint,
                                 read_metadata, save_checkpoint, update_metadata)
from brainmri.classes import CLASSES
from brainmri.models import build_model
from brainmri.presets import EvalPreset

KWARGS = {"widths": [8, 16, 32]}


def _meta(**extra) -> dict:
    preset = EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,))
    return {"arch": "baseline", "arch_kwargs": KWARGS, "classes": list(CLASSES),
            "preset": preset.to_dict(), "metrics": {"accuracy": 0.5}, **extra}


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = build_model("baseline", **KWARGS).eval()
    with torch.no_grad():                       # non-trivial BN statistics, so they round-trip
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return m


@pytest.fixture
def saved(tmp_path, model) -> Path:
    return save_checkpoint(tmp_path / "model.safetensors", model, _meta(), half=False)


def _problem(path: Path, match: str) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    assert path.name in str(info.value)               # the message names the file
    assert info.value.path == path
    return info.value


def test_round_trip_full_precision(saved, model):
    loaded, meta = load_checkpoint(saved)
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["arch"] == "baseline" and meta["arch_kwargs"] == KWARGS
    assert meta["classes"] == list(CLASSES)
    assert EvalPreset.from_dict(meta["preset"]) == EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,))
    assert meta["metrics"] == {"accuracy": 0.5}
    assert meta["format"] == FORMAT and meta["intended_use"] == INTENDED_USE
    assert {"torch", "torchvision", "python"} <= set(meta["versions"]) and meta["created"]
    assert read_metadata(saved) == meta


def test_half_precision_stores_float16_and_loads_float32(tmp_path, model):
    path = save_checkpoint(tmp_path / "half.safetensors", model, _meta())     # half by default
    with safe_open(str(path), framework="pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["trunk.0.0.weight"] == "F16"                              # kernels and matrices
    assert dtypes["head.0.weight"] == "F16"
    # Batch-norm statistics and biases stay float32: small running variances underflow float16.
    assert dtypes["trunk.0.1.running_var"] == dtypes["head.0.bias"] == "F32"
    assert dtypes["trunk.0.1.num_batches_tracked"] == "I64"                   # integers untouched
    assert path.stat().st_size < 0.6 * save_checkpoint(
        tmp_path / "full.safetensors", model, _meta(), half=False).stat().st_size
    loaded, _ = load_checkpoint(path)
    assert all(v.dtype == model.state_dict()[k].dtype for k, v in loaded.state_dict().items())
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), rtol=1e-2, atol=1e-2)


def test_save_requires_the_describing_keys(tmp_path, model):
    for key in ("arch", "arch_kwargs", "classes", "preset"):
        meta = _meta()
        del meta[key]
        with pytest.raises(ValueError, match=repr(key)):
            save_checkpoint(tmp_path / "x.safetensors", model, meta)
    assert not list(tmp_path.iterdir())                # nothing half-written


def test_update_metadata_keeps_weights_and_adds_tensors(saved, model):
    update_metadata(saved, extra={"ood.mean": torch.arange(3.0)}, metrics={"accuracy": 0.9},
                    calibration={"temperature": 1.5})
    meta = read_metadata(saved)
    assert meta["metrics"] == {"accuracy": 0.9} and meta["calibration"] == {"temperature": 1.5}
    assert meta["arch"] == "baseline"
    with safe_open(str(saved), framework="pt") as f:
        assert torch.equal(f.get_tensor("ood.mean"), torch.arange(3.0))
    loaded, _ = load_checkpoint(saved)                 # ood.* tensors are not model weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                   loaded.state_dict().values()))


def test_missing_file(tmp_path):
    _problem(tmp_path / "absent.safetensors", "file not found")
    with pytest.raises(CheckpointError, match="absent.safetensors: file not found"):
        read_metadata(tmp_path / "absent.safetensors")


def test_random_bytes_are_not_safetensors(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(4096))
    _problem(path, "not a readable safetensors file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    _problem(path, "not a readable safetensors file")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    error = _problem(saved, "not a readable safetensors file")
    assert "not fully covered" in error.problem or "incomplete" in error.problem


def test_truncated_inside_the_header(saved):
    saved.write_bytes(saved.read_bytes()[:60])
    _problem(saved, "not a readable safetensors file")


def test_safetensors_without_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    _problem(path, "no brainmri metadata")


def test_foreign_format_and_broken_json(tmp_path, model):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"brainmri": '{"format": "x/9"}'})
    _problem(path, "unknown format 'x/9'")
    save_file({"w": torch.zeros(2)}, str(path), metadata={"brainmri": "{not json"})
    _problem(path, "metadata is not valid JSON")


def test_unknown_arch(saved):
    update_metadata(saved, arch="vgg99")
    _problem(saved, "cannot build architecture 'vgg99'")


def test_bad_arch_arguments(saved):
    update_metadata(saved, arch_kwargs={"depth": 3})
    _problem(saved, "cannot build architecture 'baseline'.*depth")


def test_weights_of_another_shape(saved):
    update_metadata(saved, arch_kwargs={"widths": [16, 32, 64]})
    _problem(saved, r"tensor trunk\.\S+ has shape \(8, 1, 5, 5\), architecture needs \(16, 1, 5, 5\)")


def test_weights_of_another_architecture(saved):
    update_metadata(saved, arch="resnet50", arch_kwargs={})
    error = _problem(saved, "weights do not match architecture 'resnet50'")
    assert "missing" in error.problem and "unexpected" in error.problem


def test_class_count_must_match_the_head(saved):
    update_metadata(saved, classes=["a", "b"])
    _problem(saved, r"tensor head\.3\.weight has shape \(4, 256\), architecture needs \(2, 256\)")


class _Payload:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (Path.touch, (self.sentinel,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_loading_never_unpickles(tmp_path, model, writer):
    sentinel = tmp_path / "unpickled"
    path = tmp_path / "model.safetensors"
    payload = {"state_dict": model.state_dict(), "meta": _meta(), "hook": _Payload(sentinel)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    _problem(path, "not a readable safetensors file")
    with pytest.raises(CheckpointError):
        read_metadata(path)
    assert not sentinel.exists()
    pickle.loads(pickle.dumps(_Payload(sentinel)))     # the payload is live: unpickling runs it
    assert sentinel.exists()
