"""Training packs: what a run needs, in files small enough to travel to a machine without the
data folder (a lent GPU machine receives 64 MiB of the working tree: docs/training.md).

    python -m train.pack data --data ../shared/data --size 192 --out .gpu/pack.npz
    python -m train --recipe lesion --data .gpu/pack.npz --out runs/x ...     # trains from it
    python -m train.pack weights --out .gpu/imagenet-int8.safetensors        # ImageNet, 8-bit
    python -m train.pack restore .gpu/imagenet-int8.safetensors              # there, before training
    python -m train.pack checkpoint checkpoints/resnet50.safetensors --out .gpu/teacher-int8.safetensors
    python -m train.pack restore .gpu/teacher-int8.safetensors --out /tmp/teacher.safetensors

A data pack holds one protocol's splits (`brainmri.protocols.build_splits` with the pack's
validation share, seed and held-out source): every training scan's head crop at the training
cache size of `--size` with its tumour box in crop pixels (Training boxes only, as
`train.train` uses them) and source, every validation scan's crop at `--size`, as JPEG, and the
splits' fingerprints. A run asking for another size gets the crops resized; a run whose
protocol differs from the pack's is refused.

The weights pack rounds the ImageNet ResNet-50 (`brainmri.imagenet`) to 8 bits per output
channel for every kernel of at least `--min-elements` values (the stem's and layer1's kernels
stay in float16, batch-norm parameters and statistics in float32), half its float16 size;
`restore` writes the float32 state where `brainmri.imagenet` finds it. A run started from
restored weights starts from ImageNet up to that rounding (measured in docs/training.md), on
kernels the shipped recipes then train. `checkpoint` rounds a trained checkpoint the same way
and keeps its metadata, so a teacher for `train.distill` travels and its split still checks;
`restore --out` writes it back as a checkpoint.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from brainmri.boxes import box_for, boxes_csv, load_boxes
from brainmri.checkpoint import load_checkpoint
from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.data import Sample, fingerprint, load_crops
from brainmri.presets import EvalPreset, TrainPreset
from brainmri.protocols import VAL_FRACTION, build_splits, held_classes, kaggle_root, split_seed_of

from .core import box_in_input, crops_and_boxes

FORMAT = "brainmri-train-pack/1"
ROUNDED = "imagenet-int8-per-channel"
ROUNDED_CHECKPOINT = "checkpoint-int8-per-channel"


def is_pack(data: str | Path) -> bool:
    return Path(data).suffix == ".npz" and Path(data).is_file()


def boxes_in_crop(samples: list[Sample], crop_boxes, root: Path, crop_size: int) -> list:
    """Each training scan's tumour box in head-crop pixels at `crop_size` (None: no tumour, no
    box, or its box outside the crop). Only Training boxes may train (PROVENANCE.md)."""
    boxes = load_boxes(boxes_csv(root))
    out = []
    for s, cb in zip(samples, crop_boxes):
        found = box_for(s.path, root, boxes) if cb is not None and s.class_name != NO_TUMOUR else None
        if found is not None and "Training/" not in s.path.as_posix():
            raise ValueError(f"{s.path}: only Training boxes may train (PROVENANCE.md)")
        out.append(box_in_input(found[0], cb, crop_size) if found else None)
    return out


def _encode(crops: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    blobs = [cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].ravel() for c in crops]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return np.concatenate(blobs).astype(np.uint8), offsets


def _decode(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.stack([cv2.imdecode(blob[offsets[i]:offsets[i + 1]], cv2.IMREAD_GRAYSCALE)
                     for i in range(len(offsets) - 1)])


def resized(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, s, s) uint8 crops at (N, size, size), by `EvalPreset.resize`."""
    if crops.shape[1] == size:
        return crops
    preset = EvalPreset(size=size)
    return np.stack([preset.resize(c) for c in crops])


def protocol_of(cfg: dict) -> dict:
    held = held_classes(cfg)
    return {"val_fraction": float(cfg["val_fraction"]), "seed": split_seed_of(cfg),
            "holdout_source": cfg.get("holdout_source"),
            "holdout_classes": sorted(held) if held else None}


