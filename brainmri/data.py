"""Finding labelled scans in a folder, and a decoded-crop cache for training.

Layouts: `<root>/<split>/<class>/*` (Kaggle: Training/, Testing/) or `<root>/<class>/*`
(Roboflow). Class folders map onto `CLASSES` through `canonical_class`; files are images by
content, whatever their extension.
"""
from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .classes import CLASSES, canonical_class
from .io import ImageLoadError, load_image, to_grey

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"training": "train", "train": "train", "testing": "test", "test": "test",
                 "validation": "val", "valid": "val", "val": "val"}
SKIP_NAMES = {".DS_Store", "Thumbs.db"}
SKIP_SUFFIXES = {".md", ".txt", ".csv", ".json"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int          # index into CLASSES
    split: str          # "train", "test", "val", or "all" for a flat <root>/<class>/ layout

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


def image_files(folder: Path) -> Iterable[Path]:
    """Every file under `folder` that may be an image, sorted (notes, tables and hidden files
    skipped; whether it decodes is found later)."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in SKIP_NAMES and p.suffix.lower() not in SKIP_SUFFIXES \
                and not p.name.startswith("."):
            yield p


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def discover(root: str | Path) -> list[Sample]:
    """Every candidate image file under `root`, labelled by its class folder.

    Raises `FileNotFoundError` for a missing root and `UnknownClassError` naming a class
    folder that maps onto no class. Unreadable files are found later, by `verify`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    subdirs = _class_dirs(root)
    if not subdirs:
        raise ValueError(f"no class or split folders in {root}")
    samples: list[Sample] = []
    if all(d.name.lower() in SPLIT_ALIASES for d in subdirs):
        for split_dir in subdirs:
            for class_dir in _class_dirs(split_dir):
                label = CLASSES.index(canonical_class(class_dir.name))
                split = SPLIT_ALIASES[split_dir.name.lower()]
                samples += [Sample(p, label, split) for p in image_files(class_dir)]
    else:
        for class_dir in subdirs:
            label = CLASSES.index(canonical_class(class_dir.name))
            samples += [Sample(p, label, "all") for p in image_files(class_dir)]
    if not samples:
        raise ValueError(f"no image files found under {root}")
    return samples


def fingerprint(samples: Sequence[Sample], root: str | Path | None = None) -> dict:
    """A cheap, order-independent identity of a dataset: counts and a hash of (path, size, label)."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        rel = s.path.relative_to(root) if root else s.path
        h.update(f"{rel}|{s.path.stat().st_size}|{s.label}\n".encode())
    counts = {c: sum(1 for s in samples if s.label == i) for i, c in enumerate(CLASSES)}
    return {"files": len(samples), "per_class": counts, "sha256": h.hexdigest()[:16]}


def _check(path: Path) -> str | None:
    try:
        load_image(path).size
        return None
    except ImageLoadError as error:
        return str(error)


def verify(samples: Sequence[Sample], workers: int = 2) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """(readable samples, [(path, reason)] for the unreadable ones); never raises on a bad file."""
    with ProcessPoolExecutor(workers) as pool:
        problems = list(pool.map(_check, [s.path for s in samples], chunksize=64))
    good = [s for s, p in zip(samples, problems) if p is None]
    bad = [(s.path, p) for s, p in zip(samples, problems) if p is not None]
    for path, reason in bad:
        log.warning("skipping unreadable %s: %s", path, reason)
    return good, bad


def _crop(args) -> np.ndarray | None:
    path, preset, size = args
    try:
        crop, _ = preset.crop(to_grey(load_image(path)))
        return preset.resize(crop, size)
    except ImageLoadError:
        return None


def load_crops(paths: Sequence[Path], preset, size: int, workers: int = 2,
               cache: Path | None = None) -> np.ndarray:
    """Head crops of every path resized to (size, size) uint8, as one (N, size, size) array.

    Unreadable files give an all-zero crop (callers drop them via `verify` first). With
    `cache`, the array is stored as .npy keyed by the caller and reused when it exists.
    """
    if cache is not None and cache.is_file():
        arr = np.load(cache)
        if arr.shape == (len(paths), size, size):
            return arr
    with ProcessPoolExecutor(workers) as pool:
        crops = list(pool.map(_crop, [(p, preset, size) for p in paths], chunksize=32))
    arr = np.stack([c if c is not None else np.zeros((size, size), np.uint8) for c in crops])
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, arr)
    return arr
