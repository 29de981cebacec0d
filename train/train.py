"""Train a brainmri model on a Kaggle-layout folder; writes a self-describing checkpoint.

    python -m train --recipe best --data ../shared/data --out runs/resnet50
    python -m train --recipe baseline --data ../shared/data --out runs/baseline
    python -m train --recipe study --data ../shared/data --out runs/study
    python -m train --recipe dilate --data ../shared/data --out runs/dilate   # a stage (train.dilate)
    torchrun --nproc_per_node=2 -m train --recipe baseline --data DIR --out DIR   # DDP

The training set is Kaggle Training with copies dropped (one file per duplicate group); the
validation split is carved from it by groups (see brainmri.protocols). Model selection,
calibration temperature and the out-of-distribution threshold use validation data only.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from safetensors.torch import save_file
from tqdm import tqdm

from brainmri.checkpoint import load_checkpoint
from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.data import fingerprint, load_crops
from brainmri.models import ARCHS, Classifier, build_model, pretrained_model
from brainmri.predictor import default_device
from brainmri import localisation as loc
from brainmri.presets import EvalPreset, TrainPreset
from brainmri.protocols import DATA_HELP, SOURCES, VAL_FRACTION, kaggle_root, run_splits

from . import dilate, distill, prior
from .augment import ACQUISITIONS, LookSwap, MixStyle, consistency_loss, mixstyle_blocks
from .core import Run, Split, class_group_weights, crops_and_boxes, finalise, lr_at, predict_crops, recompute_bn, scores
from .distill import Teacher, distill_loss
from .guidance import box_penalty
from .pack import Pack, boxes_in_crop, is_pack, resized
from .paint import IMPLANT, IMPLANT_CONTROL, LESION_OUT, Painter, Plan, plan_epoch
from .recipes import RECIPES

log = logging.getLogger("train")
MIN_SOURCE_GROUP = 20   # --source-balance: a class's source with fewer scans is not balanced


def add_signal_arguments(p: argparse.ArgumentParser) -> None:
    """What a recipe trains on besides the labels: the lesion signals (train.paint,
    train.guidance), acquisition and look augmentation (train.augment), framing."""
    p.add_argument("--counterfactual", type=float,
                   help="share of boxed tumour scans also trained painted out as notumor (train.paint)")
    p.add_argument("--paint-share", type=float,
                   help="share of each epoch's samples painted (counterfactuals + balancing controls)")
    p.add_argument("--implant", type=float,
                   help="per no-tumour scan, this many boxed tumours pasted into no-tumour scans in "
                        "their look, labelled as the tumour, and as many healthy patches pasted "
                        "as controls (train.paint)")
    p.add_argument("--notumor-repeat", type=int,
                   help="each no-tumour scan this many times an epoch (room for its control paintings)")
    p.add_argument("--guidance", type=float,
                   help="weight of the true class's map mass outside the tumour box (train.guidance)")
    p.add_argument("--acquisition", type=int, choices=[0, 1],
                   help="acquisition and contrast augmentation (train.augment)")
    p.add_argument("--standardise", type=int, choices=[0, 1],
                   help="in-head intensity standardisation of every crop, in training and at "
                        "inference (stored in the checkpoint's preset; brainmri.intensity)")
    p.add_argument("--blur", type=float,
                   help="Gaussian blur of every crop, sigma this share of its longer side, in "
                        "training and at inference (stored in the checkpoint's preset)")
    p.add_argument("--acquisition-kind", choices=sorted(ACQUISITIONS), default=None,
                   help="which train.augment.ACQUISITIONS setting (default: standard)")
    p.add_argument("--look-swap", type=float,
                   help="share of training crops rendered in another source's intensity look "
                        "(train.augment.LookSwap)")
    p.add_argument("--consistency", type=float,
                   help="weight of the Jensen-Shannon consistency between each training crop and "
                        "a second view of it in another source's look (train.augment."
                        "consistency_loss); each step then sees twice the images")
    p.add_argument("--mixstyle", type=float,
                   help="share of training batches whose early feature statistics are mixed "
                        "between scans, after each of the first two stages (train.augment.MixStyle)")
    p.add_argument("--source-balance", type=int, choices=[0, 1],
                   help="draw each epoch's scans so that every class's share is split evenly "
                        "between its sources (balanced_draws; plain batches only)")
    p.add_argument("--scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="area of the random training crop, of the cached head crop's (framing "
                        "and zoom variety; brainmri.presets.TrainPreset.scale, default 0.75 1.0; "
                        "above 1 zooms out, the head framed looser)")
    p.add_argument("--grow", type=float, help="tumour boxes grown by this x the crop side")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a brainmri model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe", choices=sorted(RECIPES), default="best")
    p.add_argument("--model", choices=sorted(ARCHS), help="overrides the recipe's model")
    p.add_argument("--arch-kwargs", type=json.loads, metavar="JSON",
                   help='a model built from scratch with these arguments, e.g. \'{"widths": [64, 128, 256]}\' '
                        "(recorded in the checkpoint; not with pretrained weights); with --init, the "
                        "checkpoint's arguments updated by these, its weights kept (they must fit), "
                        'e.g. \'{"dilation": [1, 2, 2]}\'')
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, required=True)
    for name, typ in [("size", int), ("epochs", int), ("batch_size", int), ("lr", float),
                      ("momentum", float), ("weight_decay", float), ("label_smoothing", float),
                      ("warmup_epochs", float)]:
        p.add_argument(f"--{name.replace('_', '-')}", type=typ, help="overrides the recipe")
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--schedule", choices=["cosine", "constant"])
    p.add_argument("--freeze", help='"none", "all-but-head", or stage names joined by "+" '
                   ', e.g. "stem+layer2" freezes through layer2 (brainmri.models.Arch)')
    p.add_argument("--augment", type=int, choices=[0, 1])
    p.add_argument("--imagenet", choices=["auto", "keras-npm", "torchvision"], default="auto")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this brainmri checkpoint's weights instead of ImageNet "
                        '("none": ImageNet, or from scratch, whatever the recipe says)')
    p.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    p.add_argument("--holdout-source", choices=SOURCES, default=None,
                   help="leave this source out of training and validation (brainmri.protocols "
                        "`loso`), duplicate groups respected")
    p.add_argument("--holdout-classes", default=None,
                   help="with --holdout-source: hold out only these classes' groups of that "
                        "source (comma-separated class names)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=None,
                   help="the validation split's seed (default: --seed); runs of several seeds on "
                        "one split can be compared scan by scan (rule v10, logs/confident/rule.md)")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images once")
    p.add_argument("--loader-workers", type=int, default=0,
                   help="processes building training batches (0: the training process; a GPU "
                        "needs several to be kept busy). The batches are the same for any number")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--limit", type=int, default=0, help="use only N training images (smoke tests)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    p.add_argument("--name", default=None, help="model name stored in the checkpoint")
    p.add_argument("--check", action="store_true",
                   help="build the run (data, model, epoch plan, the teacher's split check) and stop "
                        "before the first step: a command meant for another machine, tried here")
    add_signal_arguments(p)
    p.add_argument("--freeze-bn", type=int, choices=[0, 1], help="keep every batch-norm's statistics")
    p.add_argument("--keep", choices=["best", "last"], help="epoch kept: best validation accuracy or last")
    p.add_argument("--average-from", type=int, metavar="EPOCH",
                   help="keep instead the mean of the weights at the end of every epoch from this "
                        "one (1-based) on, with batch-norm statistics recomputed over one more "
                        "epoch of training batches (stochastic weight averaging)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bfloat16 autocast on CUDA and on CPUs with avx512_bf16/amx_bf16")
    p.add_argument("--prior-correct", type=int, choices=[0, 1],
                   help="undo the no-tumour prior the painting plan adds (train.prior); with "
                        "--epochs 0 --init CKPT it corrects and recalibrates a trained checkpoint")
    p.add_argument("--rank-weights", action="store_true",
                   help="under torchrun, every rank also saves its final weights (to check they agree)")
    dilate.add_arguments(p)
    distill.add_arguments(p)
    return p


def resolve(args: argparse.Namespace) -> dict:
    """Recipe defaults overridden by explicit flags -> one flat dict, saved beside the outputs."""
    cfg = dict(RECIPES[args.recipe])
    cfg.update({k: v for k, v in vars(args).items() if v is not None})
    cfg["augment"] = bool(cfg["augment"])
    cfg["data"], cfg["out"] = str(cfg["data"]), str(cfg["out"])
    if cfg.get("teacher"):
        cfg["teacher"] = str(cfg["teacher"])
    cfg["init"] = str(cfg["init"]) if cfg.get("init") and str(cfg["init"]) != "none" else None
    return cfg


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16): there, bf16
    autocast trains faster than float32; without it, slower."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_bf16(device: torch.device, precision: str = "auto", cpuinfo: str | None = None) -> bool:
    """The training precision rule: bf16 autocast when asked, or by default on CUDA and on a CPU
    with native bf16 (batch-norm statistics, the loss and the guidance stay float32)."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16(cpuinfo))


