"""Is this scan like the training scans of its predicted class? Familiarity (the outcomes: `brainmri.outcomes`).

`brainmri.ood` asks "is this a brain MRI slice at all?" on the last block's pooled features.
Familiarity asks a narrower question of a scan that passed: does its acquisition and
appearance resemble the *training scans of the class it was given*? Contrast, sequence and
texture show more in the earlier blocks of the trunk than in the last pooled features, so the
detector reads statistics of several blocks ("taps"), all recorded during the one trunk pass
that makes the prediction:

- per tap, per image: the channel means (B, K) and, for the `meanstd` statistics, the spatial
  standard deviations (B, K) of the block's output;
- per tap: a PCA (fitted on training scans) to at most `dims` dimensions, class means and one
  Ledoit-Wolf covariance; the distance is the squared Mahalanobis distance to the *predicted*
  class's mean divided by the PCA dimensions;
- `unfamiliarity` = mean of those distances over the taps (higher = less familiar);
- `familiarity` = share of the validation scans that were at least as unfamiliar, in [0, 1]
  (1: typical; 0: beyond every validation scan).

Thresholds (`min_familiarity`, `min_confidence`) are chosen on validation scans by
`train.fit_familiarity`; `min_confidence` may be raised to a floor learnt on a held-out source
(`held_out_floor`, rule v6 of logs/confident/rule.md). Stored in the checkpoint as tensors `fam.*` plus
`meta["familiarity"]` (taps, statistics, thresholds, rule); `from_checkpoint` restores it.

`Familiarity.reasons` gives this detector's cautions (`brainmri.outcomes.UNFAMILIAR`,
`LOW_CONFIDENCE`) at its thresholds; `brainmri.outcomes.decide` makes the outcome.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors import safe_open
from torch import nn

from . import outcomes

PREFIX = "fam."
STATS = ("mean", "meanstd")

# --- taps: block statistics recorded during the trunk pass, without hooks ----------------------
_LOCAL = threading.local()

TapStats = dict[int, tuple[torch.Tensor, torch.Tensor]]   # tap -> (mean (B, K), std (B, K))


class Tap(nn.Module):
    """A trunk block that, while `recording()` is active in the calling thread, keeps the
    channel means and spatial standard deviations of its output (the first pass only)."""

    def __init__(self, block: nn.Module, index: int):
        super().__init__()
        self.block, self.index = block, index

    # The wrapped block stays reachable as before: trunk[-1][1].conv2, len(trunk[4]), ...
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("block"), name)

    def __getitem__(self, index):
        return self.block[index]

    def __len__(self) -> int:
        return len(self.block)

    def __iter__(self):
        return iter(self.block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        record = getattr(_LOCAL, "stats", None)
        if record is not None and self.index not in record:
            with torch.no_grad():
                o = out.detach().float()                                   # (B, K, h, w)
                record[self.index] = (o.mean(dim=(2, 3)), o.flatten(2).std(dim=2, correction=0))
        return out


def default_taps(trunk: nn.Sequential) -> list[int]:
    """Indices of the trunk's stages: its `nn.Sequential` children (ResNet-50 layer1..layer4,
    the baseline's three blocks); the last block always."""
    found = [i for i, m in enumerate(trunk) if isinstance(m, (nn.Sequential, Tap))]
    last = len(trunk) - 1
    return found if found and found[-1] == last else found + [last]


def add_taps(trunk: nn.Sequential, taps: Sequence[int]) -> None:
    """Wrap the blocks `taps` of `trunk` in `Tap`, in place (already wrapped ones are kept)."""
    for i in taps:
        if not isinstance(trunk[i], Tap):
            trunk[i] = Tap(trunk[i], i)


@contextmanager
def recording() -> Iterator[TapStats]:
    """Collect the taps' statistics of the trunk passes run by this thread inside the block."""
    previous = getattr(_LOCAL, "stats", None)
    _LOCAL.stats = {}
    try:
        yield _LOCAL.stats
    finally:
        _LOCAL.stats = previous


def as_features(stats: Mapping[int, tuple], taps: Sequence[int], kind: str) -> dict[int, np.ndarray]:
    """Tap statistics -> {tap: (N, K) or (N, 2K) float64 features} for statistics `kind`."""
    if kind not in STATS:
        raise ValueError(f"unknown statistics {kind!r}; choose from {STATS}")
    out = {}
    for t in taps:
        mean, std = (np.asarray(torch.as_tensor(a).cpu(), np.float64) for a in stats[t])
        out[t] = mean if kind == "mean" else np.concatenate([mean, std], axis=1)
    return out


