"""What the benchmarks run on: a checkpoint per registered model (or random stand-ins) and scan files."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from brainmri.checkpoint import save_checkpoint
from brainmri.classes import CLASSES
from brainmri.data import image_files
from brainmri.models import ARCHS, build_model


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    random: bool          # a randomly initialised stand-in: same network, same cost


def checkpoints(folder: str | Path | None, scratch: Path) -> dict[str, Checkpoint]:
    """`<folder>/<arch>.safetensors` per registered arch, or random ones at its default size."""
    out = {}
    for arch in ARCHS:
        path = Path(folder) / f"{arch}.safetensors" if folder else None
        if path is not None and path.is_file():
            out[arch] = Checkpoint(path, False)
            continue
        spec = ARCHS[arch]
        preset = spec.preset()
        meta = {"arch": arch, "arch_kwargs": {}, "classes": list(CLASSES),
                "preset": preset.to_dict(), "name": f"random-{arch}", "recipe": "benchmark"}
        out[arch] = Checkpoint(save_checkpoint(scratch / f"{arch}.safetensors",
                                               build_model(arch), meta), True)
    return out


def devices(spec: str) -> list[str]:
    """`--devices`: "auto" is the CPU, plus CUDA when there is one; else a comma list."""
    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return spec.split(",")


def label(name: str) -> str:
    """A model's display name from the registry (its key when unregistered)."""
    return ARCHS[name].label if name in ARCHS else name


def synthetic_scans(count: int) -> list[bytes]:
    """JPEG files of 512x512 synthetic scans (the Kaggle set's most common size)."""
    from tests.synthetic import scan
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        scan(i, size=512).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def scan_files(folder: str | Path | None, count: int) -> tuple[list[bytes], str]:
    """`count` files spread evenly over the sorted files under `folder` (or synthetic ones)."""
    if not folder:
        return synthetic_scans(count), f"{count} synthetic 512x512 JPEG scans"
    files = list(image_files(Path(folder)))
    if not files:
        raise FileNotFoundError(f"no files under {folder}")
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    return [f.read_bytes() for f in chosen], f"{len(chosen)} files from {folder}"


def report(lines: list[str], out: str | Path | None) -> str:
    """The benchmark's Markdown lines as one text: printed, and written to `out` when given."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    return text