# -- distributed -------------------------------------------------------------------------
def setup_distributed(device: torch.device) -> tuple[int, int]:
    if "RANK" not in os.environ:
        return 0, 1
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


# -- model -------------------------------------------------------------------------------
def make_model(cfg: dict) -> tuple[Classifier, dict]:
    arch = cfg["model"]
    if cfg.get("init"):
        model, meta = load_checkpoint(cfg["init"])
        if meta["arch"] != arch:
            raise ValueError(f"--init {cfg['init']} is a {meta['arch']}, not a {arch}")
        if not cfg.get("arch_kwargs"):
            return model.float().train(), meta["arch_kwargs"]
        kwargs = {**meta["arch_kwargs"], **cfg["arch_kwargs"]}
        try:
            other = build_model(arch, num_classes=len(meta["classes"]), **kwargs)
            other.load_state_dict(model.state_dict())
        except (TypeError, RuntimeError) as error:
            raise SystemExit(f"--arch-kwargs with --init: {cfg['init']}'s weights must fit the "
                             f"model these arguments build ({str(error).splitlines()[0]})") from None
        return other.float().train(), kwargs
    if cfg.get("arch_kwargs"):
        if ARCHS[arch].pretrained is not None:
            raise SystemExit(f"--arch-kwargs: {arch} starts from pretrained weights of its own shape")
        try:
            return build_model(arch, **cfg["arch_kwargs"]).train(), dict(cfg["arch_kwargs"])
        except TypeError as error:
            raise SystemExit(f"--arch-kwargs: {error}") from None
    return pretrained_model(arch, cfg["imagenet"])


