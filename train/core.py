"""What every training stage shares: the learning-rate schedule, head crops with their tumour
boxes, predictions on crops, and `finalise`, which calibrates on validation, fits the
not-an-MRI detector and writes the self-describing checkpoint.

`train.train` (the trainer) and `train.dilate` (its cached-tail stage) both import this; it
imports neither.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

from brainmri.cam import DEFAULT_METHOD
from brainmri.checkpoint import save_checkpoint
from brainmri.classes import CLASSES
from brainmri.data import Sample, fingerprint
from brainmri.io import ImageLoadError, load_image, to_grey
from brainmri.models import Classifier
from brainmri.ood import DEFAULT_DETECTOR, DEFAULT_QUANTILE
from brainmri.ood import fit as fit_detector
from brainmri.presets import EvalPreset, TrainPreset

from . import prior

log = logging.getLogger("train")


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


# -- data: head crops, and where the tumour boxes fall in the model input (for the report) ---
def _crop_and_box(args):
    path, preset = args
    try:
        crop, box = preset.crop(to_grey(load_image(path)))
    except ImageLoadError:
        return None, None
    return preset.resize(crop), box


def crops_and_boxes(paths, preset: EvalPreset, workers: int):
    """(N, S, S) uint8 head crops at the eval size, and each crop's box in the scan."""
    with ProcessPoolExecutor(workers) as pool:
        out = list(pool.map(_crop_and_box, [(p, preset) for p in paths], chunksize=32))
    s = preset.size
    crops = np.stack([c if c is not None else np.zeros((s, s), np.uint8) for c, _ in out])
    return crops, [b for _, b in out]


def box_in_input(box, crop_box, size: int) -> tuple[float, float, float, float] | None:
    """A tumour box in scan pixels -> the same box in model-input pixels (None if outside)."""
    x0, y0, x1, y1 = box
    cx0, cy0, cx1, cy1 = crop_box
    sx, sy = size / (cx1 - cx0), size / (cy1 - cy0)
    b = (max(0.0, (x0 - cx0) * sx), max(0.0, (y0 - cy0) * sy),
         min(size, (x1 - cx0) * sx), min(size, (y1 - cy0) * sy))
    return b if b[2] > b[0] and b[3] > b[1] else None


@torch.no_grad()
def predict_crops(model: Classifier, crops: np.ndarray, preset: EvalPreset, device,
                  batch_size: int = 64, head_input: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), features (N, F)) for head crops already at the eval size. Features are
    the globally averaged target-layer activations (what the OOD detector uses), or with
    `head_input` the pooled input of the head."""
    model.eval()
    logits, feats = [], []
    for s in range(0, len(crops), batch_size):
        x = torch.stack([preset.from_crop(c) for c in crops[s:s + batch_size]]).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        # float32, as `Predictor` runs (docs/gpu.md): the epoch choice, the temperature and the
        # OOD threshold are fitted on what inference will see.
        acts = model.trunk(x).float()
        logits.append(model.classify(acts).float().cpu())
        feats.append((model.pool(acts) if head_input else acts.mean(dim=(2, 3))).cpu())
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


def class_group_weights(labels: np.ndarray, groups, min_group: int = 1) -> np.ndarray:
    """Per-row weights (mean 1) under which each class keeps its share of the rows, split
    evenly between its groups (a source, a look) that hold at least `min_group` of its rows;
    rows of smaller groups, and of a class with fewer than two such groups, keep their plain
    weight. Inside the collection source and class are tied (brainmri.protocols): weighted
    this way, a class's rows of a rare source or look count as much as its common ones."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    w = np.ones(len(labels))
    for c in np.unique(labels):
        in_c = labels == c
        big = [m for m in (in_c & (groups == g) for g in np.unique(groups[in_c])) if m.sum() >= min_group]
        if len(big) < 2:
            continue
        share = sum(m.sum() for m in big) / len(big)
        for m in big:
            w[m] = share / m.sum()
    return w * len(labels) / w.sum()