def write_pack(data: str | Path, out: Path, size: int, cfg: dict, quality: int = 90,
               workers: int = 2) -> dict:
    """Pack the protocol of `cfg` (`protocol_of`) of the data folder `data`; returns its meta.
    Head crops do not depend on the architecture (only normalisation does, applied later)."""
    eval_preset = EvalPreset(size=size)
    cache_size = TrainPreset(eval=eval_preset).cache_size
    protocol = protocol_of(cfg)
    splits = build_splits(data, protocol["val_fraction"], protocol["seed"],
                          holdout_source=protocol["holdout_source"],
                          holdout_classes=protocol["holdout_classes"])
    train_crops, crop_boxes = crops_and_boxes([s.path for s in splits.train],
                                              EvalPreset(size=cache_size), workers)
    root = kaggle_root(data)
    # No boxes CSV (a folder without them): every box None, and painting refuses nothing here.
    boxes = (boxes_in_crop(splits.train, crop_boxes, root, cache_size)
             if (boxes_csv(root)).is_file() else [None] * len(splits.train))
    val_crops = load_crops([s.path for s in splits.val], eval_preset, size, workers)
    meta = {"format": FORMAT, "data": str(data), "protocol": protocol, "train_size": cache_size,
            "val_size": size, "quality": quality,
            "fingerprints": {"train": fingerprint(splits.train), "val": fingerprint(splits.val)}}
    arrays = {}
    for name, samples, crops in (("train", splits.train, train_crops), ("val", splits.val, val_crops)):
        blob, offsets = _encode(crops, quality)
        arrays.update({f"{name}_paths": np.array([str(s.path) for s in samples]),
                       f"{name}_labels": np.array([s.label for s in samples], np.int64),
                       f"{name}_sources": np.array([splits.sources[str(s.path)] for s in samples]),
                       f"{name}_jpeg": blob, f"{name}_offsets": offsets})
    arrays["train_boxes"] = np.array([b if b is not None else (np.nan,) * 4 for b in boxes], np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, meta=np.array(json.dumps(meta)), **arrays)
    return meta


@dataclass(frozen=True)
class Pack:
    meta: dict
    train: list[Sample]
    val: list[Sample]
    train_crops: np.ndarray          # (N, train_size, train_size) uint8
    val_crops: np.ndarray            # (M, val_size, val_size) uint8
    train_boxes: list                # tumour box in train-crop pixels, or None
    sources: dict[str, str]          # path -> source, training and validation scans

    @classmethod
    def read(cls, path: str | Path) -> "Pack":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a training pack ({FORMAT})")
            samples = {n: [Sample(Path(p), int(y), "train") for p, y in zip(z[f"{n}_paths"], z[f"{n}_labels"])]
                       for n in ("train", "val")}
            crops = {n: _decode(z[f"{n}_jpeg"], z[f"{n}_offsets"]) for n in ("train", "val")}
            boxes = [None if np.isnan(b).any() else tuple(float(v) for v in b) for b in z["train_boxes"]]
            sources = {str(p): str(s) for n in ("train", "val")
                       for p, s in zip(z[f"{n}_paths"], z[f"{n}_sources"])}
        return cls(meta, samples["train"], samples["val"], crops["train"], crops["val"], boxes, sources)

    def check(self, cfg: dict) -> None:
        """Refuse a run whose protocol is not the pack's."""
        want, have = protocol_of(cfg), self.meta["protocol"]
        if want != have:
            raise SystemExit(f"the pack holds the protocol {json.dumps(have)}, the run asks for "
                             f"{json.dumps(want)}: pack that protocol (python -m train.pack data)")
        for flag in ("standardise", "blur"):
            if cfg.get(flag):
                raise SystemExit(f"a pack holds crops as scanned: --{flag} needs the data folder")

    def boxes_at(self, keep: np.ndarray, size: int) -> list:
        scale = size / self.meta["train_size"]
        return [None if self.train_boxes[i] is None else tuple(v * scale for v in self.train_boxes[i])
                for i in keep]

    def fingerprint(self, split: str, keep: np.ndarray) -> dict:
        """The packed split's fingerprint (taken from the files when packed); for a subset, its
        counts only."""
        samples = self.train if split == "train" else self.val
        if len(keep) == len(samples):
            return self.meta["fingerprints"][split]
        counts = {c: sum(1 for i in keep if samples[i].label == k) for k, c in enumerate(CLASSES)}
        return {"files": len(keep), "per_class": counts, "sha256": None,
                "subset_of": self.meta["fingerprints"][split]["sha256"]}


