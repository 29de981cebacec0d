"""Does averaging a scan's probabilities with its mirror image's help? Validation split only.

    python -m studies.mirror_check checkpoints/resnet50.safetensors checkpoints/baseline.safetensors \
        --data ../shared/data

Prints, per checkpoint, validation accuracy of the scan, of its left-right mirror image, and
of the mean of both (the checkpoint's own validation split, as `train.evaluate` builds it).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from brainmri.predictor import Predictor
from brainmri.protocols import run_splits


def accuracies(path: Path, data: Path, cache_dir: Path, batch_size: int = 16) -> dict[str, float]:
    predictor = Predictor.from_checkpoint(path, device="cpu", checked=False)
    args = predictor.meta.get("args", {})
    items = run_splits(data, args, cache_dir=cache_dir).protocol("val")
    plain, mirrored = [], []
    for start in range(0, len(items), batch_size):
        prepared = predictor.prepare([s.path for s in items[start:start + batch_size]])
        flipped = [dataclasses.replace(p, tensor=torch.flip(p.tensor, dims=[2])) for p in prepared]
        for batch, out in ((prepared, plain), (flipped, mirrored)):
            out += [[r.probabilities[c] for c in predictor.classes]
                    for r in predictor.predict_batch(prepared=batch)]
    y = np.array([s.label for s in items])
    plain, mirrored = np.array(plain), np.array(mirrored)
    return {"n": len(y), "scan": float((plain.argmax(1) == y).mean()),
            "mirror": float((mirrored.argmax(1) == y).mean()),
            "mean of both": float(((plain + mirrored).argmax(1) == y).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    args = p.parse_args()
    for path in args.checkpoints:
        acc = accuracies(path, args.data, args.cache_dir)
        print(f"{path.name}: val n={acc.pop('n')} " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in acc.items()))


if __name__ == "__main__":
    main()
