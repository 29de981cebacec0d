"""Counterfactual no-tumour scans and control paintings, so that painting itself is no cue.

    python -m train --recipe lesion --data ../shared/data --out runs/lesion   # uses this

The data lacks no-tumour scans of the planes, slice levels and collections that the tumour
scans come from, so a model can tell "tumour" from the level and the collection alone. For a
boxed training scan, painting the tumour out (its box grown by `grow` x the crop's side,
filled by `brainmri.localisation.paint_out`, OpenCV's Telea inpainting, as
`train.lesion_masked` measures) gives such a scan: a **counterfactual**, labelled `notumor`.

A painted patch must not become the cue for `notumor`. So every class also gets **control
paintings**, the label kept: a box drawn from the training tumour boxes' own sizes and
positions (relative to the head crop), placed in the head away from the scan's own tumour box.
`plan_epoch` sets how many of each so that, in every epoch, each label's share among painted
samples equals its share among unpainted ones: P(label | painted) = P(label | not painted).
Controls go only where they cannot cover a tumour: no-tumour scans and boxed tumour scans.

Everything works on the cached head crops (uint8, `TrainPreset.cache_size`), with boxes in
crop pixels; randomness comes from a `numpy.random.Generator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainmri import localisation as loc

Box = tuple[int, int, int, int]
PLAIN, LESION_OUT, CONTROL = 0, 1, 2
KINDS = ("plain", "lesion out", "control")


def grow_box(box, frac: float, side: int) -> Box:
    """A box (x0, y0, x1, y1) in crop pixels grown by `frac` x `side` on every side, clipped to
    [0, side], as integers (outwards)."""
    g = frac * side
    x0, y0, x1, y1 = box
    return (max(0, int(np.floor(x0 - g))), max(0, int(np.floor(y0 - g))),
            min(side, int(np.ceil(x1 + g))), min(side, int(np.ceil(y1 + g))))


def place_control(head: np.ndarray, rel_box, rng: np.random.Generator, avoid: Box | None = None,
                  tries: int = 50) -> Box | None:
    """A box of `rel_box`'s relative size (x0, y0, x1, y1 as shares of the side), first at its
    own relative position, then at random positions, with its centre and corners on the
    `head` mask (S, S) bool and not overlapping `avoid`; None when nothing fits
    (`brainmri.localisation.fit_box`)."""
    h, w = head.shape
    size = (max(2, round((rel_box[2] - rel_box[0]) * w)), max(2, round((rel_box[3] - rel_box[1]) * h)))
    first = (round(rel_box[0] * w), round(rel_box[1] * h))
    return loc.fit_box(head, size, rng, avoid=avoid, first=first, tries=tries)


def paint(crop: np.ndarray, box: Box) -> np.ndarray:
    """`crop` (S, S) uint8 with `box` filled from the tissue around it (Telea)."""
    return loc.paint_out(crop, loc.box_mask(crop.shape, box))


@dataclass(frozen=True)
class Plan:
    """One epoch's samples: scan index, kind (PLAIN / LESION_OUT / CONTROL) and label."""
    index: np.ndarray
    kind: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    def counts(self, classes) -> dict[str, dict[str, int]]:
        return {KINDS[k]: {c: int(((self.kind == k) & (self.label == i)).sum()) for i, c in enumerate(classes)}
                for k in (PLAIN, LESION_OUT, CONTROL)}