# --- the detector ----------------------------------------------------------------------------
class Familiarity:
    """Class-conditional Gaussians on the taps' statistics, and the validation thresholds."""

    def __init__(self, taps: Sequence[int], kind: str, blocks: Mapping[int, Mapping[str, torch.Tensor]],
                 val_unfamiliarity: torch.Tensor | np.ndarray | None = None,
                 min_familiarity: float = 0.0, min_confidence: float = 0.0):
        if kind not in STATS:
            raise ValueError(f"unknown statistics {kind!r}; choose from {STATS}")
        self.taps, self.kind = [int(t) for t in taps], kind
        # per tap: mean (K,), components (K, D), class_means (C, D), precision (D, D)
        self.blocks = {int(t): {k: torch.as_tensor(v).double() for k, v in b.items()}
                       for t, b in blocks.items()}
        vals = np.zeros(0) if val_unfamiliarity is None else np.asarray(val_unfamiliarity, np.float64)
        self.val_unfamiliarity = np.sort(vals)                              # (V,) ascending
        self.min_familiarity, self.min_confidence = float(min_familiarity), float(min_confidence)

    @classmethod
    def fit(cls, features: Mapping[int, np.ndarray], labels: np.ndarray, kind: str,
            dims: int = 256) -> "Familiarity":
        """`features` {tap: (N, K)} statistics of training scans, `labels` (N,) class indices
        (every class index 0..C-1 must occur)."""
        from sklearn.covariance import LedoitWolf
        labels = np.asarray(labels)
        classes = np.arange(labels.max() + 1)
        if not all((labels == c).any() for c in classes):
            raise ValueError("every class needs at least one training scan")
        blocks = {}
        for t, x in features.items():
            x = torch.as_tensor(x, dtype=torch.float64)
            mean = x.mean(0)
            _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
            components = v[: min(dims, v.shape[0])].T                      # (K, D)
            z = ((x - mean) @ components).numpy()
            class_means = np.stack([z[labels == c].mean(0) for c in classes])
            precision = LedoitWolf().fit(z - class_means[labels]).precision_
            blocks[t] = {"mean": mean, "components": components,
                         "class_means": torch.as_tensor(class_means), "precision": torch.as_tensor(precision)}
        return cls(sorted(features), kind, blocks)

    def unfamiliarity(self, features: Mapping[int, np.ndarray], predicted: Sequence[int]) -> np.ndarray:
        """{tap: (N, K)} statistics and (N,) predicted class indices -> (N,) unfamiliarity >= 0."""
        idx = torch.as_tensor(np.asarray(predicted), dtype=torch.long)
        total = None
        for t in self.taps:
            b = self.blocks[t]
            z = (torch.as_tensor(features[t], dtype=torch.float64) - b["mean"]) @ b["components"]
            d = z - b["class_means"][idx]                                   # (N, D)
            m = torch.einsum("nd,de,ne->n", d, b["precision"], d) / d.shape[1]
            total = m if total is None else total + m
        return (total / len(self.taps)).numpy()

    def familiarity(self, unfamiliarity: np.ndarray) -> np.ndarray:
        """(N,) unfamiliarity -> (N,) share of validation scans at least as unfamiliar, in [0, 1]."""
        vals = self.val_unfamiliarity
        if not len(vals):
            return np.full(np.shape(unfamiliarity), np.nan)
        return 1.0 - np.searchsorted(vals, np.asarray(unfamiliarity), side="left") / len(vals)

    def score_stats(self, stats: Mapping[int, tuple], predicted: Sequence[int]) -> np.ndarray:
        """Tap statistics as recorded -> (N,) familiarity in [0, 1]."""
        return self.familiarity(self.unfamiliarity(as_features(stats, self.taps, self.kind), predicted))

    def reasons(self, familiarity: float, top_probability: float) -> tuple[outcomes.Reason, ...]:
        """The cautions this detector's thresholds give for one answer (`outcomes.caution_reasons`)."""
        return outcomes.caution_reasons(top_probability, familiarity, self.min_familiarity,
                                        self.min_confidence)

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"{PREFIX}{t}.{k}": v.float().contiguous() for t, b in self.blocks.items() for k, v in b.items()}
        out[PREFIX + "val_unfamiliarity"] = torch.as_tensor(self.val_unfamiliarity).float().contiguous()
        return out

    def describe(self) -> dict:
        """The part of `meta["familiarity"]` the detector itself restores from."""
        return {"taps": self.taps, "stats": self.kind, "min_familiarity": self.min_familiarity,
                "min_confidence": self.min_confidence}


def held_out_floor(result: str | Path, split: str = "loso_training", key: str = "floor_at_90") -> float:
    """A top-probability floor learnt on a held-out source: `key` (rule v6's `floor_at_90`, or
    rule v8's `no_tumour_floor_at_90`) of a leave-one-source-out run's `studies.generalisation`
    result (its JSON), on `split`, the part a choice may use. Raises ValueError when the result
    has none or no floor reached the target (inf, "caution every such answer", is a floor)."""
    sets = json.loads(Path(result).read_text()).get("sets", {})
    floor = (sets.get(split) or {}).get(key) or {}
    if "floor" not in floor:
        raise ValueError(f"{Path(result).name}: no {key} on {split!r} "
                         "(not a held-out run, or scored before its rule)")
    if np.isnan(floor["floor"]):
        raise ValueError(f"{Path(result).name}: no floor makes its confident {split} answers "
                         "right often enough")
    return float(floor["floor"])


def from_checkpoint(path: str | Path, meta: dict) -> Familiarity | None:
    """The familiarity detector stored in a checkpoint, or None when it has none."""
    info = meta.get("familiarity")
    if not info:
        return None
    with safe_open(str(path), framework="pt") as f:
        t = {k[len(PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(PREFIX)}
    blocks: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in t.items():
        tap, _, name = key.partition(".")
        if tap.isdigit():
            blocks.setdefault(int(tap), {})[name] = value
    missing = [tap for tap in info["taps"] if tap not in blocks]
    if missing:
        raise ValueError(f"{Path(path).name}: familiarity tensors missing for taps {missing}")
    return Familiarity(info["taps"], info["stats"], blocks, t.get("val_unfamiliarity"),
                       info.get("min_familiarity", 0.0), info.get("min_confidence", 0.0))