def frozen_blocks(cfg: dict) -> int:
    """How many leading trunk blocks the recipe's `freeze` keeps fixed (the arch names them)."""
    return ARCHS[cfg["model"]].blocks_through(cfg["freeze"])


def apply_freeze(model: Classifier, blocks: int) -> None:
    """Freeze the parameters of the leading `blocks` trunk blocks."""
    for p in model.trunk[:blocks].parameters():
        p.requires_grad_(False)


def frozen_eval(model: Classifier, blocks: int) -> None:
    """Keep the frozen blocks' batch-norm statistics fixed (eval mode) while the rest trains."""
    model.trunk[:blocks].eval()


# -- loops -------------------------------------------------------------------------------
def batches(n: int, batch_size: int, rng: np.random.Generator | None, rank: int, world: int,
            weights: np.ndarray | None = None):
    """Index batches over n scans: a permutation, or with `weights` n draws with replacement."""
    if weights is not None:
        order = rng.choice(n, n, replace=True, p=weights)
    else:
        order = rng.permutation(n) if rng is not None else np.arange(n)
    order = order[: len(order) - len(order) % world]     # equal shards: no rank waits forever
    order = order[rank::world]                    # each rank its own shard (DistributedSampler-like)
    for s in range(0, len(order), batch_size):
        yield order[s:s + batch_size]


def balanced_draws(labels: np.ndarray, sources, painter: Painter | None) -> np.ndarray:
    """--source-balance: each scan's chance of a draw (summing to 1) under which every class
    keeps its share, split evenly between its sources holding at least MIN_SOURCE_GROUP of its
    scans (`train.core.class_group_weights`), with each (class, source)'s expected draws an
    epoch logged; refused with the painting plan, which draws its own rows."""
    if painter is not None:
        raise SystemExit("--source-balance draws plain batches; the painting plan has its own")
    sources, n = np.asarray(sources), len(labels)
    weights = class_group_weights(labels, sources, MIN_SOURCE_GROUP) / n
    log.info("source balance (expected draws an epoch): %s", json.dumps(
        {CLASSES[c]: {str(g): round(float(weights[(labels == c) & (sources == g)].sum() * n), 1)
                      for g in np.unique(sources[labels == c])} for c in np.unique(labels)}))
    return weights


def augmented(x: torch.Tensor, preset, gen, acquisition=None) -> torch.Tensor:
    """(B, 1, s, s) uint8 crops -> the model's normalised input: with a `TrainPreset`, warped
    and jittered, then `acquisition` (train.augment) when given."""
    if isinstance(preset, TrainPreset) and acquisition is not None:
        x = preset.jitter(preset.warp(x.float().div(255.0), gen)[0], gen)
        return preset.eval.normalise(acquisition(x, gen)).contiguous()
    if isinstance(preset, TrainPreset):
        return preset(x, gen)
    return torch.stack([preset.from_crop(c) for c in x[:, 0].numpy()])


def plain_batch(crops, labels, preset, cfg, acquisition, look: LookSwap | None, idx: np.ndarray,
                rng: np.random.Generator | None, gen: torch.Generator):
    """(x (B, C, S, S) normalised, y (B,), None, None) for the crops `idx` (see `augmented`);
    with `look`, crops rendered in another source's look at its rate, and with
    cfg["consistency"] a second view of every crop in another source's look appended (2B rows:
    the first B plain, the next B their views)."""
    views = bool(cfg.get("consistency")) and look is not None
    raw = crops[idx]
    y = torch.from_numpy(labels[idx])
    if look is not None:
        raw = np.stack([look(c, int(i), rng) for c, i in zip(raw, idx)])
    x = augmented(torch.from_numpy(raw)[:, None], preset, gen, acquisition)
    if views:
        other = np.stack([look(c, int(i), rng, force=True) for c, i in zip(crops[idx], idx)])
        x = torch.cat([x, augmented(torch.from_numpy(other)[:, None], preset, gen, acquisition)])
        y = torch.cat([y, y])
    return x, y, None, None


