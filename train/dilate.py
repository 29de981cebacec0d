"""The trainer's cached-tail stage: fine-tune a trained model's last stage(s) and head on
cached maps of the frozen blocks, optionally dilating the last stage (`Arch.dilation`).

    python -m train --recipe dilate --data ../shared/data --out runs/dilate        # stage 3
    python -m train --recipe dilate --outside-weight 1.0 --init CKPT ...            # stage 4
    python -m train --recipe dilate --train-blocks layer3-4 --outside-weight 1.0 \\
        --finer-weight 1.0 --epochs 1 --init CKPT ...                               # stage 5

`train.train.main` calls `main(cfg)` for a recipe with `stage="tail"` (`train.recipes`).

With dilation instead of stride in layer4 (torchvision's `replace_stride_with_dilation`),
the last block's map, which every CAM method upsamples, has output stride 16: 12x12 at
192 px instead of 6x6. The weights keep their shapes; layer4 and the head are fine-tuned so
they work at the new spacing, with the recipe's loss (cross-entropy, label smoothing).

conv1..layer3 stay frozen (and in eval mode), so their output is computed once for every
scan and its mirror image, and layer4 trains on those cached maps (each epoch sees every
scan once, mirrored or not at random), so an epoch costs the tail's passes only. The tumour boxes are not a training target (PROVENANCE.md): they are only read to
report, per epoch, how often the true class's map peaks inside the box of a validation scan.
The checkpoint is written as `train.train` writes one (temperature on validation, OOD
detector), with the arguments and history; the epoch kept is the last one, a rule fixed
before training.

`--outside-weight W` adds W x the share of the true class's layer4 Layer-CAM mass that lies
outside the head to the loss (Ross et al. 2017, "right for the right reasons", with a mask
the scan itself gives: `localisation.head_mask` thresholded from each crop, no boxes).

`--train-blocks layer3-4` fine-tunes layer3 too, on cached layer2 maps, with batch-norm
statistics frozen (so the gradients trained are the ones CAM methods see at inference);
`--finer-weight W` then adds W x the same share for the true class's Layer-CAM on layer2's
output, the finer map of "Layer-CAM, 2 layers", whose gradient comes through layer3 and
layer4 (a second-order term: the step costs a few forward passes).

`--device` picks where it trains (default: CUDA when present); the cached maps stay in host
memory in half precision and each batch moves to the device. `--init` is the checkpoint to
start from; its split (data, seed, validation fraction) is kept.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from brainmri import cam as cams
from brainmri import localisation as loc
from brainmri.checkpoint import load_checkpoint
from brainmri.classes import NO_TUMOUR
from brainmri.models import ARCHS, Arch, build_model
from brainmri.predictor import default_device
from brainmri.presets import EvalPreset
from brainmri.protocols import kaggle_root, run_splits, split_seed_of

from brainmri.boxes import box_for, boxes_csv, load_boxes

from .core import Run, Split, box_in_input, crops_and_boxes, finalise, lr_at

log = logging.getLogger("train.dilate")
# --train-blocks -> how many of the trunk's last stages are fine-tuned (the names are the
# ResNet stages the runs in logs/ recorded: the last one, or the last two).
TRAIN_BLOCKS = {"layer4": 1, "layer3-4": 2}


def frozen_blocks(arch: Arch, train_blocks: str) -> int:
    """How many leading trunk blocks stay frozen when the last `TRAIN_BLOCKS[train_blocks]`
    stages of `arch` train (for ResNet-50: conv1 .. layer3, or .. layer2)."""
    stages = list(dict.fromkeys(arch.stages))
    return arch.blocks_before(stages[-TRAIN_BLOCKS[train_blocks]])


def add_arguments(p) -> None:
    """The stage's flags on the trainer's parser (defaults come from the recipe)."""
    p.add_argument("--dilate", type=int, choices=[0, 1],
                   help="tail stage: trade the last stage's stride for dilation (0: keep it)")
    p.add_argument("--train-blocks", choices=sorted(TRAIN_BLOCKS),
                   help="tail stage: blocks fine-tuned (the ones before are frozen and their output cached)")
    p.add_argument("--outside-weight", type=float,
                   help="tail stage: weight of the penalty on the true class's last-block Layer-CAM "
                        "mass outside the head")
    p.add_argument("--finer-weight", type=float,
                   help="tail stage: weight of the same penalty on the finer map, the tail's input "
                        "(needs --train-blocks layer3-4)")
    p.add_argument("--tolerance", type=float,
                   help="tail stage: pointing-game tolerance for the validation figure, share of the side")


def class_maps(model, acts: torch.Tensor, labels: torch.Tensor, positive: bool = False) -> torch.Tensor:
    """(B, K, h, w) layer4 output -> (B, h, w) CAM of each sample's class (head weights; with
    `positive`, only the channels whose weight is positive)."""
    weight = model.head.weight[labels]                                 # (B, K)
    return torch.einsum("bk,bkhw->bhw", weight.clamp(min=0) if positive else weight, acts)


def outside_cells(crops: np.ndarray, side: int) -> torch.Tensor:
    """(N, S, S) uint8 head crops -> (N, side, side) float32: the share of each cell of a
    side x side map that lies outside the head (`localisation.head_mask` of the crop)."""
    cells = [cv2.resize((~loc.head_mask(c)).astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
             for c in crops]
    return torch.from_numpy(np.stack(cells)) if cells else torch.zeros(0, side, side)


def outside_share(model, acts: torch.Tensor, labels: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """(B,) share of each sample's last-block Layer-CAM mass (true class) on `outside` cells.

    With a global-average-pool + linear head, the logit's gradient is the class weight at every
    position, so Layer-CAM of the last block is sum_k relu(w_k) A_k (A >= 0 after the block's
    ReLU), up to a constant that the share cancels.
    """
    return mass_share(class_maps(model, acts, labels, positive=True), outside)


def mass_share(cam: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
    """(B, h, w) non-negative maps and outside shares of their cells -> (B,) mass share outside."""
    return (cam * outside).sum((1, 2)) / cam.sum((1, 2)).clamp(min=1e-8)


def input_layercam(model, tail, x: torch.Tensor, labels: torch.Tensor, create_graph: bool = False):
    """Layer-CAM of the true class on the tail's input, as the app's "Layer-CAM, 2 layers"
    computes its finer map (pytorch-grad-cam's LayerCAM, sum over channels of relu(gradient) x
    activation, a gradient on one stride-2 lattice spread over its 2x2 cells as
    `cam.spread_lattice` does) -> (logits, tail output, (B, h, w) map, not yet scaled).
    With `create_graph` the map stays differentiable in the tail's and head's weights."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        acts = tail(x)
        logits = model.classify(acts)
        grads, = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), x, create_graph=create_graph)
    cells = cams.lattice_cells((grads.detach().abs().sum((0, 1)) > 0).cpu().numpy())
    if cells is not None:
        rows, cols = (torch.as_tensor(c, device=grads.device) for c in cells)
        grads = grads[:, :, rows][:, :, :, cols]
    return logits, acts, (grads.clamp(min=0) * x).sum(1)


