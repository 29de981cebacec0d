"""Scan mode: every slice of a whole scan through one `Predictor`, and the scan's summary.

    from brainmri import Predictor
    from brainmri.scans import read_scan
    from brainmri.scanmode import classify_scan
    p = Predictor.from_checkpoint("checkpoints/resnet50.safetensors")
    r = classify_scan(p, read_scan("series.zip"))
    r.finding, r.finding_slices, r.chosen        # the class, the slices saying it, the best one
    r.probabilities()                            # (slices, classes), NaN where not classified
    r.explanation.overlay                        # the chosen slice's map, (H, W, 3) uint8 RGB

Each slice gets exactly what a single upload gets: `Predictor.predict_batch` (input check,
not-an-MRI check, familiarity, the outcome), run over the slices in batches. A slice showing
no head, or much less head than the scan's widest slice (above the vertex, below the skull
base), is marked `brain=False` and not classified: the model was trained on slices through
the brain and its answer there means nothing.

The scan's finding: among the slices classified as MRI, the tumour class whose best slice is
the most probable one, with every slice labelled that class; without any tumour slice, no
tumour, and the chosen slice is the most suspicious one (lowest no-tumour probability). The
scan's outcome is its chosen slice's outcome. Research and education only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .classes import NO_TUMOUR
from .io import to_grey
from .localisation import MIN_HEAD_SHARE, head_share as grey_head_share
from .outcomes import Outcome, decide
from .overlay import DEFAULT_ALPHA
from .predictor import Explanation, Prediction, Predictor
from .scans import Scan

OUTSIDE = "outside the head (too little tissue): not classified"   # a slice without a head
NO_HEAD = "no slice shows enough of a head to classify"           # a scan without one
MIN_HEAD_RELATIVE = 0.35   # a brain slice's head covers this share of the scan's widest head
                           # at least (and MIN_HEAD_SHARE of the slice)


@dataclass(frozen=True)
class SliceResult:
    index: int                           # place in the scan, 0 = first along the normal
    position: float                      # mm along the slice normal; NaN when unknown
    head: float                          # share of the slice covered by the head, in [0, 1]
    brain: bool                          # False: no head or too little (not classified)
    prediction: Prediction | None        # None when not `brain`


@dataclass(frozen=True)
class ScanResult:
    slices: tuple[SliceResult, ...]
    classes: tuple[str, ...]
    finding: str                         # a class name; "" when no slice could be classified
    outcome: Outcome                     # the chosen slice's outcome; NOT_MRI when none
    finding_slices: tuple[int, ...]      # indices of the slices labelled `finding`
    chosen: int | None                   # the slice shown first: the finding's most probable
    explanation: Explanation | None      # prediction and map of the chosen slice (if asked)
    notes: tuple[str, ...] = ()          # the scan's own notes (`Scan.notes`) and the summary's

    def probabilities(self) -> np.ndarray:
        """(slices, classes) float32 calibrated probabilities, NaN rows where not classified
        or refused (a refused slice shows no probabilities: `brainmri.outcomes.shown`)."""
        out = np.full((len(self.slices), len(self.classes)), np.nan, np.float32)
        for s in self.slices:
            if s.prediction is not None and s.prediction.outcome is not Outcome.NOT_MRI:
                out[s.index] = [s.prediction.probabilities[c] for c in self.classes]
        return out


def head_share(image) -> float:
    """Share of an image (PIL) covered by its largest bright blob, filled: the head."""
    return grey_head_share(to_grey(image))


def brain_slices(heads: np.ndarray) -> np.ndarray:
    """Head shares (slices,) -> bool (slices,): the slices to classify."""
    widest = float(heads.max()) if heads.size else 0.0
    return (heads >= MIN_HEAD_SHARE) & (heads >= MIN_HEAD_RELATIVE * widest)


def classify_scan(predictor: Predictor, scan: Scan, batch_size: int = 16,
                  method: str | None = None, alpha: float = DEFAULT_ALPHA,
                  progress: Callable[[int, int], None] | None = None,
                  explain: bool = True) -> ScanResult:
    """Classify every brain slice of `scan` in batches of `batch_size`, summarise, and (with
    `explain`) explain the chosen slice with `method` (None: the checkpoint's default).
    `progress(done, total)` is called after each batch, total being the number of brain slices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    heads = np.array([head_share(im) for im in scan.slices], np.float32)
    brain = brain_slices(heads)
    todo = [i for i in range(len(scan)) if brain[i]]
    predictions: dict[int, Prediction] = {}
    prepared = {}
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        ready = predictor.prepare([scan.slices[i] for i in chunk])
        prepared.update(zip(chunk, ready))
        predictions.update(zip(chunk, predictor.predict_batch(prepared=ready)))
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    slices = tuple(SliceResult(i, scan.positions[i] if i < len(scan.positions) else math.nan,
                               float(heads[i]), bool(brain[i]), predictions.get(i))
                   for i in range(len(scan)))
    finding, chosen, members = summarise(slices, predictor.classes)
    notes = list(scan.notes)
    if not todo:
        notes.append(NO_HEAD)
    explanation = None
    if chosen is not None and explain:
        explanation = replace(predictor.explain_batch(method=method, alpha=alpha,
                                                      prepared=[prepared[chosen]])[0],
                              prediction=predictions[chosen])
    outcome = (predictions[chosen].outcome if chosen is not None      # no slice: refused
               else decide((), is_mri=False).outcome)
    return ScanResult(slices, predictor.classes, finding, outcome, members, chosen, explanation,
                      tuple(notes))


def summarise(slices: tuple[SliceResult, ...], classes: tuple[str, ...]
              ) -> tuple[str, int | None, tuple[int, ...]]:
    """(finding, chosen slice index, indices of the slices labelled the finding) by the rule in
    the module's docstring; ("", None, ()) when no slice was classified as MRI."""
    usable = [s for s in slices if s.prediction is not None and s.prediction.is_mri]
    if not usable:
        return "", None, ()
    tumours = [c for c in classes if c != NO_TUMOUR]
    best: dict[str, SliceResult] = {}
    for s in usable:
        label = s.prediction.label
        if label in tumours and (label not in best or s.prediction.probabilities[label]
                                 > best[label].prediction.probabilities[label]):
            best[label] = s
    if best:
        finding = max(best, key=lambda c: best[c].prediction.probabilities[c])
        chosen = best[finding].index
    else:
        finding = NO_TUMOUR
        chosen = min(usable, key=lambda s: s.prediction.probabilities.get(NO_TUMOUR, 0.0)).index
    members = tuple(s.index for s in usable if s.prediction.label == finding)
    return finding, chosen, members


def ranges(indices) -> str:
    """Slice indices as runs: [2, 3, 4, 7] -> "2-4, 7"."""
    out, run = [], []
    for i in list(indices) + [None]:
        if run and (i is None or i != run[-1] + 1):
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        if i is not None:
            run.append(i)
    return ", ".join(out)
