"""Evaluation protocols, named the same everywhere (metrics files, README, app).

- `official`: Kaggle Testing as published (comparable with the literature and the study).
- `clean`:    Kaggle Testing minus every image with a copy (any kind, see `dedup`) in Training.
- `roboflow`: the study's external test set; every image is a re-export of a Kaggle
              Training image, so it measures robustness to resizing/re-encoding, not
              generalisation.
- `val`:      a validation split carved from Kaggle Training by duplicate groups (no picture
              on both sides); `train` is the rest, one file per group (copies dropped).
- `loso`:     leave one source out: with `build_splits(..., holdout_source=S)`, every duplicate
              group of source S (see `group_sources`; restricted to `holdout_classes` when
              given) leaves training and validation, and `loso` is that held-out part's
              pictures from Training and Testing, one per group. It measures what the other
              protocols cannot: pictures from a source the model never saw.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from .classes import CLASSES
from .data import Sample, discover
from .dedup import DEFAULT_THRESHOLD, compute_signatures, group

PROTOCOLS = ("official", "clean", "roboflow")
# The sources the Kaggle collection merges, as its file headers tell them apart: every
# greyscale 512x512 file is a figshare (Cheng et al.) tumour slice; the rest (mostly RGB
# JPEGs of many sizes) come from SARTAJ and Br35H, which headers alone do not separate. Many
# of those RGB files are re-exports of figshare slices (they share a duplicate group with
# one), so a picture's source is decided per duplicate group (`group_sources`).
FIGSHARE, OTHER = "figshare", "sartaj-br35h"
SOURCES = (FIGSHARE, OTHER)
DESCRIPTIONS = {
    "official": "Kaggle Testing as published (1,311 images); comparable with the literature",
    "clean": "Kaggle Testing minus every image with a copy (byte, resized, re-encoded, "
             "intensity-scaled or mirrored) in Training: the honest number for the official split",
    "roboflow": "the study's test set (1,695 images); all are re-exports of Kaggle Training "
                "images, so it measures robustness to resizing and re-encoding, not generalisation",
    "val": "validation split carved from Kaggle Training by duplicate groups",
    "loso": "leave one source out: the held-out source's pictures (Training and Testing, one "
            "per duplicate group), none of whose groups reached training or validation",
}
KAGGLE = "brain-tumor-mri"
ROBOFLOW = "roboflow-brain-mri"
DATA_HELP = f"folder holding {KAGGLE}/ (or it)"   # what kaggle_root accepts, for --data
VAL_FRACTION = 0.12     # share of each class's Training duplicate groups carved out as validation


@dataclass
class Splits:
    train: list[Sample]
    val: list[Sample]
    official: list[Sample]
    clean: list[Sample]
    roboflow: list[Sample]
    groups: dict[str, int]          # path -> duplicate group id, over Kaggle Training + Testing
    sources: dict[str, str] | None = None   # path -> source (SOURCES), over Kaggle files
    holdout_source: str | None = None
    holdout_classes: tuple[str, ...] | None = None
    loso: list[Sample] | None = None        # the held-out source's pictures, when one is held out

    def protocol(self, name: str) -> list[Sample]:
        return getattr(self, name)


def source_of(path: str | Path) -> str:
    """The source collection of one Kaggle file, from its header alone (`SOURCES`)."""
    with Image.open(path) as im:
        return FIGSHARE if im.mode == "L" and im.size == (512, 512) else OTHER


def group_sources(file_sources: list[str], groups: np.ndarray) -> list[str]:
    """Each file's source as its duplicate group's: FIGSHARE when any picture of the group is
    a figshare file (an RGB re-export of a figshare slice is figshare's acquisition), else
    OTHER; "" stays "" (unreadable)."""
    figshare = {int(g) for g, src in zip(groups, file_sources) if src == FIGSHARE}
    return [src and (FIGSHARE if int(g) in figshare else OTHER)
            for g, src in zip(groups, file_sources)]


def held_classes(args: dict) -> list[str] | None:
    """A run's `holdout_classes` argument (comma-separated class names) as a list; None: all."""
    names = args.get("holdout_classes")
    return [c.strip() for c in names.split(",") if c.strip()] if names else None


def kaggle_root(data: str | Path) -> Path:
    """Accept the Kaggle folder itself or a parent holding it (e.g. ../shared/data)."""
    data = Path(data)
    return data / KAGGLE if (data / KAGGLE).is_dir() else data


def group_split(samples: list[Sample], groups: np.ndarray, val_fraction: float, seed: int
                ) -> tuple[list[int], list[int]]:
    """Indices (train, val): whole groups go to one side, stratified by each group's label."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    labels = np.array([s.label for s in samples])
    for label in np.unique(labels):
        ids = np.unique(groups[labels == label])
        rng.shuffle(ids)
        n_val = int(round(val_fraction * len(ids)))
        chosen = set(ids[:n_val].tolist())
        for i in np.flatnonzero(labels == label):
            (val if groups[i] in chosen else train).append(int(i))
    return train, val


def first_of_group(indices: list[int], groups: np.ndarray) -> list[int]:
    seen, out = set(), []
    for i in indices:
        if groups[i] not in seen:
            seen.add(groups[i])
            out.append(i)
    return out


def split_seed_of(run_args: Mapping) -> int:
    """The seed of a run's validation split: its `split_seed` when it records one (a tail
    stage records its start's; `python -m train --split-seed` sets it so that runs of several
    seeds share one split), else its `seed`."""
    split = run_args.get("split_seed")
    return int(split if split is not None else run_args.get("seed", 0))


def split_of(run_args: Mapping) -> tuple[float, int]:
    """(validation share, split seed) of a run's recorded arguments: what `build_splits` takes
    to draw that run's validation split again."""
    return float(run_args.get("val_fraction", VAL_FRACTION)), split_seed_of(run_args)


