"""Interpolate two checkpoints of one architecture: (1 - alpha) x A + alpha x B (WiSE-FT).

    python -m train.interpolate checkpoints/resnet50.safetensors runs/lesion-r50b/model.safetensors \\
        --alpha 0.5 --data ../shared/data --out runs/wise-0.5.safetensors

Wortsman et al. 2022 ("Robust fine-tuning of zero-shot models"): averaging the weights of a
model and of its fine-tuned version often keeps most of what the fine-tuning taught while
recovering accuracy it cost. Here A is the model before a fine-tuning stage and B after it;
both must share the architecture, its arguments and the preprocessing. Every floating-point
tensor is interpolated; integer buffers come from B. The mean of two layers' batch-norm
statistics is not the statistics of the averaged layer's outputs, so `--bn-statistics` can
recompute them in one pass (`torch.optim.swa_utils.update_bn`, as stochastic weight averaging
does, Izmailov et al. 2018): `training`, over one epoch of B's own training batches as its
trainer builds them from its recorded arguments (augmentation and painting included: the
statistics its layers learnt to read); `clean`, over B's training split as the predictor
prepares it; `interpolate` (the default), like the weights. The calibration temperature is
refitted on the validation split of B's own training run (the not-an-MRI detector is B's:
refit it with `train.fit_ood --write` before shipping).
"""
from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path

import numpy as np
import torch

from safetensors import safe_open

from brainmri.checkpoint import load_checkpoint, save_checkpoint
from brainmri.predictor import Predictor
from brainmri.protocols import run_splits

from .core import fit_temperature, recompute_bn

log = logging.getLogger("train.interpolate")


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """State dicts of one architecture -> (1 - alpha) a + alpha b for floating tensors, b's
    value for the others. Raises ValueError when the keys or shapes differ."""
    if a.keys() != b.keys():
        raise ValueError(f"the checkpoints' tensors differ: {sorted(a.keys() ^ b.keys())[:5]}")
    out = {}
    for k, vb in b.items():
        va = a[k]
        if va.shape != vb.shape:
            raise ValueError(f"{k}: shape {tuple(va.shape)} against {tuple(vb.shape)}")
        out[k] = torch.lerp(va.float(), vb.float(), alpha).to(vb.dtype) if vb.is_floating_point() else vb.clone()
    return out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("a", type=Path, help="the checkpoint before fine-tuning")
    p.add_argument("b", type=Path, help="the checkpoint after it")
    p.add_argument("--alpha", type=float, required=True, help="0: A, 1: B")
    p.add_argument("--data", type=Path, required=True, help="for the validation split (temperature)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name", help="the new checkpoint's name, which its results are filed under "
                                   "(default: B's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bn-statistics", choices=BN_STATISTICS, default="interpolate",
                   help="batch-norm running statistics: interpolated, or recomputed on B's "
                        "training batches as trained or on its clean training scans")
    return p


BN_STATISTICS = ("interpolate", "training", "clean")


def training_batches(train_args: dict, data: Path):
    """Model-input batches of one epoch (epoch 0) of the run that made a checkpoint, built by
    its trainer from its recorded arguments (`train.train.load_data`, `epoch_batches`)."""
    from .train import epoch_batches, load_data           # the trainer, only when asked for
    needed = {"model", "size", "augment", "batch_size", "seed", "val_fraction"}
    if not needed <= train_args.keys():
        raise SystemExit(f"B's arguments do not describe a training run (missing "
                         f"{sorted(needed - train_args.keys())}): use --bn-statistics clean")
    cfg = {**train_args, "data": str(data), "loader_workers": 0}
    for x, *_ in epoch_batches(load_data(cfg), cfg, 0, True, 0, 1):
        yield x


def prepared_batches(predictor: Predictor, samples, batch_size: int):
    """Model-input batches (B, C, S, S) of `samples`, prepared as the predictor prepares them."""
    for s in range(0, len(samples), batch_size):
        yield torch.stack([p.tensor for p in predictor.prepare([v.path for v in samples[s:s + batch_size]])])


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0 <= args.alpha <= 1:
        raise SystemExit(f"--alpha must be in [0, 1], got {args.alpha}")
    model_a, meta_a = load_checkpoint(args.a)
    model_b, meta_b = load_checkpoint(args.b)
    same = ("arch", "arch_kwargs", "preset", "classes")
    if any(meta_a[k] != meta_b[k] for k in same):
        raise SystemExit(f"{args.a} and {args.b} differ in {[k for k in same if meta_a[k] != meta_b[k]]}")
    model_b.load_state_dict(interpolate(model_a.state_dict(), model_b.state_dict(), args.alpha))
    train_args = meta_b.get("args") or {}
    splits = run_splits(args.data, train_args)
    val = splits.val
    meta = {**meta_b, "calibration": {"temperature": 1.0, "fitted_on": "val"}}
    if getattr(args, "name", None):
        meta["name"] = args.name
    weights = set(model_b.state_dict())
    if args.bn_statistics != "interpolate":
        if args.bn_statistics == "training":
            batches = training_batches(train_args, args.data)
        else:                                   # a predictor only to prepare the scans
            preparer = Predictor(copy.deepcopy(model_b), meta, torch.device("cpu"), ood=None, fold_bn=False)
            batches = prepared_batches(preparer, splits.train, args.batch_size)
        n = recompute_bn(model_b, batches)
        log.info("batch-norm statistics of %d layers recomputed (%s)", n, args.bn_statistics)
    # The predictor wraps the trunk's stages in familiarity taps, which renames their tensors:
    # it gets a copy, and the checkpoint is written from the model as built.
    predictor = Predictor(copy.deepcopy(model_b), meta, torch.device("cpu"), ood=None, fold_bn=False)
    logits = torch.cat([predictor.logits_and_features(batch)[0]
                        for batch in prepared_batches(predictor, val, args.batch_size)]).numpy()
    labels = np.array([v.label for v in val])
    accuracy = float((logits.argmax(1) == labels).mean())
    temperature = fit_temperature(logits, labels)
    meta["calibration"]["temperature"] = temperature
    meta["interpolated"] = {"a": str(args.a), "b": str(args.b), "alpha": args.alpha,
                            "bn_statistics": args.bn_statistics}
    meta["metrics"] = {"val": {"accuracy": accuracy}}
    with safe_open(str(args.b), "pt") as f:               # B's detectors (ood.*, ...), as they are
        extra = {k: f.get_tensor(k) for k in f.keys() if k not in weights}
    save_checkpoint(args.out, model_b, meta, extra=extra)
    result = {"alpha": args.alpha, "val_accuracy": accuracy, "n": len(val), "temperature": temperature}
    log.info("%s", result)
    log.info("%s carries %s's not-an-MRI and familiarity detectors, fitted on other features: refit "
             "them (python -m train.fit_ood %s --write; then train.fit_familiarity) before scoring it",
             args.out, args.b, args.out)
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
