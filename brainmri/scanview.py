"""A whole scan ready to display: the app's scan handlers as plain functions (no gradio, no
plotting).

    from brainmri.service import Service
    from brainmri.scanview import compare_scan, view_scan, view_slice
    svc = Service.from_folder("checkpoints")
    v = view_scan(svc, "series.zip", "resnet50")     # every slice, then the chosen one explained
    v.headline, v.strip.shape, v.chosen.overlay      # markdown, (slices, classes), (H, W, 3)
    view_slice(svc, v, 3)                            # another slice's Result (None: outside the head)
    c = compare_scan(svc, "series.zip")              # every model on the scan, read once
    c.views["baseline"].result.finding, c.agree, c.summary   # the scans' findings agree?

The chosen slice, and any slice walked to, is answered by `Service.classify` on that slice's
picture, so its headline, outcome, reasons and map are exactly a single upload's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from . import outcomes
from .classes import NO_TUMOUR, class_label
from .models import MODEL_LABELS
from .outcomes import Outcome, with_reason
from .overlay import DEFAULT_ALPHA
from .scanmode import NO_HEAD, ScanResult, classify_scan, ranges
from .scans import Scan, read_scan
from .service import Result, Service
from .texts import DISCLAIMER, FOOTNOTE, REFUSED, percent


@dataclass(frozen=True)
class ScanView:
    """One model's answer for a whole scan."""
    model: str                       # the service's model key
    scan: Scan
    result: ScanResult
    chosen: Result | None            # the chosen slice answered as a single upload; None: no slice
    headline: str                    # markdown (no HTML): the scan's finding, then its notes
    time_ms: float                   # reading the scan, every slice, the chosen slice's map

    @property
    def strip(self) -> np.ndarray:
        """(slices, classes) float32 probabilities along the scan, NaN where not classified."""
        return self.result.probabilities()

    def as_dict(self) -> dict:
        """JSON-ready summary for API clients."""
        r = self.result
        return {"finding": r.finding or None, "outcome": r.outcome.value, "slices": len(r.slices),
                "plane": self.scan.plane or None,
                "finding_slices": list(r.finding_slices), "chosen_slice": r.chosen,
                "classified": [s.brain for s in r.slices],
                "probabilities": [None if s.prediction is None or s.prediction.outcome is
                                  Outcome.NOT_MRI else        # refused: no probabilities
                                  {c: round(float(v), 6) for c, v in s.prediction.probabilities.items()}
                                  for s in r.slices],
                "chosen": self.chosen.as_dict() if self.chosen is not None else None,
                "notes": list(r.notes), "model": self.model, "time_ms": round(self.time_ms, 1),
                "disclaimer": DISCLAIMER}


def scan_headline(view_model: str, scan: Scan, r: ScanResult, ms: float) -> str:
    """Markdown: the scan's finding (the class, the slices, the chosen one), what was not
    classified and the scan's notes; or plainly that no slice could be classified."""
    total = len(r.slices)
    outside = sum(not s.brain for s in r.slices)
    name = MODEL_LABELS.get(view_model, view_model)
    where = f"{scan.source}" + (f" · {scan.description}" if scan.description else "") + \
        (f" · {scan.plane}" if scan.plane else "")
    if r.chosen is None:
        text = ("### ⚠ No slice of this scan could be classified\n"
                + ("No slice shows enough of a head. " if outside == total else
                   "Every slice with a head was refused as not like a brain MRI slice. ")
                + "No finding is reported.\n")
    else:
        p = r.slices[r.chosen].prediction.probabilities[r.finding]
        if r.finding == NO_TUMOUR:
            text = (f"### Scan: {class_label(NO_TUMOUR)} on every classified slice\n"
                    f"Most suspicious: slice {r.chosen} (no tumour {percent(p)}), shown below.\n")
        else:
            text = (f"### Scan: {class_label(r.finding)} on slice{'s' * (len(r.finding_slices) > 1)} "
                    f"{ranges(r.finding_slices)} of {total}\n"
                    f"Most probable: slice {r.chosen} ({percent(p)}), shown below.\n")
    notes = [f"{outside} of {total} slices outside the head, not classified"] if outside else []
    notes += [n for n in r.notes if n != NO_HEAD]          # the heading says so
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text + f"\n_{where} · {name} · {ms / 1000:.1f} s · {FOOTNOTE}_"