def run_splits(data: str | Path, run_args: Mapping, cache_dir: Path | None = Path(".cache")) -> "Splits":
    """The splits a run trained and was validated on, from its recorded arguments (a
    checkpoint's `meta["args"]`, or the trainer's settings): validation share, split seed
    (`split_seed_of`), held-out source and classes."""
    return build_splits(data, *split_of(run_args), cache_dir=cache_dir,
                        holdout_source=run_args.get("holdout_source"),
                        holdout_classes=held_classes(run_args))


def build_splits(data: str | Path, val_fraction: float = VAL_FRACTION, seed: int = 0,
                 threshold: float = DEFAULT_THRESHOLD, cache_dir: Path | None = Path(".cache"),
                 dedup_train: bool = True, holdout_source: str | None = None,
                 holdout_classes: Sequence[str] | None = None) -> Splits:
    """The protocols' samples. With `holdout_source`, training and validation hold no picture
    of a duplicate group of that source (of `holdout_classes` only, when given), and
    `Splits.loso` holds those groups' pictures (Training and Testing, one per group;
    label-ambiguous groups dropped)."""
    if holdout_source is not None and holdout_source not in SOURCES:
        raise ValueError(f"unknown source {holdout_source!r}; known: {', '.join(SOURCES)}")
    unknown = set(holdout_classes or ()) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; known: {', '.join(CLASSES)}")
    held_labels = {CLASSES.index(c) for c in (holdout_classes or CLASSES)}
    root = kaggle_root(data)
    samples = discover(root)
    cache = cache_dir / "signatures-kaggle.npz" if cache_dir else None
    sig = compute_signatures([s.path for s in samples], cache=cache)
    groups, _, _ = group(sig, threshold)
    ok = sig.ok
    sources = group_sources([source_of(s.path) if ok[i] else "" for i, s in enumerate(samples)],
                            groups)
    tr = [i for i, s in enumerate(samples) if s.split == "train" and ok[i]]
    te = [i for i, s in enumerate(samples) if s.split == "test" and ok[i]]
    # Groups with conflicting labels are ambiguous: keep them out of training and validation.
    labels = np.array([s.label for s in samples])
    mixed = {g for g in np.unique(groups) if len(set(labels[groups == g])) > 1}
    held = {int(groups[i]) for i in range(len(samples))
            if sources[i] == holdout_source and labels[i] in held_labels}
    tr_clean = [i for i in tr if groups[i] not in mixed and groups[i] not in held]
    sub = [samples[i] for i in tr_clean]
    t_idx, v_idx = group_split(sub, groups[tr_clean], val_fraction, seed)
    train_ids = [tr_clean[i] for i in t_idx]
    val_ids = [tr_clean[i] for i in v_idx]
    if dedup_train:
        train_ids = first_of_group(train_ids, groups)
        val_ids = first_of_group(val_ids, groups)
    train_groups = set(groups[tr].tolist())
    clean_ids = [i for i in te if groups[i] not in train_groups]
    rob_root = Path(data) / ROBOFLOW
    roboflow = discover(rob_root) if rob_root.is_dir() else []
    loso = None
    if holdout_source is not None:
        loso_ids = first_of_group([i for i in tr + te if groups[i] in held
                                   and groups[i] not in mixed], groups)
        loso = [samples[i] for i in loso_ids]
    return Splits(train=[samples[i] for i in train_ids], val=[samples[i] for i in val_ids],
                  official=[samples[i] for i in te], clean=[samples[i] for i in clean_ids],
                  roboflow=roboflow, groups={str(s.path): int(g) for s, g in zip(samples, groups)},
                  sources={str(s.path): src for s, src in zip(samples, sources)},
                  holdout_source=holdout_source, loso=loso,
                  holdout_classes=tuple(holdout_classes) if holdout_classes else None)
