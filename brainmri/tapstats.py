"""Statistics of many scans, one trunk pass each, as the app computes them: calibrated
probabilities, the input check, and every familiarity tap's mean and std; cached by weights.

    stats = cached_stats(predictor, Path(".cache"), weights_digest(ckpt), "val", keys,
                         [from_file(p) for p in paths], batch_size=16)
    tap_stats(stats)          # {tap: (means (N, K), stds (N, K))}, as `familiarity` reads them

`train.fit_familiarity` fits the familiarity detector on these; `studies.shift_bench`
measures it on them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import DETECTOR_PREFIXES
from .io import ImageLoadError, load_image, to_grey
from .predictor import Predictor

log = logging.getLogger(__name__)

Source = Callable[[], object]           # returns an ImageSource (a path, or a transformed array)


def scan_stats(predictor: Predictor, sources: Sequence[Source], batch_size: int, desc: str) -> dict:
    """For each source the loader accepts: calibrated probabilities (N, C), the input check
    (N,), and every tap's mean and std (N, K); `kept` indexes the accepted sources."""
    probs, ok, kept, taps = [], [], [], {t: ([], []) for t in predictor.taps}
    for start in tqdm(range(0, len(sources), batch_size), desc=desc, unit="batch", mininterval=30):
        prepared, idx = [], []
        for i in range(start, min(start + batch_size, len(sources))):
            try:
                prepared.append(predictor.prepare([sources[i]()])[0])
                idx.append(i)
            except ImageLoadError as error:
                log.warning("skipped %d: %s", i, error)
        if not prepared:
            continue
        acts, stats = predictor.tapped(torch.stack([p.tensor for p in prepared]))
        logits, _ = predictor.classify(acts)
        probs.append(predictor.probabilities(logits).cpu().numpy())
        ok += [p.input_check is None or p.input_check.ok for p in prepared]
        kept += idx
        for t, (m, s) in stats.items():
            taps[t][0].append(m.cpu().numpy())
            taps[t][1].append(s.cpu().numpy())
    out = {"probs": np.concatenate(probs), "input_ok": np.array(ok), "kept": np.array(kept)}
    for t, (m, s) in taps.items():
        out[f"mean{t}"], out[f"std{t}"] = np.concatenate(m), np.concatenate(s)
    return out


def cached_stats(predictor: Predictor, cache_dir: Path, weights: str, name: str, keys: Sequence[str],
                 sources: Sequence[Source], batch_size: int) -> dict:
    """`scan_stats`, stored under `cache_dir` keyed by the weights, `name` and the items' keys."""
    key = hashlib.sha256(weights.encode())
    key.update(json.dumps([name, *keys]).encode())
    path = Path(cache_dir) / f"famstats-{name}-{key.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as f:
            return dict(f)
    out = scan_stats(predictor, sources, batch_size, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def weights_digest(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weights, not its detectors (which --write replaces)."""
    from safetensors import safe_open
    key = hashlib.sha256()
    with safe_open(str(checkpoint), framework="pt") as f:
        for tensor in sorted(k for k in f.keys() if not k.startswith(DETECTOR_PREFIXES)):
            key.update(tensor.encode() + f.get_tensor(tensor).numpy().tobytes())
    return key.hexdigest()


def from_file(path: Path) -> Source:
    return lambda: path


def shifted(path: Path, shift) -> Source:
    """The decoded grey scan under `shift`, seeded by the file name."""
    def source():
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        return shift(to_grey(load_image(path)), rng)
    return source


def tap_stats(stats: dict) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    taps = sorted(int(k[4:]) for k in stats if k.startswith("mean"))
    return {t: (stats[f"mean{t}"], stats[f"std{t}"]) for t in taps}


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """AUROC of telling `out_scores` (positives) from `in_scores`, higher = more out."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))],
                               np.r_[in_scores, out_scores]))
