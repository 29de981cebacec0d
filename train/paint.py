"""Counterfactual no-tumour scans and control paintings, so that painting itself is no cue.

    python -m train --recipe lesion --data ../shared/data --out runs/lesion   # uses this

The data lacks no-tumour scans of the planes, slice levels and collections that the tumour
scans come from, so a model can tell "tumour" from the level and the collection alone. For a
boxed training scan, painting the tumour out (its box grown by `grow` x the crop's side,
filled by `brainmri.localisation.paint_out`, OpenCV's Telea inpainting, as
`studies.lesion_masked` measures) gives such a scan: a **counterfactual**, labelled `notumor`.

A painted patch must not become the cue for `notumor`. So every class also gets **control
paintings**, the label kept: a box drawn from the training tumour boxes' own sizes and
positions (relative to the head crop), placed in the head away from the scan's own tumour box.
`plan_epoch` sets how many of each so that, in every epoch, each label's share among painted
samples equals its share among unpainted ones: P(label | painted) = P(label | not painted).
Controls go only where they cannot cover a tumour: no-tumour scans and boxed tumour scans.

The other way round (`implant`): inside the collection, source and class are tied, so the
no-tumour scans' sources never show a tumour. An **implant** pastes a boxed training tumour
(its grown box, rendered in the host's intensity look, blended through a soft ellipse) into a
no-tumour scan, at the box's own relative position when it fits the host's head, and takes the
donor's label; an **implant control** pastes a patch of the same size from the donor's healthy
tissue the same way and keeps `notumor`, so that a pasted patch itself tells nothing.

Everything works on the cached head crops (uint8, `TrainPreset.cache_size`), with boxes in
crop pixels; randomness comes from a `numpy.random.Generator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainmri import localisation as loc
from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.intensity import landmarks, match_landmarks

Box = tuple[int, int, int, int]
PLAIN, LESION_OUT, CONTROL, IMPLANT, IMPLANT_CONTROL = 0, 1, 2, 3, 4
KINDS = ("plain", "lesion out", "control", "implant", "implant control")


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


def soft_ellipse(height: int, width: int, edge: float = 0.3) -> np.ndarray:
    """(height, width) float weights: 1 inside the inscribed ellipse's inner part, falling to 0
    at its rim over the outer `edge` share of its radius, 0 outside."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = np.sqrt(((xx + 0.5) / width * 2 - 1) ** 2 + ((yy + 0.5) / height * 2 - 1) ** 2)
    return np.clip((1.0 - r) / edge, 0.0, 1.0)


def paste(host: np.ndarray, donor: np.ndarray, src: Box, dst: Box, edge: float = 0.3) -> np.ndarray:
    """`host` (S, S) uint8 with `donor`'s `src` box, rendered in the host's in-head intensity
    look (`brainmri.intensity.match_landmarks`), blended into `dst` (a box of the same size)
    through `soft_ellipse`; nothing outside `dst` changes."""
    marks = landmarks(host)
    look = match_landmarks(donor, marks / 255.0) if marks is not None else donor
    (x0, y0, x1, y1), (u0, v0, u1, v1) = src, dst
    if (x1 - x0, y1 - y0) != (u1 - u0, v1 - v0):
        raise ValueError(f"boxes differ in size: {src} and {dst}")
    alpha = soft_ellipse(y1 - y0, x1 - x0, edge)
    out = host.astype(np.float64)
    out[v0:v1, u0:u1] = out[v0:v1, u0:u1] * (1 - alpha) + look[y0:y1, x0:x1] * alpha
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Plan:
    """One epoch's samples: scan index, kind (PLAIN ... IMPLANT_CONTROL), label, and for
    implants the donor scan's index (-1 elsewhere; None: no implants)."""
    index: np.ndarray
    kind: np.ndarray
    label: np.ndarray
    donor: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def counts(self, classes) -> dict[str, dict[str, int]]:
        kinds = (PLAIN, LESION_OUT, CONTROL) + ((IMPLANT, IMPLANT_CONTROL) if self.donor is not None else ())
        return {KINDS[k]: {c: int(((self.kind == k) & (self.label == i)).sum()) for i, c in enumerate(classes)}
                for k in kinds}