def view_scan(service: Service, source, model: str, method: str | None = None, alpha: float = DEFAULT_ALPHA,
              series: str | int | None = None, axis: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> ScanView:
    """Read `source` (`brainmri.scans.read_scan`: a .zip or folder of DICOM, a NIfTI volume,
    a multi-frame DICOM), classify every slice with `model`, and answer the chosen slice as a
    single upload would be. Raises ImageLoadError (`SeriesChoice` when the user must pick a
    series) or ValueError with a user-safe message."""
    start = time.perf_counter()
    service.predictor(model)                             # an unknown model before any reading
    return view_read(service, read_scan(source, series, axis), model, method, alpha, progress, start)


def view_read(service: Service, scan: Scan, model: str, method: str | None = None,
              alpha: float = DEFAULT_ALPHA, progress: Callable[[int, int], None] | None = None,
              start: float | None = None) -> ScanView:
    """`view_scan` on a scan already read (`start`: when reading began, for `time_ms`)."""
    start = time.perf_counter() if start is None else start
    result = classify_scan(service.predictor(model), scan, progress=progress, explain=False)
    return view_of(service, scan, result, model, method, alpha, start)


def view_of(service: Service, scan: Scan, result: ScanResult, model: str, method: str | None = None,
            alpha: float = DEFAULT_ALPHA, start: float | None = None) -> ScanView:
    """The view of a scan already classified by `model` (`result`, from `classify_scan`): its
    chosen slice answered as a single upload (`start`: when reading began, for `time_ms`)."""
    start = time.perf_counter() if start is None else start
    chosen = (slice_answer(service, scan, result.chosen, model, method, alpha)
              if result.chosen is not None else None)
    ms = 1000 * (time.perf_counter() - start)
    return ScanView(model, scan, result, chosen, scan_headline(model, scan, result, ms), ms)


def view_slice(service: Service, view: ScanView, index: int, method: str | None = None,
               alpha: float = DEFAULT_ALPHA) -> Result | None:
    """Slice `index` of a viewed scan answered as a single upload (None when it lies outside
    the head and was not classified). Raises ValueError for an index out of range."""
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(view.scan):
        raise ValueError(f"slice {index!r} is out of range: this scan has {len(view.scan)} "
                         f"(0 to {len(view.scan) - 1})")
    if not view.result.slices[int(index)].brain:
        return None
    return slice_answer(service, view.scan, int(index), view.model, method, alpha)


def slice_answer(service: Service, scan: Scan, index: int, model: str, method: str | None,
                 alpha: float) -> Result:
    """Slice `index` of `scan` answered as a single upload (a slice cut across the acquired
    ones says so itself: `volumes.cut_across`)."""
    return service.classify(scan.slices[index], model, method, alpha=alpha)


@dataclass(frozen=True)
class ScanComparison:
    """Every loaded model on one whole scan, and whether their scan-level findings agree."""
    views: dict[str, ScanView]       # by model key, in the service's order
    agree: bool | None               # None: fewer than two models, or a model classified no slice
    summary: str                     # markdown, one line


def compare_scan(service: Service, source, method: str | None = None, alpha: float = DEFAULT_ALPHA,
                 series: str | int | None = None, axis: int | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> ScanComparison:
    """Read `source` once and view it whole with every loaded model (`view_read`). When the
    scan-level findings differ, each chosen slice's answer gets `outcomes.DISAGREE`, as in the
    single-slice comparison. `progress(model, done, total)` follows each model's slices."""
    scan = read_scan(source, series, axis)
    views = {}
    for m in service.engines:
        tick = None if progress is None else (lambda d, t, m=m: progress(m, d, t))
        views[m] = view_read(service, scan, m, method, alpha, tick)
    agree, summary = scan_agreement(views)
    if agree is False:                 # the scans' findings differ: neither is confident
        views = {m: replace(v, chosen=with_reason(v.chosen, outcomes.DISAGREE))
                 for m, v in views.items()}
    return ScanComparison(views, agree, summary)


def scan_agreement(views: dict[str, ScanView]) -> tuple[bool | None, str]:
    """(agree, one markdown line) from each model's scan-level finding."""
    if len(views) < 2:
        return None, "Only one model is loaded: nothing to compare."
    names = {m: MODEL_LABELS.get(m, m) for m in views}
    unread = [names[m] for m, v in views.items() if v.result.chosen is None]
    if unread:
        return None, f"**{REFUSED}** on any slice (for {', '.join(unread)}): no finding to compare."
    said = {m: v.result.finding for m, v in views.items()}
    if len(set(said.values())) == 1:
        return True, f"**The models agree on the scan:** {class_label(next(iter(said.values())))}."
    told = "; ".join(f"{names[m]} says {class_label(f)}" for m, f in said.items())
    return False, f"**The models disagree on the scan:** {told}."
