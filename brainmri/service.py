"""What the app does, as plain functions on numpy data: no gradio, no plotting.

    from brainmri.service import Service
    svc = Service.from_folder("checkpoints")
    r = svc.classify("scan.jpg", model="resnet50", method="gradcam")
    r.label, r.probabilities, r.overlay.shape          # 'glioma', {...}, (H, W, 3)
    svc.reblend(r.grey, r.heatmap, alpha=0.7)          # new overlay, no model call
    svc.recheck(r.grey, r.heatmap, "resnet50", r.probabilities).summary   # hot region painted out

`app.py` wires these to components. Each model is reached through an *engine*: anything with
`explain(image, method, target, alpha)` (and `classes`, `meta`, `default_method`), which a
`Predictor` is; a request batcher with the same methods can replace it without touching this.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from . import card, outcomes, texts
from .batching import predictor_of
from .cam import HOOK_FREE, canonical_method
from .classes import class_label
from .io import WORK_SIDE, ImageSource, describe, load_image
from .localisation import head_mask, hot_region, paint_out, share_of_head
from .models import ARCHS
from .models import default_model as declared_default
from .outcomes import Outcome, Reason, with_reason
from .overlay import DEFAULT_ALPHA, blend, colourise


PREDICTED = "predicted"                  # target choice: explain the predicted class


class Engine(Protocol):
    classes: tuple[str, ...]
    meta: dict
    default_method: str

    def explain(self, image: ImageSource, method: str | None = None,
                target: str | int | None = None, alpha: float = DEFAULT_ALPHA): ...


@dataclass(frozen=True)
class Result:
    """One model's answer for one image, ready to display. A refusal (outcome not_mri) holds
    no class and no probabilities (`outcomes.shown`): label and target None, probabilities {}."""
    model: str                       # the engine's key (an architecture name for from_folder)
    label: str | None                # predicted class name; None when refused
    probabilities: dict[str, float]  # by class name, sums to 1; {} when refused
    is_mri: bool
    mri_score: float
    method: str                      # canonical CAM method key
    target: str | None               # class the heatmap explains; None when refused
    heatmap: np.ndarray              # (H, W) float32 in [0, 1], input pixels
    grey: np.ndarray                 # (H, W) uint8, the scan as luminance
    overlay: np.ndarray              # (H, W, 3) uint8 RGB; the scan alone when refused
    time_ms: float                   # model time (prediction + explanation)
    outcome: Outcome = Outcome.CONFIDENT
    reasons: tuple[Reason, ...] = () # the refusals or the cautions; () when confident

    @property
    def heatmap_rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB, the heatmap in the overlay's colours."""
        return colourise(self.heatmap)

    @property
    def finding(self) -> str | None:
        """The predicted class name, or None when the input was refused (not an MRI slice)."""
        return self.label

    @property
    def headline(self) -> str:
        """Markdown (no HTML): the finding, or plainly that the input is not a brain MRI slice
        (`texts.headline`)."""
        return texts.headline(self)

    def as_dict(self) -> dict:
        """JSON-ready summary for API clients. A refusal carries no class and no probabilities:
        `label`, `label_name`, `probabilities` and `explained_class` are None; `reasons` say
        why, each as {"code": stable name, "text": one plain sentence}."""
        return {"label": self.label, "label_name": class_label(self.label) if self.label else None,
                "is_mri": self.is_mri, "outcome": self.outcome.value,
                "reasons": [r.as_dict() for r in self.reasons],
                "probabilities": ({c: round(float(v), 6) for c, v in self.probabilities.items()}
                                  if self.probabilities else None),
                "model": self.model, "method": self.method, "explained_class": self.target,
                "time_ms": round(self.time_ms, 1), "disclaimer": texts.DISCLAIMER}


@dataclass(frozen=True)
class Comparison:
    results: dict[str, Result]       # by model key, in the service's order
    agree: bool | None               # None when fewer than two models are loaded
    summary: str                     # markdown, one line


@dataclass(frozen=True)
class Recheck:
    """The model asked again with the heatmap's hot region painted out of the scan."""
    painted: Result                  # the answer, map and overlay for the painted scan
    region_share: float              # the hot region's share of the head, in [0, 1]
    changed: bool                    # True: the predicted class changed
    summary: str                     # markdown