def plan_epoch(labels: np.ndarray, boxed: np.ndarray, notumor: int, counterfactual: float,
               paint_share: float, rng: np.random.Generator, notumor_repeat: int = 1) -> Plan:
    """Every scan once (no-tumour scans `notumor_repeat` times), each plain or control-painted,
    plus counterfactuals of a `counterfactual` share of the boxed tumour scans (label notumor).

    With k = paint_share / (1 - paint_share), controls of tumour class c number paint_share x
    n_c (drawn among its boxed scans) and of `notumor` (k x r x n_notumor - n_counterfactual)
    / (1 + k), so that every label's share among painted samples equals its share among
    unpainted ones (and, for tumour classes, is `paint_share`). Raises ValueError when that
    needs more (or fewer than zero) controls than a class has views to paint.
    """
    labels, boxed = np.asarray(labels), np.asarray(boxed, bool)
    n_classes = max(int(labels.max()) + 1 if len(labels) else 0, notumor + 1)
    cf = np.flatnonzero(boxed & (labels != notumor))
    cf = rng.permutation(cf)[:round(counterfactual * len(cf))]
    extra = np.repeat(np.flatnonzero(labels == notumor), max(0, notumor_repeat - 1))
    index = np.concatenate([np.arange(len(labels)), extra])
    base_labels = labels[index]
    kind = np.zeros(len(index), np.int64)
    k = paint_share / (1 - paint_share) if paint_share < 1 else float("inf")
    for c in range(n_classes):
        views = np.flatnonzero(base_labels == c)
        if c == notumor:
            want, eligible = (k * len(views) - len(cf)) / (1 + k), views
        else:
            want, eligible = paint_share * len(views), views[boxed[index[views]]]
        want = round(want)
        if want < 0 or want > len(eligible):
            raise ValueError(f"class {c}: balancing needs {want} control paintings but {len(eligible)} "
                             f"views can take one; change paint_share, counterfactual or notumor_repeat")
        kind[rng.permutation(eligible)[:want]] = CONTROL
    index = np.concatenate([index, cf])
    kinds = np.concatenate([kind, np.full(len(cf), LESION_OUT)])
    out_labels = np.concatenate([base_labels, np.full(len(cf), notumor)])
    order = rng.permutation(len(index))
    return Plan(index[order], kinds[order], out_labels[order])


class Painter:
    """Makes the painted crops of a `Plan` row, and the grown tumour box that guidance uses.

    `crops` (N, S, S) uint8; `boxes[i]` scan i's tumour box in crop pixels or None;
    `pool` (M, 4) relative tumour boxes (shares of the side) that control boxes are drawn from
    (default: the grown boxes given); `notumor` the no-tumour label's index; `bank` how many
    control paintings are kept per scan.
    """

    def __init__(self, crops: np.ndarray, boxes: list, grow: float = 0.04, pool: np.ndarray | None = None,
                 notumor: int = 2, bank: int = 3):
        self.crops, self.grow, self.notumor, self.bank = crops, grow, notumor, bank
        self._made: dict[tuple[int, int, int], tuple[np.ndarray, Box | None]] = {}
        side = crops.shape[-1]
        self.side = side
        self.grown = [grow_box(b, grow, side) if b is not None else None for b in boxes]
        rel = [np.array(b, float) / side for b in self.grown if b is not None]
        self.pool = pool if pool is not None else (np.stack(rel) if rel else np.array([[0.4, 0.4, 0.6, 0.6]]))
        self._heads: dict[int, np.ndarray] = {}

    def head(self, i: int) -> np.ndarray:
        if i not in self._heads:
            self._heads[i] = loc.head_mask(self.crops[i])
        return self._heads[i]

    def control_box(self, i: int, rng: np.random.Generator) -> Box | None:
        rel = self.pool[int(rng.integers(len(self.pool)))]
        return place_control(self.head(i), rel, rng, avoid=self.grown[i])

    def __call__(self, i: int, kind: int, rng: np.random.Generator) -> tuple[np.ndarray, Box | None]:
        """(the crop as this row trains on it, the painted box or None). Paintings are made
        once and kept: one counterfactual per scan, and `bank` control variants per scan, one
        drawn each time (so later epochs cost no inpainting)."""
        if kind == PLAIN:
            return self.crops[i], None
        if kind == LESION_OUT and self.grown[i] is None:
            raise ValueError(f"scan {i} has no tumour box to paint out")
        key = (i, kind, 0 if kind == LESION_OUT else int(rng.integers(self.bank)))
        if key not in self._made:
            box = self.grown[i] if kind == LESION_OUT else self.control_box(i, rng)
            self._made[key] = (paint(self.crops[i], box), box) if box is not None else (self.crops[i], None)
        return self._made[key]
