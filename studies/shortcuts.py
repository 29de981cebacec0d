"""Source-shortcut report: how far file properties alone (colour mode, size, format, bytes)
predict the class, without looking at anatomy.

Used by `python -m studies.audit`; the functions take plain lists and return JSON-ready dicts.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score
from sklearn.tree import DecisionTreeClassifier

from brainmri.classes import CLASSES

FEATURE_SETS = {"mode+size": ("mode", "width", "height"),
                "mode+size+format+bytes": ("mode", "width", "height", "format", "bytes")}
MODELS = {"decision tree": lambda: DecisionTreeClassifier(min_samples_leaf=3, random_state=0),
          "gradient boosting": lambda: GradientBoostingClassifier(random_state=0)}


@dataclass(frozen=True)
class FileInfo:
    """What a file says about itself before any pixel is looked at."""
    mode: str       # PIL mode from the header ("L", "RGB", ...); "?" when unreadable
    width: int
    height: int
    format: str     # format by content ("JPEG", "PNG", ...), not by file name
    bytes: int


def file_info(path: str | Path) -> FileInfo:
    """Header-only read (no pixel decoding); never raises on a bad image."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with Image.open(path) as im:
            return FileInfo(im.mode, im.width, im.height, im.format or "?", size)
    except (OSError, ValueError, SyntaxError):
        return FileInfo("?", 0, 0, "?", size)


def extension_mismatches(paths: Sequence[Path], infos: Sequence[FileInfo]) -> list[str]:
    """Files whose content format disagrees with their extension (e.g. PNG data named .jpg)."""
    ext = {"JPEG": {".jpg", ".jpeg"}, "PNG": {".png"}, "BMP": {".bmp"}, "TIFF": {".tif", ".tiff"},
           "GIF": {".gif"}, "WEBP": {".webp"}}
    return [str(p) for p, f in zip(paths, infos)
            if f.format in ext and Path(p).suffix.lower() not in ext[f.format]]


def distributions(labels: Sequence[int], infos: Sequence[FileInfo], top: int = 3) -> dict:
    """Per class: counts by mode and format, distinct sizes with the most common, median bytes."""
    out = {}
    for c, name in enumerate(CLASSES):
        sel = [f for f, y in zip(infos, labels) if y == c]
        if not sel:
            continue
        sizes = Counter(f"{f.width}x{f.height}" for f in sel)
        out[name] = {"files": len(sel),
                     "mode": dict(Counter(f.mode for f in sel).most_common()),
                     "format": dict(Counter(f.format for f in sel).most_common()),
                     "distinct_sizes": len(sizes),
                     "top_sizes": [[s, n] for s, n in sizes.most_common(top)],
                     "median_kib": round(float(np.median([f.bytes for f in sel])) / 1024, 1)}
    return out


def _features(infos: Sequence[FileInfo], columns: Sequence[str], codes: dict) -> np.ndarray:
    rows = []
    for f in infos:
        rows.append([codes[getattr(f, c)] if c in ("mode", "format") else getattr(f, c)
                     for c in columns])
    return np.array(rows, dtype=np.float64).reshape(len(infos), len(columns))


def trivial_classifiers(train: tuple[Sequence[FileInfo], Sequence[int]],
                        evals: dict[str, tuple[Sequence[FileInfo], Sequence[int]]]) -> dict:
    """Accuracy of classifiers fit on file properties of `train`, scored on each of `evals`.

    Returns {"n": {eval: size}, "class_counts": {eval: {class: n}}, "accuracy": {model: {eval:
    acc}}, "balanced_accuracy": {model: {eval: acc}}}, models being "majority class" and
    "<model> on <features>", accuracies in [0, 1]. Deterministic (fixed seeds).
    """
    x_infos, y = train
    y = np.asarray(y)
    everything = list(x_infos) + [f for infos, _ in evals.values() for f in infos]
    codes = {v: i for i, v in enumerate(sorted({f.mode for f in everything} |
                                               {f.format for f in everything}))}
    majority = Counter(y.tolist()).most_common(1)[0][0]
    predictions = {"majority class": {name: np.full(len(ys), majority)
                                      for name, (_, ys) in evals.items()}}
    for fname, columns in FEATURE_SETS.items():
        for mname, make in MODELS.items():
            model = make().fit(_features(x_infos, columns, codes), y)
            predictions[f"{mname} on {fname}"] = {
                name: model.predict(_features(infos, columns, codes)) if len(ys) else np.zeros(0)
                for name, (infos, ys) in evals.items()}
    truth = {name: np.asarray(ys) for name, (_, ys) in evals.items()}
    return {"n": {name: len(t) for name, t in truth.items()},
            "class_counts": {name: {CLASSES[c]: int((t == c).sum()) for c in np.unique(t)}
                             for name, t in truth.items()},
            "accuracy": {m: {name: float(np.mean(p[name] == truth[name])) for name in p
                             if len(truth[name])} for m, p in predictions.items()},
            "balanced_accuracy": {m: {name: float(balanced_accuracy_score(truth[name], p[name]))
                                      for name in p if len(truth[name])}
                                  for m, p in predictions.items()}}