def painted_batch(painter: Painter, plan: Plan, preset: TrainPreset, acquisition, cfg,
                  look: LookSwap | None, rows: range, rng: np.random.Generator, gen: torch.Generator):
    """The plan's `rows` (a `train.paint.Plan`): each row's crop painted or implanted as its kind
    says, warped with its grown tumour box (the guidance mask, on boxed tumour rows that keep
    their tumour; on an implant, the box it was pasted into),
    intensity-jittered, then `acquisition` (train.augment) -> (x, y, masks, guided); with
    `look`, crops rendered in another source's look at its rate (`train.augment.LookSwap`),
    and with cfg["consistency"] each painted crop's view in another source's look appended
    (2B rows, as in `plain_batch`; the view keeps the row's label, mask and guidance)."""
    side = painter.side
    views = bool(cfg.get("consistency")) and look is not None
    crops, others, masks, guided = [], [], np.zeros((len(rows), 1, side, side), np.float32), []
    for j, r in enumerate(rows):
        i, kind = int(plan.index[r]), int(plan.kind[r])
        crop, pasted = painter(i, kind, rng, -1 if plan.donor is None else int(plan.donor[r]))
        crops.append(look(crop, i, rng) if look is not None else crop)
        if views:
            others.append(look(crop, i, rng, force=True))
        box = pasted if kind == IMPLANT else painter.grown[i]
        keep = (box is not None and kind not in (LESION_OUT, IMPLANT_CONTROL)
                and plan.label[r] != painter.notumor)
        if keep:
            masks[j, 0] = loc.box_mask((side, side), box)
        guided.append(keep)
    y, guided = torch.from_numpy(plan.label[list(rows)]), torch.tensor(guided)
    if views:
        crops, masks = crops + others, np.concatenate([masks, masks])
        y, guided = torch.cat([y, y]), torch.cat([guided, guided])
    x = torch.from_numpy(np.stack(crops))[:, None].float().div(255.0)
    x, m = preset.warp(x, gen, torch.from_numpy(masks))
    x = preset.jitter(x, gen)
    if acquisition is not None:
        x = acquisition(x, gen)
    return preset.eval.normalise(x).contiguous(), y, m, guided


class EpochBatches(torch.utils.data.Dataset):
    """An epoch's batches as a map-style dataset: batch `b` is `make(chunks[b], rng, gen)` with
    its own generators seeded by (`key`, b), so a `DataLoader` with any number of worker
    processes (`--loader-workers`) yields the same batches as building them in-process."""

    def __init__(self, make, chunks: list, key: tuple[int, ...]):
        self.make, self.chunks, self.key = make, chunks, tuple(int(k) for k in key)

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, b: int):
        seed = np.random.SeedSequence([*self.key, b])
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(int(seed.generate_state(1, np.uint64)[0] >> 1))
        return self.make(self.chunks[b], rng, gen)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)                  # loader workers: one core each, none oversubscribed


def loader(batches: EpochBatches, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    """The epoch's batches in order, built by `workers` processes (0: in this process)."""
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False, num_workers=workers,
                                       worker_init_fn=_one_thread if workers else None,
                                       pin_memory=pin, prefetch_factor=4 if workers else None)


@dataclass(frozen=True)
class Loop:
    """What every epoch of a run shares: the settings, the optimiser and where it steps."""
    cfg: dict
    opt: torch.optim.Optimizer
    device: torch.device
    bf16: bool                   # bfloat16 autocast for the forward pass
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    teacher: Teacher | None = None   # --teacher: its soft answers join the loss (train.distill)

    def set_lr(self, step: int) -> float:
        lr = lr_at(step, self.total_steps, self.warmup_steps, self.cfg["lr"], self.cfg["schedule"])
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr


def train_mode(model, cfg: dict) -> Classifier:
    """Training mode, with the frozen blocks' (or, with freeze_bn, every) batch-norm statistics
    fixed; returns the bare model (unwrapped from DistributedDataParallel)."""
    model.train()
    core = model.module if hasattr(model, "module") else model
    frozen_eval(core, frozen_blocks(cfg))
    if cfg.get("freeze_bn"):
        for m in core.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    return core


def train_one_epoch(model, source, loop: Loop, epoch: int, step: int) -> tuple[dict, int]:
    """One pass over `source` (batches of (x, y, masks, guided)); with cfg["guidance"] > 0 the
    loss adds that weight x the guided rows' map mass outside their tumour box. Returns the
    epoch's training figures and the next step."""
    cfg, device = loop.cfg, loop.device
    core = train_mode(model, cfg)
    weight = float(cfg.get("guidance") or 0.0)
    sums = {"loss": 0.0, "ce": 0.0, "distill": 0.0, "outside_box": 0.0, "guided": 0, "correct": 0,
            "seen": 0}
    alpha = float(cfg.get("distill") or 0.0) if loop.teacher is not None else 0.0
    bar = tqdm(source, total=loop.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
               disable=not is_main(), file=sys.stderr, mininterval=10)
    for x, y, masks, guided in bar:
        lr = loop.set_lr(step)
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=loop.bf16):
            if weight:
                acts = core.trunk(x)
                logits, outside = box_penalty(core, acts, y, masks.to(device), guided.to(device))
            else:
                logits, outside = model(x), None
            taught = loop.teacher(x) if alpha else None
        ce = F.cross_entropy(logits.float(), y, label_smoothing=cfg["label_smoothing"])
        loss = ce
        if taught is not None:
            kd = distill_loss(logits, taught, cfg.get("distill_temperature") or 1.0)
            loss = (1 - alpha) * ce + alpha * kd
            sums["distill"] += float(kd.detach()) * len(y)
        if outside is not None:
            loss = loss + weight * outside
        if cfg.get("consistency"):              # rows: B plain, then their B views (plain_batch, painted_batch)
            loss = loss + cfg["consistency"] * consistency_loss(*logits.chunk(2))
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        loop.opt.step()
        step += 1
        n = len(y)
        sums["seen"] += n
        sums["correct"] += int((logits.argmax(1) == y).sum())
        sums["loss"] += float(loss.detach()) * n
        sums["ce"] += float(ce.detach()) * n
        if outside is not None and guided.any():
            sums["outside_box"] += float(outside.detach()) * int(guided.sum())
            sums["guided"] += int(guided.sum())
        bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}", acc=f"{sums['correct'] / sums['seen']:.3f}",
                        lr=f"{lr:.2e}")
    seen = max(1, sums["seen"])
    row = {"train_loss": sums["loss"] / seen, "train_acc": sums["correct"] / seen}
    if alpha:
        row.update(train_ce=sums["ce"] / seen, train_distill=sums["distill"] / seen)
    if weight:
        row.update(train_ce=sums["ce"] / seen, train_outside_box=sums["outside_box"] / max(1, sums["guided"]))
    return row, step