@torch.no_grad()
def frozen_features(model, crops: np.ndarray, preset: EvalPreset, flip: bool, batch: int = 32,
                    frozen: int | None = None):
    """Output of trunk[:frozen] (default: all but the last block; ResNet-50's layer3:
    (N, 1024, h, w)) float16 for each crop (mirrored with `flip`)."""
    stem = model.trunk[:len(model.trunk) - 1 if frozen is None else frozen].eval()
    device = next(stem.parameters()).device
    out = []
    for s in range(0, len(crops), batch):
        x = torch.stack([preset.from_crop(c) for c in crops[s:s + batch]]).to(device)
        if flip:
            x = x.flip(-1)
        out.append(stem(x.contiguous(memory_format=torch.channels_last)).half().cpu())
    return torch.cat(out)


@dataclass(frozen=True)
class Validation:
    """The validation scans as `validate` reads them."""
    feats: torch.Tensor                      # (N, K, h, w) float16: the frozen blocks' output
    labels: torch.Tensor                     # (N,) class indices
    boxes: list                              # per scan, its tumour box in input pixels, or None
    outside: torch.Tensor                    # (N, h', w') outside-head share of each last-map cell
    finer_outside: torch.Tensor | None = None   # the same on the tail's input map


@torch.no_grad()
def validate(model, tail, val: Validation, size: int, tol: float) -> dict:
    """Accuracy, loss, how often the true class's map (upsampled to the input) peaks inside
    its box grown by `tol` of the side (a quick stand-in for `studies.explain_eval`), and the
    mean `outside_share` of the last block's Layer-CAM (and, given `val.finer_outside`, of the
    Layer-CAM on the tail's input). Batches go to the model's device; the figures come back."""
    feats, labels, boxes_px, outside, finer_outside = (val.feats, val.labels, val.boxes,
                                                        val.outside, val.finer_outside)
    tail.eval()
    device = next(tail.parameters()).device
    logits, hits, shares, finer = [], [], [], []
    for s in range(0, len(feats), 64):
        x, lab = feats[s:s + 64].float().to(device), labels[s:s + 64].to(device)
        if finer_outside is not None:
            out, acts, cam = input_layercam(model, tail, x, lab)
            out, acts = out.detach(), acts.detach()
            finer.append(mass_share(cam, finer_outside[s:s + 64].to(device)).cpu())
        else:
            acts = tail(x)
            out = model.classify(acts)
        logits.append(out.cpu())
        shares.append(outside_share(model, acts, lab, outside[s:s + 64].to(device)).cpu())
        maps = F.interpolate(class_maps(model, acts, lab)[:, None], size=(size, size),
                             mode="bilinear", align_corners=False)[:, 0].cpu()
        for m, b in zip(maps, boxes_px[s:s + 64]):
            if b is not None:
                box = (math.floor(b[0]), math.floor(b[1]), math.ceil(b[2]), math.ceil(b[3]))
                hits.append(loc.pointing_game(m.numpy(), box, round(tol * size)))
    logits = torch.cat(logits)
    return {"val_acc": float((logits.argmax(1) == labels).float().mean()),
            "val_loss": float(F.cross_entropy(logits, labels)),
            "val_pointing": float(np.mean(hits)) if hits else None,
            "val_outside_head": float(torch.cat(shares).mean()),
            **({"val_outside_head_finer": float(torch.cat(finer).mean())} if finer else {})}