def load_slice(image: ImageSource, frame: int | None = None):
    """`load_image`, with `frame` picking a DICOM frame or TIFF page, or a NIfTI slice in the
    plane it was acquired in (a file's Modality and windowing are kept: DICOM comes back tagged
    by `brainmri.volumes`);
    an image with a longer side over WORK_SIDE is reduced while it is decoded."""
    if frame is None or not isinstance(image, (str, bytes, Path)):
        return load_image(image, max_side=WORK_SIDE)
    if describe(image).kind == "nifti":
        return load_image(image, slice_index=int(frame), max_side=WORK_SIDE)
    return load_image(image, frame=int(frame), max_side=WORK_SIDE)


class Service:
    """Loaded models by name, and the handlers the UI calls. Thread-safe if the engines are."""

    def __init__(self, engines: Mapping[str, Engine], warmup: bool = True):
        if not engines:
            raise ValueError("no models: the service needs at least one engine")
        self.engines = dict(engines)
        first = next(iter(self.engines.values()))
        self.classes: tuple[str, ...] = tuple(first.classes)
        for name, engine in self.engines.items():
            if tuple(engine.classes) != self.classes:
                raise ValueError(f"model {name!r} has classes {engine.classes}, "
                                 f"expected {self.classes}")
        if warmup:
            self.warmup()

    @classmethod
    def from_folder(cls, folder: str | Path, device=None, names: Sequence[str] | None = None,
                    warmup: bool = True, batch: int = 1, max_wait_ms: float = 5.0,
                    workers: int = 1) -> "Service":
        """Load `<folder>/<name>.safetensors` for each name that exists (at least one must),
        each with its checkers (`predictor.checker_paths`: `<folder>/checkers/<name>/`);
        `names` defaults to every registered architecture, in registry order.
        With `batch` > 1 each model sits behind a `Batcher`: concurrent requests share one
        forward pass (up to `batch` images, gathered for at most `max_wait_ms`), with `workers`
        batches in flight at once."""
        from .batching import Batcher
        from .predictor import Predictor
        folder = Path(folder)
        paths = {n: folder / f"{n}.safetensors" for n in (ARCHS if names is None else names)}
        found = {n: p for n, p in paths.items() if p.is_file()}
        if not found:
            raise FileNotFoundError(f"no checkpoints in {folder}: expected "
                                    + " and/or ".join(p.name for p in paths.values()))
        engines = {n: Predictor.from_checkpoint(p, device) for n, p in found.items()}
        if batch > 1:
            engines = {n: Batcher(e, max_batch=batch, max_wait_ms=max_wait_ms, workers=workers)
                       for n, e in engines.items()}
        return cls(engines, warmup)

    def close(self) -> None:
        """Stop the engines' worker threads, if any (after the requests already queued)."""
        for engine in self.engines.values():
            close = getattr(engine, "close", None)
            if close is not None:
                close()

    def warmup(self) -> None:
        """One forward (and explanation) per model, and one per checker (which the warm-up scan,
        not a confident answer, would not reach), so the first user does not pay for them."""
        ramp = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (64, 1))
        yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
        scan = np.where(xx ** 2 + yy ** 2 < 0.7, 60 + ramp * 0.5, 0).astype(np.uint8)
        for engine in self.engines.values():
            engine.explain(scan)
            for checker in getattr(predictor_of(engine), "checkers", ()):
                checker.labels([scan])

    @property
    def models(self) -> list[str]:
        return list(self.engines)

    @property
    def default_model(self) -> str:
        """The loaded model offered first: the one the registry declares default (`Arch.default`),
        else the first loaded."""
        return declared_default(self.models)

    def models_default_first(self) -> list[str]:
        return [self.default_model] + [n for n in self.models if n != self.default_model]

    @property
    def methods(self) -> list[str]:
        """CAM methods offered interactively: those computed from one trunk pass, without hooks."""
        return list(HOOK_FREE)

    @property
    def default_method(self) -> str:
        """The default CAM method of the model offered first (`default_model`), as measured and
        stored in its checkpoint by `studies.explain_eval`."""
        return canonical_method(self.engines[self.default_model].default_method)

    METHOD_INFO = texts.METHOD_INFO

    def method_choices(self) -> list[tuple[str, str]]:
        """(label, key) per offered method, in plain words, e.g. ("Grad-CAM", "gradcam");
        what each was measured to do is in the model card (`model_card`)."""
        return [(texts.method_choice(m), m) for m in self.methods]

    def _engine(self, model: str) -> Engine:
        if model not in self.engines:
            raise ValueError(f"unknown model {model!r}; loaded: {', '.join(self.engines)}")
        return self.engines[model]

    def predictor(self, model: str):
        """The `Predictor` behind `model` (behind a Batcher: the predictor itself); ValueError
        naming the loaded models for an unknown one."""
        return predictor_of(self._engine(model))

    def _target(self, target: str | None) -> str | None:
        if target in (None, "", PREDICTED):
            return None
        if target not in self.classes:
            raise ValueError(f"unknown target class {target!r}; choose '{PREDICTED}' or one of "
                             + ", ".join(self.classes))
        return target

    def _run(self, model: str, image, method: str, target: str | None, alpha: float) -> Result:
        engine = self._engine(model)
        start = time.perf_counter()
        e = engine.explain(image, method=method, target=target, alpha=alpha)
        ms = 1000 * (time.perf_counter() - start)
        p = e.prediction
        label, probabilities = outcomes.shown(p.outcome, p.label, p.probabilities)
        # A refused input gets no heatmap colour: the overlay is the scan alone.
        overlay = e.overlay if p.is_mri else blend(e.grey, e.heatmap, 0.0)
        return Result(model, label, probabilities, p.is_mri, p.mri_score, e.method,
                      e.target if label else None, e.heatmap, e.grey, overlay, ms, p.outcome,
                      p.reasons)

    def classify(self, image: ImageSource, model: str, method: str | None = None,
                 target: str | None = PREDICTED, alpha: float = DEFAULT_ALPHA,
                 frame: int | None = None) -> Result:
        """Predict and explain one image. `frame`: the slice of a volume (DICOM frame, NIfTI
        slice in the plane it was acquired in, TIFF page; default: `load_image`'s). Raises
        ImageLoadError / ValueError with a user-safe message for a bad image, model, method or
        target."""
        method = canonical_method(method or self.default_method)
        target = self._target(target)
        return self._run(model, load_slice(image, frame), method, target, alpha)

    def compare(self, image: ImageSource, method: str | None = None,
                alpha: float = DEFAULT_ALPHA, frame: int | None = None) -> Comparison:
        """Every loaded model on the same image, each explaining its own prediction."""
        method = canonical_method(method or self.default_method)
        image = load_slice(image, frame)
        results = {m: self._run(m, image, method, None, alpha) for m in self.engines}
        agree = agreement(results)
        summary = texts.agreement(results, agree)
        if agree is False:                 # both answered, differently: neither is confident
            results = {m: with_reason(r, outcomes.DISAGREE) for m, r in results.items()}
        return Comparison(results, agree, summary)

    @staticmethod
    def reblend(grey: np.ndarray, heatmap: np.ndarray, alpha: float) -> np.ndarray:
        """A new overlay at opacity `alpha` from a cached result; runs no model."""
        return blend(np.asarray(grey, np.uint8), np.asarray(heatmap, np.float32), alpha)

    def recheck(self, grey: np.ndarray, heatmap: np.ndarray, model: str,
                before: Mapping[str, float], target: str | None = PREDICTED,
                method: str | None = None, alpha: float = DEFAULT_ALPHA) -> Recheck:
        """Paint the heatmap's hot region (`localisation.hot_region`: around its peak, at least
        half of it) out of `grey` and classify again: did that region decide the answer
        `before` (the probabilities by class of the first run)? Raises ValueError for an empty
        map or mismatched shapes."""
        grey, heat = np.asarray(grey, np.uint8), np.asarray(heatmap, np.float32)
        if grey.ndim != 2 or grey.shape != heat.shape:
            raise ValueError(f"scan {grey.shape} and heatmap {heat.shape} must be the same (H, W)")
        region = hot_region(heat)
        if not region.any():
            raise ValueError("The heatmap is empty: there is no hot region to paint out.")
        target = self._target(target)
        r = self._run(model, paint_out(grey, region), canonical_method(method or self.default_method),
                      target, alpha)
        share = share_of_head(region, head_mask(grey))
        was = max(before, key=before.get)
        asked = target or was
        changed = r.label != was
        notes = card.card_texts({model: self._engine(model)}, "recheck")
        text = texts.recheck(model, r, share, before, was, asked, changed, notes)
        return Recheck(r, share, changed, text)

    def model_card(self) -> str:
        """Markdown: what is said about the loaded models, from their checkpoints
        (`brainmri.card.model_card`)."""
        return card.model_card(self.engines, self.classes)


def agreement(results: Mapping[str, Result]) -> bool | None:
    """Whether the models give the same class: None when fewer than two answered or any
    refused (no finding to compare)."""
    if len(results) < 2 or not all(r.is_mri for r in results.values()):
        return None
    return len({r.label for r in results.values()}) == 1