def train_head_epoch(model, feats, labels, loop: Loop, epoch: int, step: int) -> tuple[dict, int]:
    """One epoch of the head alone on precomputed pooled features (frozen-trunk recipes)."""
    cfg = loop.cfg
    model.head.train()
    rng = np.random.default_rng(cfg["seed"] * 1000 + epoch)
    seen = correct = 0
    loss_sum = 0.0
    x_all, y_all = torch.as_tensor(feats), torch.as_tensor(labels)
    for idx in batches(len(feats), cfg["batch_size"], rng, 0, 1):
        loop.set_lr(step)
        logits = model.head(x_all[idx])
        loss = F.cross_entropy(logits, y_all[idx], label_smoothing=cfg["label_smoothing"])
        loop.opt.zero_grad(set_to_none=True)
        loss.backward()
        loop.opt.step()
        step += 1
        seen += len(idx)
        correct += int((logits.argmax(1) == y_all[idx]).sum())
        loss_sum += float(loss.detach()) * len(idx)
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen}, step


def make_painter(crops: np.ndarray, boxes: list, cfg: dict) -> Painter:
    """A `train.paint.Painter` over head crops with each scan's tumour box in crop pixels."""
    log.info("%d of %d training scans have a tumour box", sum(b is not None for b in boxes), len(boxes))
    return Painter(crops, boxes, grow=cfg.get("grow") or 0.04, notumor=CLASSES.index(NO_TUMOUR))


def lesion_painter(train_s, cfg: dict, eval_preset: EvalPreset, crop_size: int):
    """(head crops (N, s, s) uint8 at `crop_size`, a `train.paint.Painter` with each scan's
    tumour box in crop pixels, from the Training boxes of tumor_boxes.csv)."""
    crops, crop_boxes = crops_and_boxes([s.path for s in train_s],
                                        replace(eval_preset, size=crop_size), cfg["workers"])
    boxes = boxes_in_crop(train_s, crop_boxes, kaggle_root(cfg["data"]), crop_size)
    return crops, make_painter(crops, boxes, cfg)


def plan_for(painter: Painter, labels: np.ndarray, cfg: dict, epoch: int) -> Plan:
    """The epoch's plan: the same for a given seed and epoch (so a resumed run repeats it)."""
    boxed = np.array([b is not None for b in painter.grown])
    return plan_epoch(labels, boxed, CLASSES.index(NO_TUMOUR), cfg.get("counterfactual") or 0.0,
                      cfg.get("paint_share") or 0.0, np.random.default_rng([cfg["seed"], epoch, 17]),
                      notumor_repeat=cfg.get("notumor_repeat") or 1, implant=cfg.get("implant") or 0.0)


@dataclass(frozen=True)
class Data:
    """The run's scans as the trainer holds them (see `load_data`)."""
    eval_preset: EvalPreset
    train_preset: TrainPreset | EvalPreset
    train: Split                 # crops at the cache size when augmenting
    val: Split                   # crops at the eval size
    painter: Painter | None      # the lesion recipes' painter, else None
    look: LookSwap | None = None  # --look-swap / --consistency: renders crops in another source's look
    weights: np.ndarray | None = None  # --source-balance: each training scan's chance of a draw


def start_run(cfg: dict) -> tuple[torch.device, Path]:
    """The device, and the output folder with args.json and the log (on rank 0)."""
    device = torch.device(cfg["device"]) if cfg.get("device") else default_device()
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    out = Path(cfg["out"])
    # Processes are forked to decode images next; the process group starts only afterwards
    # (forking after gloo starts its threads leaves ranks hanging at exit).
    if int(os.environ.get("RANK", 0)) == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "args.json").write_text(json.dumps(cfg, indent=2))
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                            handlers=[logging.FileHandler(out / "log.txt"), logging.StreamHandler()])
    return device, out