# -- ImageNet weights, rounded to 8 bits per output channel to travel ------------------------
def quantise(state: dict[str, torch.Tensor], min_elements: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in state.items():
        t = t.float()
        if t.numel() >= min_elements and t.ndim >= 2:
            flat = t.reshape(t.shape[0], -1)
            scale = flat.abs().amax(1).clamp_min(1e-12) / 127.0
            out[name + ".q"] = torch.round(flat / scale[:, None]).to(torch.int8).reshape(t.shape)
            out[name + ".scale"] = scale
        else:   # small kernels in float16; batch-norm statistics (running variances overflow it) in float32
            out[name] = t.half() if t.ndim >= 2 else t
    return out


def dequantise(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in packed.items():
        if name.endswith(".scale"):
            continue
        if name.endswith(".q"):
            base = name[:-2]
            scale = packed[base + ".scale"].float()
            out[base] = t.float() * scale.view(-1, *([1] * (t.ndim - 1)))
        else:
            out[name] = t.float()
    return out


def rounding_header(path: str | Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def pack_checkpoint(src: str | Path, out: Path, min_elements: int = 65536) -> Path:
    """A checkpoint's model weights rounded as `quantise` does, its metadata kept (a teacher for
    `train.distill` that travels: its recorded split still checks). The detectors' tensors are
    left out: a teacher only answers."""
    model, meta = load_checkpoint(src)
    state = model.state_dict()
    meta["rounded"] = {"rounding": ROUNDED_CHECKPOINT, "min_elements": min_elements,
                       "from": Path(src).name}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(quantise(state, min_elements), str(out),
              metadata={"rounding": ROUNDED_CHECKPOINT, "brainmri": json.dumps(meta, sort_keys=True)})
    return out


def unpack_checkpoint(packed: str | Path, out: Path) -> Path:
    """The loadable checkpoint (float32 weights, the metadata) of a `pack_checkpoint` file."""
    header = rounding_header(packed)
    if header.get("rounding") != ROUNDED_CHECKPOINT:
        raise SystemExit(f"{packed} is not a rounded checkpoint (python -m train.pack checkpoint)")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(dequantise(load_file(str(packed))), str(out), metadata={"brainmri": header["brainmri"]})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Training packs for machines without the data folder.")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data", help="pack one protocol's training and validation crops")
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--size", type=int, default=192, help="the eval size; training crops at its cache size")
    d.add_argument("--quality", type=int, default=90, help="JPEG quality of the crops")
    d.add_argument("--val-fraction", type=float, default=VAL_FRACTION)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--holdout-source", default=None)
    d.add_argument("--holdout-classes", default=None)
    d.add_argument("--workers", type=int, default=2)
    w = sub.add_parser("weights", help="brainmri.imagenet's weights, 8-bit per output channel")
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--min-elements", type=int, default=65536)
    c = sub.add_parser("checkpoint", help="a checkpoint's weights, 8-bit per output channel, "
                                          "its metadata kept (a teacher that travels)")
    c.add_argument("checkpoint", type=Path)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--min-elements", type=int, default=65536)
    r = sub.add_parser("restore", help="write packed ImageNet weights where brainmri.imagenet reads "
                                       "them, or with --out a packed checkpoint back as a checkpoint")
    r.add_argument("packed", type=Path)
    r.add_argument("--out", type=Path, help="for a packed checkpoint: where to write it")
    args = p.parse_args(argv)
    if args.what == "data":
        meta = write_pack(args.data, args.out, args.size, vars(args), args.quality, args.workers)
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB): "
              f"train {meta['fingerprints']['train']['files']}, val {meta['fingerprints']['val']['files']}")
    elif args.what == "weights":
        from brainmri.imagenet import keras_npm_state_dict
        packed = quantise(keras_npm_state_dict(), args.min_elements)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file(packed, str(args.out), metadata={"rounding": ROUNDED,
                                                    "min_elements": str(args.min_elements)})
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    elif args.what == "checkpoint":
        pack_checkpoint(args.checkpoint, args.out, args.min_elements)
        print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    elif args.out is not None:
        print(f"wrote {unpack_checkpoint(args.packed, args.out)}")
    else:
        if rounding_header(args.packed).get("rounding") == ROUNDED_CHECKPOINT:
            raise SystemExit(f"{args.packed} is a rounded checkpoint, not ImageNet's weights: "
                             "restore it with --out")
        from brainmri.imagenet import CACHE_DIR, CONVERTED
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        save_file(dequantise(load_file(str(args.packed))), str(CACHE_DIR / CONVERTED),
                  metadata={"rounding": ROUNDED})
        print(f"wrote {CACHE_DIR / CONVERTED}")


if __name__ == "__main__":
    main()