def resolve(cfg: dict, meta: dict, size: int) -> dict:
    """This run's settings; the split (data, seed, val_fraction) is the starting checkpoint's,
    whose own arguments are kept under `init_args`."""
    init, arch = meta["args"], ARCHS[meta["arch"]]
    stages = list(dict.fromkeys(arch.stages))
    last_frozen = stages[-TRAIN_BLOCKS[cfg["train_blocks"]] - 1]
    return {**cfg, "dilate": bool(cfg["dilate"]), "model": arch.name, "init": str(cfg["init"]),
            "size": size, "augment": "mirror",
            "freeze": f"{stages[0]}..{last_frozen}" + ("" if cfg["train_blocks"] == "layer4"
                                                      else ", batch-norm statistics"),
            "optimizer": "sgd",
            "schedule": "cosine", "val_fraction": init["val_fraction"],
            "split_seed": split_seed_of(init), "init_args": init}


@dataclass(frozen=True)
class Start:
    """The model to fine-tune, built from the starting checkpoint, and the run's settings."""
    model: torch.nn.Module
    frozen: int                  # leading trunk blocks frozen; their output is cached
    arch_kwargs: dict
    preset: EvalPreset
    device: torch.device
    cfg: dict                    # resolved (`resolve`), saved as args.json

    @property
    def tail(self) -> torch.nn.Module:
        return self.model.trunk[self.frozen:]