def painting(cfg: dict) -> bool:
    return bool(cfg.get("counterfactual") or cfg.get("paint_share") or cfg.get("guidance")
                or cfg.get("implant"))


def load_data(cfg: dict) -> Data:
    """Splits (brainmri.protocols), then every scan decoded and head-cropped once (cached)."""
    eval_preset = ARCHS[cfg["model"]].preset(cfg["size"])
    if cfg.get("standardise"):
        eval_preset = replace(eval_preset, standardise=True)
    if cfg.get("blur"):
        eval_preset = replace(eval_preset, blur=float(cfg["blur"]))
    framing = {"scale": tuple(cfg["scale"])} if cfg.get("scale") else {}
    train_preset = TrainPreset(eval=eval_preset, **framing) if cfg["augment"] else eval_preset
    pack = Pack.read(cfg["data"]) if is_pack(cfg["data"]) else None
    if pack is not None:
        pack.check(cfg)
        train_s, val_s, sources = pack.train, pack.val, pack.sources
    else:
        splits = run_splits(cfg["data"], cfg)
        train_s, val_s, sources = splits.train, splits.val, splits.sources
    keep_t, keep_v = np.arange(len(train_s)), np.arange(len(val_s))
    if cfg.get("limit"):
        # Painting needs every class in the subset: take evenly spaced scans then.
        every = max(1, len(train_s) // cfg["limit"]) if painting(cfg) else 1
        keep_t, keep_v = keep_t[::every][:cfg["limit"]], keep_v[:max(8, cfg["limit"] // 4)]
        train_s, val_s = [train_s[i] for i in keep_t], [val_s[i] for i in keep_v]
    log.info("train %d, val %d images (copies dropped; validation carved by duplicate groups)%s",
             len(train_s), len(val_s), f", from the pack {cfg['data']}" if pack is not None else "")
    cache = Path(".cache")
    std = eval_preset.cache_tag          # standardised or blurred crops cached apart
    crop_size = train_preset.cache_size if cfg["augment"] else cfg["size"]
    t0 = time.time()
    painter = None
    if painting(cfg) and not isinstance(train_preset, TrainPreset):
        raise SystemExit("--counterfactual/--paint-share/--guidance/--implant need --augment 1")
    fingerprints = (None, None)
    if pack is not None:
        train_crops = resized(pack.train_crops[keep_t], crop_size)
        val_crops = resized(pack.val_crops[keep_v], cfg["size"])
        if painting(cfg):
            painter = make_painter(train_crops, pack.boxes_at(keep_t, crop_size), cfg)
        fingerprints = (pack.fingerprint("train", keep_t), pack.fingerprint("val", keep_v))
    elif painting(cfg):
        train_crops, painter = lesion_painter(train_s, cfg, eval_preset, crop_size)
    else:
        train_crops = load_crops([s.path for s in train_s], eval_preset, crop_size, cfg["workers"],
                                 cache / f"crops-{fingerprint(train_s)['sha256']}-{crop_size}{std}.npy")
    if pack is None:
        val_crops = load_crops([s.path for s in val_s], eval_preset, cfg["size"], cfg["workers"],
                               cache / f"crops-{fingerprint(val_s)['sha256']}-{cfg['size']}{std}.npy")
    log.info("decoded and cropped in %.0f s", time.time() - t0)
    labels = [np.array([s.label for s in ss], np.int64) for ss in (train_s, val_s)]
    look, weights = None, None
    if cfg.get("look_swap") or cfg.get("consistency"):
        look = LookSwap.fit(train_crops, [sources[str(s.path)] for s in train_s],
                            float(cfg.get("look_swap") or 0.0))
    if cfg.get("source_balance"):
        weights = balanced_draws(labels[0], [sources[str(s.path)] for s in train_s], painter)
    return Data(eval_preset, train_preset, Split(train_s, train_crops, labels[0], fingerprints[0]),
                Split(val_s, val_crops, labels[1], fingerprints[1]), painter, look, weights)


def make_optimizer(model: Classifier, cfg: dict) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW over the trainable parameters; no weight decay on biases and
    batch-norm parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    return (torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=True)
            if cfg["optimizer"] == "sgd" else torch.optim.AdamW(groups, lr=cfg["lr"]))


def epoch_length(data: Data, cfg: dict, world: int) -> tuple[int, dict | None]:
    """(samples an epoch, train.prior's correction or None). A painted epoch is every scan plus
    its counterfactuals; --prior-correct undoes the prior that plan adds."""
    if cfg.get("prior_correct") and data.painter is None:
        raise SystemExit("--prior-correct undoes the painting plan's prior: it needs --counterfactual")
    if data.painter is not None and world > 1:
        raise SystemExit("painting and guidance train on one process (no torchrun)")
    if data.painter is None:
        return len(data.train.crops), None
    plan0 = plan_for(data.painter, data.train.labels, cfg, 0)
    shift = None
    if cfg.get("prior_correct"):
        shift = prior.correction(data.train.labels, plan0.label, len(CLASSES))
        log.info("prior correction: %s", json.dumps(shift))
    return len(plan0), shift


@dataclass
class Progress:
    """Where a run stands: resumed from `last_state.pt` when the folder holds one."""
    history: list = field(default_factory=list)
    start_epoch: int = 0
    step: int = 0
    best: dict = field(default_factory=lambda: {"val_acc": -1.0, "val_loss": float("inf"), "epoch": -1})
    best_state: dict | None = None
    average: dict | None = None   # --average-from: the mean of the epochs' weights so far
    averaged: int = 0             # how many epochs that mean holds

    @classmethod
    def resume(cls, out: Path, model: Classifier, opt: torch.optim.Optimizer) -> "Progress":
        state_path = out / "last_state.pt"
        if not state_path.is_file():
            return cls()
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        log.info("resumed after epoch %d", state["epoch"] + 1)
        return cls(json.loads((out / "history.json").read_text()), state["epoch"] + 1, state["step"],
                   json.loads((out / "best.json").read_text()), average=state.get("average"),
                   averaged=state.get("averaged", 0))

    def add_to_average(self, state: dict) -> None:
        """Fold one epoch's weights into the running mean (integer buffers: the latest)."""
        self.averaged += 1
        if self.average is None:
            self.average = {k: v.detach().clone().float() if v.is_floating_point() else v.clone()
                            for k, v in state.items()}
            return
        for k, v in state.items():
            if v.is_floating_point():
                self.average[k] += (v.detach().float() - self.average[k]) / self.averaged
            else:
                self.average[k] = v.clone()

    def record(self, row: dict, model: Classifier, cfg: dict, out: Path, opt) -> None:
        """Log the epoch's row, keep the weights the keep rule picks, save the state to resume."""
        self.history.append(row)
        log.info(json.dumps(row))
        val_acc, val_loss, epoch = row["val_acc"], row["val_loss"], row["epoch"]
        better = (val_acc, -val_loss) > (self.best["val_acc"], -self.best["val_loss"])
        if (epoch == cfg["epochs"]) if cfg.get("keep") == "last" else better:
            self.best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch}
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            torch.save(self.best_state, out / "best_state.pt")
        if cfg.get("average_from") and epoch >= cfg["average_from"]:
            self.add_to_average(model.state_dict())
        (out / "history.json").write_text(json.dumps(self.history, indent=1))
        (out / "best.json").write_text(json.dumps(self.best))
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch - 1,
                    "step": self.step, "average": self.average, "averaged": self.averaged},
                   out / "last_state.pt")


