"""Shared fixtures: real data location (or a clear skip), tiny checkpoints, synthetic scans."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from brainmri.checkpoint import save_checkpoint
from brainmri.classes import CLASSES
from brainmri.models import ARCHS, build_model

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints"
SHIPPED_ARCHS = tuple(ARCHS)          # the registry as imported: every architecture we ship

# One thread: the tests' tensors are tiny, and on a machine shared with a training run
# OpenMP threads that wait on each other make a 64 px forward ~20x slower than one thread.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding brain-tumor-mri/ and roboflow-brain-mri/, from BRAINMRI_DATA."""
    value = os.environ.get("BRAINMRI_DATA")
    if not value:
        pytest.skip("BRAINMRI_DATA is not set: real-scan tests need the dataset folder "
                    "(CI sets it to ../shared/data)")
    path = Path(value)
    if not (path / "brain-tumor-mri").is_dir():
        pytest.skip(f"BRAINMRI_DATA={value} has no brain-tumor-mri/ folder")
    return path


def make_tiny_checkpoint(path: Path, arch: str, size: int = 64, seed: int = 0) -> Path:
    """A randomly initialised checkpoint of `arch` at a small input size, for fast tests."""
    torch.manual_seed(seed)
    spec = ARCHS[arch]
    kwargs = dict(spec.small)
    model = build_model(arch, **kwargs)
    preset = spec.preset(size)
    meta = {"arch": arch, "arch_kwargs": kwargs, "classes": list(CLASSES),
            "preset": preset.to_dict(), "name": f"tiny-{arch}", "recipe": "test",
            "metrics": {}}
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    return {arch: make_tiny_checkpoint(folder / f"{arch}.safetensors", arch) for arch in SHIPPED_ARCHS}


@pytest.fixture(scope="session")
def shipped_checkpoints() -> dict[str, Path]:
    found = {a: SHIPPED / f"{a}.safetensors" for a in SHIPPED_ARCHS}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        pytest.skip(f"shipped checkpoints missing: {missing}")
    return found