def scores(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(accuracy, cross-entropy) of (N, classes) logits against (N,) labels."""
    loss = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels))
    return float((logits.argmax(1) == labels).mean()), float(loss)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017) by minimising validation NLL over log T."""
    z, y = torch.as_tensor(logits, dtype=torch.float64), torch.as_tensor(labels)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss
    opt.step(closure)
    return float(log_t.detach().exp())


@dataclass(frozen=True)
class Split:
    """One side of the data as a trainer holds it."""
    samples: list[Sample]
    crops: np.ndarray            # (N, s, s) uint8 head crops (training: at the cache size)
    labels: np.ndarray           # (N,) int64 class indices
    fingerprint: dict | None = None   # the samples' `brainmri.data.fingerprint`, when not from files (train.pack)


@dataclass(frozen=True)
class Run:
    """What a finished training run hands to `finalise`, besides the model and the data."""
    cfg: dict                    # resolved arguments, stored as meta["args"]
    arch_kwargs: dict
    eval_preset: EvalPreset
    train_preset: TrainPreset | EvalPreset
    history: list[dict]
    best: dict                   # {"val_acc", "val_loss", "epoch"} of the weights kept
    world: int = 1               # processes that trained
    prior_shift: dict | None = None   # train.prior's correction (counts and the logit shift)


def recompute_bn(model: torch.nn.Module, batches) -> int:
    """Every batch-norm's running statistics from `batches` (model inputs), a cumulative
    average over all of them (`torch.optim.swa_utils.update_bn`, as stochastic weight averaging
    does after averaging); the model is left in eval mode. -> how many batch-norms."""
    with torch.no_grad():
        update_bn(batches, model)
    model.eval()
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def finalise(model: Classifier, run: Run, train: Split, val: Split, device, out: Path) -> Path:
    """Correct the label prior (when asked), calibrate on validation, fit the OOD detector,
    write the checkpoint."""
    model = model.float()
    if run.prior_shift is not None:
        prior.shift_logits(model, np.array(run.prior_shift["logit_shift"]))
    logits, val_feats = predict_crops(model, val.crops, run.eval_preset, device)
    val_acc, val_loss = scores(logits, val.labels)
    temperature = fit_temperature(logits, val.labels)
    # OOD fit on training features (eval preset: resize the cached crops to the eval size).
    sampled = 1500
    sub = np.random.default_rng(0).permutation(len(train.crops))[:sampled]
    train_eval = np.stack([run.eval_preset.resize(c) for c in train.crops[sub]])
    _, train_feats = predict_crops(model, train_eval, run.eval_preset, device)
    ood = fit_detector(DEFAULT_DETECTOR, train_feats, train.labels[sub])
    val_scores = ood.score(val_feats)
    ood.threshold = float(np.quantile(val_scores, DEFAULT_QUANTILE))
    cfg, train_preset = run.cfg, run.train_preset
    meta = {
        "name": cfg.get("name") or cfg["model"],
        "arch": cfg["model"], "arch_kwargs": run.arch_kwargs, "classes": list(CLASSES),
        "preset": run.eval_preset.to_dict(),
        "train_preset": {k: v for k, v in vars(train_preset).items() if k != "eval"}
        if isinstance(train_preset, TrainPreset) else None,
        "recipe": cfg["recipe"], "args": cfg, "history": run.history, "best_epoch": run.best["epoch"],
        "data": {"train": train.fingerprint or fingerprint(train.samples),
                 "val": val.fingerprint or fingerprint(val.samples),
                 "source": "Kaggle brain-tumor-mri Training, copies dropped, group validation split"
                 + (f", source {cfg['holdout_source']} held out ({cfg.get('holdout_classes') or 'all classes'})"
                    if cfg.get("holdout_source") else ""),
                 "world_size": run.world},
        "calibration": {"temperature": temperature, "fitted_on": "val"},
        "ood": {"method": DEFAULT_DETECTOR, "threshold": ood.threshold, "quantile": DEFAULT_QUANTILE,
                "fitted_on": f"train ({sampled} sampled)", "threshold_on": "val"},
        "metrics": {"val": {"accuracy": val_acc, "loss": val_loss}},
        "default_cam": DEFAULT_METHOD,
    }
    if run.prior_shift is not None:
        meta["prior_correction"] = {**run.prior_shift, "method": "post-hoc logit adjustment (train.prior)"}
    path = save_checkpoint(out / "model.safetensors", model.cpu(), meta, extra=ood.tensors())
    log.info("wrote %s (val accuracy %.4f, T=%.3f, OOD threshold %.1f)", path, val_acc, temperature,
             ood.threshold)
    return path