def epoch_batches(data: Data, cfg: dict, epoch: int, first: bool, rank: int, world: int,
                  pin: bool = False) -> torch.utils.data.DataLoader:
    """The epoch's batches (the painting plan's, or the plain augmented crops'), each built from
    seeds of (seed, epoch, rank, batch), by cfg["loader_workers"] processes."""
    rng = np.random.default_rng(cfg["seed"] * 1000 + epoch)
    acquisition = ACQUISITIONS[cfg.get("acquisition_kind") or "standard"] if cfg.get("acquisition") else None
    key = (cfg["seed"], epoch, rank)
    if data.painter is None:
        chunks = list(batches(len(data.train.crops), cfg["batch_size"], rng, rank, world, data.weights))
        make = partial(plain_batch, data.train.crops, data.train.labels, data.train_preset, cfg,
                       acquisition, data.look)
    else:
        plan = plan_for(data.painter, data.train.labels, cfg, epoch)
        if first:
            log.info("epoch plan (kind: label counts): %s", json.dumps(plan.counts(CLASSES)))
        chunks = [range(s, min(len(plan), s + cfg["batch_size"]))
                  for s in range(0, len(plan), cfg["batch_size"])]
        make = partial(painted_batch, data.painter, plan, data.train_preset, acquisition, cfg, data.look)
    return loader(EpochBatches(make, chunks, key), int(cfg.get("loader_workers") or 0), pin)


def fit(model, net, data: Data, loop: Loop, progress: Progress, out: Path, rank: int, world: int) -> None:
    """Every epoch from where `progress` stands: train, score on validation (rank 0), record."""
    cfg, device = loop.cfg, loop.device
    head_only = cfg["freeze"] == "all-but-head" and not cfg["augment"]
    if head_only:
        # The trunk is frozen and inputs are not augmented: its pooled features are the same
        # every epoch, so compute them once and train the head on them (same maths).
        log.info("head-only recipe: computing frozen features once")
        _, train_feats = predict_crops(model, data.train.crops, data.eval_preset, device, head_input=True)
        _, val_feats = predict_crops(model, data.val.crops, data.eval_preset, device, head_input=True)
    for epoch in range(progress.start_epoch, cfg["epochs"]):
        t = time.time()
        if head_only:
            train_row, progress.step = train_head_epoch(model, train_feats, data.train.labels, loop,
                                                        epoch, progress.step)
        else:
            source = epoch_batches(data, cfg, epoch, epoch == progress.start_epoch, rank, world,
                                   pin=device.type == "cuda")
            train_row, progress.step = train_one_epoch(net, source, loop, epoch, progress.step)
        if not is_main():
            continue
        if head_only:
            with torch.no_grad():
                logits = model.head(torch.as_tensor(val_feats).to(device)).cpu().numpy()
        else:
            logits, _ = predict_crops(model, data.val.crops, data.eval_preset, device)
        val_acc, val_loss = scores(logits, data.val.labels)
        progress.record({"epoch": epoch + 1, **train_row, "val_loss": val_loss, "val_acc": val_acc,
                         "seconds": round(time.time() - t, 1)}, model, cfg, out, loop.opt)