def start_from(cfg: dict, out: Path) -> Start:
    """Load `cfg["init"]`, rebuild it dilated or not, freeze its leading blocks; write args.json."""
    start, meta = load_checkpoint(cfg["init"])
    arch = ARCHS[meta["arch"]]
    if cfg["dilate"] and arch.dilation is None:
        raise SystemExit(f"{cfg['init']} is a {arch.name}, which declares no dilation of its "
                         "last stage: use --dilate 0")
    arch_kwargs = dict(meta["arch_kwargs"])
    if arch.dilation is not None:
        arch_kwargs[arch.dilation] = bool(cfg["dilate"])
    model = build_model(arch.name, num_classes=len(meta["classes"]), **arch_kwargs)
    model.load_state_dict(start.state_dict())
    model.eval()                    # batch-norm statistics move only where training says so
    device = torch.device(cfg["device"]) if cfg.get("device") else default_device()
    model.to(device)
    preset = EvalPreset.from_dict(meta["preset"])
    cfg = {**resolve(cfg, meta, preset.size), "device": str(device)}
    (out / "args.json").write_text(json.dumps(cfg, indent=2))
    frozen = frozen_blocks(arch, cfg["train_blocks"])
    for p in model.trunk[:frozen].parameters():
        p.requires_grad_(False)
    return Start(model, frozen, arch_kwargs, preset, device, cfg)


@dataclass(frozen=True)
class Cached:
    """The training scans as the stage reads them: each scan's frozen-block output as itself
    and mirrored, labels, and the outside-head share of every map cell."""
    train: Split
    feats: torch.Tensor                  # (2N, K, h, w) float16: N scans, then their mirrors
    labels: torch.Tensor                 # (2N,)
    outside: torch.Tensor                # (2N, h', w') on the last block's map
    finer: torch.Tensor | None           # (2N, h, w) on the tail's input map (layer3-4 only)
    val: Split
    validation: Validation


