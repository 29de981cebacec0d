"""Retrain a trained model's last layer so that no class is told by its source's look.

    python -m train.group_head CKPT --data ../shared/data --out runs/group-head

Inside the Kaggle collection source and class are tied (docs/generalisation.md): every
no-tumour scan comes from the non-figshare sources, nearly every glioma and pituitary tumour
from figshare. Deep feature reweighting (Kirichenko et al. 2023, "Last layer re-training is
sufficient for robustness to spurious correlations") keeps the trained features and refits
only the last linear layer on data where the spurious attribute and the class are balanced.
Here a class seen in only one look gets the other by rendering: each training crop is also
taken in the in-head intensity look of a random crop from the other source (`LookSwap`, the
look swap the recipes train with), so every class has both looks. The layer is refitted by
logistic regression (scikit-learn) on the features of both views, weighted so that each
class keeps its natural share of the training scans and, inside a class, each look counts
half: the class prior is unchanged and the look carries nothing about the class.

The regularisation `C` is chosen from `--c-grid` on the validation scans (both views) by the
worst (class, look) group's accuracy, ties to the smaller C; rule: logs/loso/rule.md
(addendum 16). The checkpoint is the input's with the new last layer, the temperature refitted
on validation, and `meta["group_head"]` recording what was done; its familiarity thresholds
must be refitted (`python -m train.fit_familiarity OUT/model.safetensors --write`), since the
answers' probabilities changed. The trunk, the not-an-MRI detector and the preset are kept.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from brainmri.checkpoint import load_checkpoint, update_metadata
from brainmri.models import last_inputs_recorded, last_linear
from brainmri.classes import CLASSES
from brainmri.presets import EvalPreset
from brainmri.protocols import DATA_HELP, SOURCES, run_splits

from .augment import LookSwap
from .core import class_group_weights, crops_and_boxes, fit_temperature, scores

log = logging.getLogger("train.group_head")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
MIN_GROUP = 10             # a smaller validation group does not decide the worst one (`worst`)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and group_head.json")
    p.add_argument("--c-grid", type=float, nargs="+", default=list(C_GRID))
    p.add_argument("--name", help="the new checkpoint's name (default: the input's, with -group-head)")
    p.add_argument("--seed", type=int, default=0, help="which other-source crop each look is taken from")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, help="N random training and validation scans only (a smoke run)")
    return p


def layer_name(model: nn.Module) -> str:
    """The state-dict prefix of the layer that produces the logits (e.g. "head", "head.3")."""
    target = last_linear(model)
    return next(name for name, m in model.named_modules() if m is target)


@torch.no_grad()
def last_inputs(model: nn.Module, crops: np.ndarray, preset: EvalPreset, batch: int = 32) -> np.ndarray:
    """(N, S, S) uint8 head crops at the eval size -> (N, F) float32: what the last linear layer
    is given (float32 and in eval mode, as `Predictor` runs)."""
    model.eval()
    with last_inputs_recorded(model) as seen:
        for s in range(0, len(crops), batch):
            model(torch.stack([preset.from_crop(c) for c in crops[s:s + batch]]))
    return torch.cat(seen).numpy() if seen else np.zeros((0, last_linear(model).in_features), np.float32)


def swapped(crops: np.ndarray, sources: np.ndarray, swap: LookSwap, seed: int) -> np.ndarray:
    """Each crop rendered in the look of a random training crop from the other source."""
    rng = np.random.default_rng(seed)
    return np.stack([swap.render(c, s, rng) for c, s in zip(crops, sources)]) if len(crops) else crops.copy()


def group_accuracy(pred: np.ndarray, labels: np.ndarray, looks: np.ndarray) -> dict[str, dict]:
    """{"class/look": {"n", "accuracy"}} for every (class, look) pair present."""
    out = {}
    for c in np.unique(labels):
        for g in np.unique(looks[labels == c]):
            rows = (labels == c) & (looks == g)
            out[f"{CLASSES[c]}/{g}"] = {"n": int(rows.sum()), "accuracy": float((pred[rows] == c).mean())}
    return out


def group_counts(labels: np.ndarray, looks: np.ndarray) -> dict[str, int]:
    """{"class/look": rows} for every (class, look) pair present."""
    return {k: g["n"] for k, g in group_accuracy(labels, labels, looks).items()}


def worst(groups: dict[str, dict]) -> float:
    """The lowest accuracy among groups of at least MIN_GROUP rows (among all, when none is
    that large; nan without groups)."""
    held = [g["accuracy"] for g in groups.values() if g["n"] >= MIN_GROUP]
    held = held or [g["accuracy"] for g in groups.values()]
    return min(held) if held else float("nan")


def fit_layer(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, n_classes: int | None = None,
              seed: int = 0):
    """Multinomial L2 logistic regression on standardised features -> (weight (K, F), bias (K,))
    in the features' own units (the standardisation folded in), K = `n_classes` (default: the
    largest label + 1); a class absent from `y` gets a zero weight and a bias far below."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    scaler = StandardScaler().fit(x, sample_weight=w)
    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(x), y, sample_weight=w)
    coef, intercept = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:                       # one decision function: split it over both
        coef, intercept = np.r_[-coef, coef] / 2, np.r_[-intercept, intercept] / 2
    k = n_classes or int(y.max()) + 1
    weight, bias = np.zeros((k, x.shape[1])), np.full(k, -30.0)
    weight[clf.classes_], bias[clf.classes_] = coef, intercept
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = weight / scale
    return weight, bias - weight @ scaler.mean_


