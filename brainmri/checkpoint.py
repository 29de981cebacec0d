"""Self-describing checkpoints: one safetensors file, weights plus JSON metadata in its header.

Loading reads tensors and JSON only; nothing is unpickled. The metadata carries everything
needed to use the model: architecture and its arguments, class names, the evaluation preset
(input size, channels, normalisation, head crop), training recipe and resolved arguments,
data fingerprint, metrics, calibration temperature, library versions, date, intended use.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .models import Classifier, build_model

FORMAT = "brainmri-checkpoint/1"
DETECTOR_PREFIXES = ("ood.", "fam.")      # detector tensors stored beside the weights
INTENDED_USE = ("Research and education only. Not a medical device; not for diagnosis or "
                "any clinical decision.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"checkpoint {Path(path).name}: {problem}")


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "safetensors": safetensors.__version__}


def save_checkpoint(path: str | Path, model: Classifier, meta: dict[str, Any],
                    half: bool = True, extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `model`'s weights (float16 when `half`) and `meta` (must hold arch, arch_kwargs,
    classes and preset) to `path`. Adds format, date, versions and intended use."""
    for key in ("arch", "arch_kwargs", "classes", "preset"):
        if key not in meta:
            raise ValueError(f"checkpoint metadata needs {key!r}")
    meta = {"format": FORMAT, "intended_use": INTENDED_USE,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": library_versions(), **meta}
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        # Only weight matrices and kernels go to float16: batch-norm statistics (running
        # variances around 1e-5 are float16 subnormals) and biases stay float32.
        state[k] = (v.half() if half and v.is_floating_point() and v.ndim > 1 else v).contiguous()
    state.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={"brainmri": json.dumps(meta, sort_keys=True)})
    tmp.chmod(0o644)                           # safetensors writes 0600; a checkpoint is shared
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, without reading its weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("brainmri")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"not a readable safetensors file ({error})") from None
    if raw is None:
        raise CheckpointError(path, "no brainmri metadata in the safetensors header")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(path, f"metadata is not valid JSON ({error})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(path, f"unknown format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[Classifier, dict]:
    """(model in eval mode, float32, on `device`; metadata). Raises CheckpointError."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(DETECTOR_PREFIXES)}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(path, f"weights are unreadable or truncated ({error})") from None
    try:
        model = build_model(meta["arch"], num_classes=len(meta["classes"]), **meta["arch_kwargs"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f"cannot build architecture {meta.get('arch')!r}: {error}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(path, f"weights do not match architecture {meta['arch']!r}: "
                                    f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    for k, v in expected.items():
        if v.shape != state[k].shape:
            raise CheckpointError(path, f"tensor {k} has shape {tuple(state[k].shape)}, "
                                        f"architecture needs {tuple(v.shape)}")
        state[k] = state[k].to(v.dtype)
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def update_metadata(path: str | Path, extra: dict[str, torch.Tensor] | None = None,
                    drop_prefix: str | None = None, **updates: Any) -> None:
    """Rewrite `path` with its metadata updated (e.g. metrics after evaluation) and the
    tensors in `extra` added or replaced (e.g. the `ood.*` detector). Tensors whose names
    start with `drop_prefix` are removed first (e.g. a detector of another kind)."""
    path = Path(path)
    meta = read_metadata(path)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()
                 if not (drop_prefix and k.startswith(drop_prefix))}
    state.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    meta.update(updates)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={"brainmri": json.dumps(meta, sort_keys=True)})
    shutil.copymode(path, tmp)                 # keep the file's permissions
    tmp.replace(path)