def cache(s: Start) -> Cached:
    """Head crops of the starting checkpoint's split, and the frozen blocks' output, once."""
    cfg, preset, size = s.cfg, s.preset, s.preset.size
    splits = run_splits(cfg["data"], cfg)
    train_s, val_s = splits.train, splits.val
    if cfg["limit"]:
        train_s, val_s = train_s[:cfg["limit"]], val_s[:max(8, cfg["limit"] // 4)]
    root = kaggle_root(cfg["data"])
    csv = boxes_csv(root)
    boxes = load_boxes(csv) if csv.is_file() else {}          # only for the validation report
    t0 = time.time()
    train_crops, _ = crops_and_boxes([x.path for x in train_s], preset, cfg["workers"])
    val_crops, val_boxes = crops_and_boxes([x.path for x in val_s], preset, cfg["workers"])
    found = [box_for(x.path, root, boxes) if cb is not None and x.class_name != NO_TUMOUR else None
             for x, cb in zip(val_s, val_boxes)]
    val_px = [box_in_input(f[0], cb, size) if f else None for f, cb in zip(found, val_boxes)]
    log.info("train %d scans, val %d (%d with boxes, for the report); crops in %.0f s",
             len(train_s), len(val_s), sum(b is not None for b in val_px), time.time() - t0)
    t0 = time.time()
    feats = torch.cat([frozen_features(s.model, train_crops, preset, False, frozen=s.frozen),
                       frozen_features(s.model, train_crops, preset, True, frozen=s.frozen)])
    val_feats = frozen_features(s.model, val_crops, preset, False, frozen=s.frozen)
    y = torch.tensor([x.label for x in train_s] * 2)
    y_val = torch.tensor([x.label for x in val_s])
    log.info("trunk[:%d] maps %s cached in %.0f s", s.frozen, tuple(feats.shape), time.time() - t0)
    with torch.no_grad():
        side = s.tail(feats[:1].float().to(s.device)).shape[-1]
    outside = outside_cells(train_crops, side)
    finer = val_finer = None
    if cfg["train_blocks"] == "layer3-4":                     # the finer map: the tail's input
        finer = outside_cells(train_crops, feats.shape[-1])
        finer = torch.cat([finer, finer.flip(-1)])
        val_finer = outside_cells(val_crops, feats.shape[-1])
    return Cached(Split(train_s, train_crops, y[:len(train_s)].numpy()), feats, y,
                  torch.cat([outside, outside.flip(-1)]), finer,          # the mirrored copies' masks
                  Split(val_s, val_crops, y_val.numpy()),
                  Validation(val_feats, y_val, val_px, outside_cells(val_crops, side), val_finer))


def tail_step(s: Start, data: Cached, idx: torch.Tensor):
    """(loss, logits, cross-entropy, outside share, finer share) of one batch of cached maps."""
    cfg, device = s.cfg, s.device
    x, yb = data.feats[idx].float().to(device), data.labels[idx].to(device)
    if data.finer is not None:
        logits, acts, cam = input_layercam(s.model, s.tail, x, yb, create_graph=bool(cfg["finer_weight"]))
        finer_share = mass_share(cam, data.finer[idx].to(device)).mean()
    else:
        acts = s.tail(x)
        logits = s.model.classify(acts)
        finer_share = torch.zeros((), device=device)
    loss = ce = F.cross_entropy(logits, yb, label_smoothing=cfg["label_smoothing"])
    share = outside_share(s.model, acts, yb, data.outside[idx].to(device)).mean()
    if cfg["outside_weight"]:
        loss = loss + cfg["outside_weight"] * share
    if cfg["finer_weight"]:
        loss = loss + cfg["finer_weight"] * finer_share
    return loss, logits, yb, ce, share, finer_share


def fit_tail(s: Start, data: Cached, out: Path) -> list[dict]:
    """Every epoch: each scan once, as itself or mirrored at random; the history, per epoch."""
    cfg = s.cfg
    params = [p for p in s.model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg["weight_decay"]},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=True)
    n = len(data.feats) // 2
    total = math.ceil(n / cfg["batch_size"]) * cfg["epochs"]

    def report():
        return validate(s.model, s.tail, data.validation, s.preset.size, cfg["tolerance"])

    history = [{"epoch": 0, **report()}]
    log.info(json.dumps(history[-1]))
    gen = torch.Generator().manual_seed(cfg["seed"])
    step = 0
    for epoch in range(cfg["epochs"]):
        t = time.time()
        # the last stage alone trains with batch statistics (as stage 4 did); two keep them frozen.
        s.tail.train(cfg["train_blocks"] == "layer4")
        order = torch.randperm(n, generator=gen) + n * torch.randint(0, 2, (n,), generator=gen)
        sums = np.zeros(6)
        for start in range(0, len(order), cfg["batch_size"]):
            idx = order[start:start + cfg["batch_size"]]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, 0, cfg["lr"], "cosine")
            loss, logits, yb, ce, share, finer_share = tail_step(s, data, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            sums += [loss.item() * len(idx), (logits.argmax(1) == yb).sum().item(), len(idx),
                     share.item() * len(idx), finer_share.item() * len(idx), ce.item() * len(idx)]
        # train_loss: the whole objective (cross-entropy + weighted penalties); train_ce: its first term.
        history.append({"epoch": epoch + 1, "train_loss": sums[0] / sums[2], "train_ce": sums[5] / sums[2],
                        "train_acc": sums[1] / sums[2], "train_outside_head": sums[3] / sums[2],
                        **({"train_outside_head_finer": sums[4] / sums[2]} if data.finer is not None else {}),
                        **report(), "seconds": round(time.time() - t, 1)})
        log.info(json.dumps(history[-1]))
        (out / "history.json").write_text(json.dumps(history, indent=1))
    return history


def main(cfg: dict) -> Path:
    """Run the stage on a resolved trainer configuration (`train.train.resolve`); the epoch kept
    is the last one."""
    if cfg["finer_weight"] and cfg["train_blocks"] != "layer3-4":
        raise SystemExit("--finer-weight needs --train-blocks layer3-4 (the penalised map is layer3's input)")
    if not cfg.get("init"):
        raise SystemExit("the tail stage fine-tunes a trained checkpoint: give --init")
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "log.txt"), logging.StreamHandler()])
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    s = start_from(cfg, out)
    data = cache(s)
    history = fit_tail(s, data, out)
    s.model.eval()
    last = history[-1]
    best = {"val_acc": last["val_acc"], "val_loss": last["val_loss"], "epoch": last["epoch"]}
    cfg = {**s.cfg, "val_pointing": last["val_pointing"], "val_outside_head": last["val_outside_head"]}
    run = Run(cfg, s.arch_kwargs, s.preset, s.preset, history, best)
    return finalise(s.model, run, data.train, data.val, s.device, out)