def views(model, crops: np.ndarray, sources: np.ndarray, swap: LookSwap, preset: EvalPreset, seed: int):
    """Features of each crop as it is and in the other source's look, stacked, with each row's
    look (the source whose look it has)."""
    other = {SOURCES[0]: SOURCES[1], SOURCES[1]: SOURCES[0]}
    x = np.concatenate([last_inputs(model, crops, preset),
                        last_inputs(model, swapped(crops, sources, swap, seed), preset)])
    looks = np.concatenate([sources, [other.get(s, s) for s in sources]])
    return x, looks


def choose_c(train_x, train_y, train_w, val_x, val_y, val_looks, grid) -> tuple[float, list[dict]]:
    """The grid's C with the best worst-group validation accuracy (ties: the smaller C), and
    every C's record."""
    tried = []
    for c in sorted(grid):
        weight, bias = fit_layer(train_x, train_y, train_w, c, len(CLASSES))
        groups = group_accuracy((val_x @ weight.T + bias).argmax(1), val_y, val_looks)
        tried.append({"C": c, "worst_group": worst(groups), "groups": groups})
        log.info("C=%g: worst validation group %.4f", c, tried[-1]["worst_group"])
    best = max(t["worst_group"] for t in tried)
    return next(t["C"] for t in tried if t["worst_group"] >= best - 1e-9), tried


def split_views(model, samples, sources: dict, preset, args, swap: LookSwap | None = None):
    """(features of both views, labels, looks, the LookSwap that rendered them) of `samples`;
    without `swap`, one is fitted on these crops (the training split's)."""
    crops, _ = crops_and_boxes([s.path for s in samples], preset, args.workers)
    srcs = np.array([sources.get(str(s.path), "") for s in samples])
    swap = swap if swap is not None else LookSwap.fit(crops, srcs)
    x, looks = views(model, crops, srcs, swap, preset, args.seed)
    y = np.tile(np.array([s.label for s in samples]), 2)
    return x, y, looks, swap

def main(args) -> Path:
    model, meta = load_checkpoint(args.checkpoint)
    preset = EvalPreset.from_dict(meta["preset"])
    splits = run_splits(args.data, meta["args"])
    train, val = splits.train, splits.val
    if args.limit:                                   # a smoke run: a random subset of each
        rng = np.random.default_rng(0)
        train, val = ([xs[i] for i in sorted(rng.permutation(len(xs))[:args.limit])] for xs in (train, val))
    tx, ty, tlooks, swap = split_views(model, train, splits.sources, preset, args)
    vx, vy, vlooks, _ = split_views(model, val, splits.sources, preset, args, swap)
    tw = class_group_weights(ty, tlooks)
    c, tried = choose_c(tx, ty, tw, vx, vy, vlooks, args.c_grid)
    weight, bias = fit_layer(tx, ty, tw, c, len(CLASSES))
    plain = vx[:len(val)] @ weight.T + bias
    val_acc, val_loss = scores(plain, vy[:len(val)])
    temperature = fit_temperature(plain, vy[:len(val)])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "model.safetensors"
    shutil.copyfile(args.checkpoint, path)
    prefix = layer_name(model)
    record = {"method": "deep feature reweighting: last layer refitted, look-balanced inside each class",
              "from": str(args.checkpoint), "from_name": meta.get("name"), "C": c, "seed": args.seed,
              "train_groups": group_counts(ty, tlooks),
              "train_accuracy": float(((tx @ weight.T + bias).argmax(1) == ty).mean()), "tried": tried, "limit": args.limit}
    update_metadata(path, extra={f"{prefix}.weight": torch.as_tensor(weight).half(),
                                 f"{prefix}.bias": torch.as_tensor(bias, dtype=torch.float32)},
                    name=args.name or f"{meta.get('name', meta['arch'])}-group-head",
                    calibration={"temperature": temperature, "fitted_on": "val"},
                    metrics={**meta.get("metrics", {}), "val": {"accuracy": val_acc, "loss": val_loss}},
                    group_head=record)
    (args.out / "group_head.json").write_text(json.dumps(record, indent=1))
    log.info("wrote %s: C=%g, validation accuracy %.4f (before: %s), T=%.3f; refit its familiarity "
             "next (python -m train.fit_familiarity %s --data ... --write)", path, c, val_acc,
             meta.get("metrics", {}).get("val"), temperature, path)
    return path


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(get_args_parser().parse_args())