def plan_epoch(labels: np.ndarray, boxed: np.ndarray, notumor: int, counterfactual: float,
               paint_share: float, rng: np.random.Generator, notumor_repeat: int = 1,
               implant: float = 0.0) -> Plan:
    """Every scan once (no-tumour scans `notumor_repeat` times), each plain or control-painted,
    plus counterfactuals of a `counterfactual` share of the boxed tumour scans (label notumor).

    With k = paint_share / (1 - paint_share), controls of tumour class c number paint_share x
    n_c (drawn among its boxed scans) and of `notumor` (k x r x n_notumor - n_counterfactual)
    / (1 + k), so that every label's share among painted samples equals its share among
    unpainted ones (and, for tumour classes, is `paint_share`). Raises ValueError when that
    needs more (or fewer than zero) controls than a class has views to paint.

    With `implant` > 0, round(implant x n_notumor) implants (host: a no-tumour scan, donor: a
    boxed tumour scan, label: the donor's) and as many implant controls (label notumor) are
    added, hosts and donors drawn at random; the rows above are drawn as without them.
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
    donor = None
    if implant > 0:
        hosts, donors = np.flatnonzero(labels == notumor), np.flatnonzero(boxed & (labels != notumor))
        n = round(implant * len(hosts))
        if n and not (len(hosts) and len(donors)):
            raise ValueError("implants need no-tumour scans and boxed tumour scans")
        host = rng.choice(hosts, 2 * n, replace=2 * n > len(hosts))
        given = rng.choice(donors, 2 * n)
        donor = np.concatenate([np.full(len(index), -1), given])
        index = np.concatenate([index, host])
        kinds = np.concatenate([kinds, np.full(n, IMPLANT), np.full(n, IMPLANT_CONTROL)])
        out_labels = np.concatenate([out_labels, labels[given[:n]], np.full(n, notumor)])
    order = rng.permutation(len(index))
    return Plan(index[order], kinds[order], out_labels[order], None if donor is None else donor[order])


class Painter:
    """Makes the painted crops of a `Plan` row, and the grown tumour box that guidance uses.

    `crops` (N, S, S) uint8; `boxes[i]` scan i's tumour box in crop pixels or None;
    `pool` (M, 4) relative tumour boxes (shares of the side) that control boxes are drawn from
    (default: the grown boxes given); `notumor` the no-tumour label's index; `bank` how many
    control paintings are kept per scan.
    """

    def __init__(self, crops: np.ndarray, boxes: list, grow: float = 0.04, pool: np.ndarray | None = None,
                 notumor: int = CLASSES.index(NO_TUMOUR), bank: int = 3):
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

    def implant(self, host: int, donor: int, rng: np.random.Generator,
                tumour: bool = True) -> tuple[np.ndarray, Box]:
        """(host crop with donor's grown tumour box pasted in (`paste`), or with `tumour`
        False a healthy patch of the donor of that size, the box it went to). The patch goes to
        the box's own relative position, else to a random place, with its corners and centre in
        the host's head; when none fits, to its own position anyway."""
        box = self.grown[donor]
        if box is None:
            raise ValueError(f"scan {donor} has no tumour box to implant")
        rel = np.array(box, float) / self.side
        src = box if tumour else place_control(self.head(donor), rel, rng, avoid=box)
        if src is None:                    # no healthy patch of that size: the tumour's own place
            src = box
        dst = place_control(self.head(host), rel, rng) or box
        return paste(self.crops[host], self.crops[donor], src, dst), dst

    def __call__(self, i: int, kind: int, rng: np.random.Generator,
                 donor: int = -1) -> tuple[np.ndarray, Box | None]:
        """(the crop as this row trains on it, the painted or implanted box or None). Paintings
        are made once and kept: one counterfactual per scan, and `bank` control variants per
        scan, one drawn each time (so later epochs cost no inpainting); implants (`donor` the
        tumour scan) are made anew each time."""
        if kind in (IMPLANT, IMPLANT_CONTROL):
            return self.implant(i, donor, rng, tumour=kind == IMPLANT)
        if kind == PLAIN:
            return self.crops[i], None
        if kind == LESION_OUT and self.grown[i] is None:
            raise ValueError(f"scan {i} has no tumour box to paint out")
        key = (i, kind, 0 if kind == LESION_OUT else int(rng.integers(self.bank)))
        if key not in self._made:
            box = self.grown[i] if kind == LESION_OUT else self.control_box(i, rng)
            self._made[key] = (paint(self.crops[i], box), box) if box is not None else (self.crops[i], None)
        return self._made[key]