def teacher(cfg: dict, data: Data, device: torch.device) -> Teacher | None:
    """--teacher's `train.distill.Teacher`, its split checked against this run's; None without."""
    if not cfg.get("teacher"):
        if cfg.get("distill"):
            raise SystemExit("--distill needs --teacher")
        return None
    if not cfg.get("distill"):
        raise SystemExit("--teacher needs --distill (the weight of its answers)")
    if cfg.get("limit"):
        raise SystemExit("--teacher with --limit: the validation subset cannot be checked against "
                         "the teacher's split")
    found = Teacher(cfg["teacher"], data.eval_preset, device)
    found.check(cfg, {c: int((data.val.labels == i).sum()) for i, c in enumerate(CLASSES)})
    return found


def averaged_weights(model: Classifier, progress: Progress, data: Data, cfg: dict, device) -> dict:
    """--average-from: the mean of the epochs' weights, its batch-norm statistics recomputed
    over one more epoch of training batches (the layers learnt to read augmented batches)."""
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in progress.average.items()})
    n = recompute_bn(model, (x.to(device) for x, *_ in epoch_batches(data, cfg, cfg["epochs"], False, 0, 1)))
    log.info("kept the mean of %d epochs' weights; %d batch-norms' statistics recomputed",
             progress.averaged, n)
    return model.state_dict()


def kept_weights(model: Classifier, progress: Progress, cfg: dict, out: Path) -> dict:
    """The state dict the keep rule chose (after a resume: from best_state.pt); with no epoch
    to train, the --init weights as they are."""
    if progress.best_state is not None:
        return progress.best_state
    if cfg["epochs"] == 0:
        return model.state_dict()
    return torch.load(out / "best_state.pt", map_location="cpu", weights_only=True)


def main(args: argparse.Namespace) -> Path:
    cfg = resolve(args)
    if cfg.get("average_from") is not None and not 1 <= cfg["average_from"] <= cfg["epochs"]:
        raise SystemExit(f"--average-from {cfg['average_from']}: no such epoch among "
                         f"--epochs {cfg['epochs']}")
    if cfg.get("stage") == "tail":               # fine-tune a checkpoint's tail on cached maps
        return dilate.main(cfg)
    device, out = start_run(cfg)
    torch.manual_seed(cfg["seed"])
    data = load_data(cfg)
    rank, world = setup_distributed(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    model, arch_kwargs = make_model(cfg)
    apply_freeze(model, frozen_blocks(cfg))
    model = model.to(device).to(memory_format=torch.channels_last)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = make_optimizer(model, cfg)
    n_epoch, prior_shift = epoch_length(data, cfg, world)
    steps_per_epoch = math.ceil(n_epoch / world / cfg["batch_size"])
    loop = Loop(cfg, opt, device, use_bf16(device, cfg.get("precision", "auto")), steps_per_epoch,
                steps_per_epoch * cfg["epochs"], int(cfg["warmup_epochs"] * steps_per_epoch),
                teacher(cfg, data, device))
    if cfg.get("check"):
        log.info("check: %d samples, %d steps an epoch, %d epochs; stopped before the first step",
                 n_epoch, steps_per_epoch, cfg["epochs"])
        return out
    progress = Progress.resume(out, model, opt)
    log.info("precision: %s autocast on %s", "bf16" if loop.bf16 else "no", device)
    mixing = (MixStyle(cfg["mixstyle"], seed=cfg["seed"]).attach(
        model, mixstyle_blocks(ARCHS[cfg["model"]].stages)) if cfg.get("mixstyle") else [])
    fit(model, net, data, loop, progress, out, rank, world)
    for handle in mixing:
        handle.remove()
    if world > 1:
        # DDP averages gradients, so parameters agree; batch-norm running statistics are only
        # broadcast at the next forward, so after the last step every rank has its own: sync.
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
        if cfg.get("rank_weights"):
            save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                      str(out / f"final-rank{rank}.safetensors"))
    path = out / "model.safetensors"
    if is_main():
        model.load_state_dict(averaged_weights(model, progress, data, cfg, device) if cfg.get("average_from")
                              else kept_weights(model, progress, cfg, out))
        run = Run(cfg, arch_kwargs, data.eval_preset, data.train_preset, progress.history,
                  progress.best, world, prior_shift)
        path = finalise(model, run, data.train, data.val, device, out)
    if world > 1:
        dist.barrier()                # the other ranks wait here while rank 0 writes the checkpoint
        dist.destroy_process_group()
    return path
