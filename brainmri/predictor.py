"""The one inference API: prediction and explanation from a single forward pass.

    from brainmri import Predictor
    p = Predictor.from_checkpoint("checkpoints/resnet50.safetensors")
    p.predict("scan.jpg").label
    p.explain("scan.jpg", method="gradcam").overlay      # (H, W, 3) uint8 RGB
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from . import cam as cams
from . import familiarity as fam
from . import mri_check
from . import outcomes
from .checkpoint import load_checkpoint
from .io import WORK_SIDE, ImageSource, load_image
from .models import fold_batch_norm
from .ood import KNNOOD, MahalanobisOOD
from .ood import from_checkpoint as load_detector
from .overlay import DEFAULT_ALPHA, blend
from .presets import EvalPreset, Prepared


@dataclass(frozen=True)
class Prediction:
    label: str                          # the most probable class
    probabilities: dict[str, float]     # calibrated, by class name, summing to 1
    is_mri: bool                        # False: not like a brain MRI slice (features or input check)
    mri_score: float                    # out-of-distribution score; higher = less like training scans
    familiarity: float = float("nan")   # in [0, 1]: share of validation scans as unfamiliar; nan: no detector
    outcome: outcomes.Outcome | None = None   # None: decided here from is_mri, reasons, probabilities
    reasons: tuple[outcomes.Reason, ...] = ()  # the refusals (not_mri) or cautions (caution) found

    def __post_init__(self):
        # One truth: the outcome is `outcomes.decide`'s, so is_mri False always means not_mri.
        given = None if self.outcome is None else outcomes.Outcome(self.outcome)
        if given is not None and self.is_mri and given is not outcomes.Outcome.NOT_MRI:
            object.__setattr__(self, "outcome", given)       # decided by `Predictor.verdict`
            return
        found = tuple(self.reasons)
        if given is None:                                    # built bare: the default rules
            found += outcomes.caution_reasons(max(self.probabilities.values()))
        verdict = outcomes.decide(found, self.is_mri and given is not outcomes.Outcome.NOT_MRI)
        object.__setattr__(self, "outcome", verdict.outcome)
        object.__setattr__(self, "reasons", verdict.reasons)
        object.__setattr__(self, "is_mri", verdict.outcome is not outcomes.Outcome.NOT_MRI)


@dataclass(frozen=True)
class Checked(Prepared):
    """A prepared image plus the input-level check of its decoded picture (before grey)."""
    input_check: mri_check.InputCheck | None = None


@dataclass(frozen=True)
class Explanation:
    prediction: Prediction
    method: str
    target: str                         # the class the heatmap explains
    heatmap: np.ndarray                 # (H, W) float32 in [0, 1], the input image's pixels
    overlay: np.ndarray                 # (H, W, 3) uint8 RGB, heatmap blended on the scan
    grey: np.ndarray                    # (H, W) uint8, the scan as the model saw it (before crop)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


PRECISIONS = ("auto", "bf16", "fp32")
CHECKERS = "checkers"      # <folder>/checkers/<name>/*.safetensors check <folder>/<name>.safetensors


def checker_paths(path: str | Path) -> list[Path]:
    """The checkpoints that check the confident answers of the checkpoint at `path`: every
    `<its folder>/checkers/<its stem>/*.safetensors`, in name order ([] when there are none)."""
    path = Path(path)
    return sorted((path.parent / CHECKERS / path.stem).glob("*.safetensors"))


class Predictor:
    """A loaded checkpoint with its preset; thread-safe for concurrent calls."""

    def __init__(self, model, meta: dict, device: torch.device,
                 ood: MahalanobisOOD | KNNOOD | None = None, fold_bn: bool = True,
                 path: Path | None = None, precision: str = "auto",
                 familiarity: fam.Familiarity | None = None,
                 checkers: Sequence["Predictor"] = ()):
        """`fold_bn` folds batch-norm into the convolutions (same outputs, a faster forward:
        `brainmri.models.fold_batch_norm`); `path` is the checkpoint it came from, if any.
        `precision`: "bf16" runs the trunk under bfloat16 autocast on a GPU; "fp32" and
        "auto" never do: "auto" is float32 (why: docs/gpu.md).
        `familiarity`: the detector behind `Prediction.familiarity` and the outcome; the trunk's
        stages are wrapped in `familiarity.Tap` (no hooks) so one pass gives its statistics.
        `checkers`: predictors of the same classes that check each confident answer (`check`)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        self.meta, self.device, self.path = meta, torch.device(device), path
        self.precision = precision
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.preset = EvalPreset.from_dict(meta["preset"])
        self.temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
        model = model.eval()
        if fold_bn:
            model = fold_batch_norm(model)
        self.model = model.to(device).to(memory_format=torch.channels_last)
        self.ood, self.familiarity = ood, familiarity
        self.taps = familiarity.taps if familiarity is not None else fam.default_taps(self.model.trunk)
        fam.add_taps(self.model.trunk, self.taps)
        self.default_method = meta.get("default_cam", cams.DEFAULT_METHOD)
        self.checkers = tuple(checkers)
        for c in self.checkers:
            if c.classes != self.classes:
                raise ValueError(f"checker {c.name!r} has classes {c.classes}, expected {self.classes}")

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None,
                        fold_bn: bool = True, precision: str = "auto",
                        checked: bool = True) -> "Predictor":
        """The checkpoint at `path` with its checkers (`checker_paths`), answering as the app
        and the batch command do: a confident answer a checker disagrees with is a caution.
        `checked=False`: the checkpoint alone, its own outcome (what the studies and the
        fitting commands measure of one checkpoint)."""
        device = torch.device(device) if device is not None else default_device()
        model, meta = load_checkpoint(path, device="cpu")
        checkers = ([cls.from_checkpoint(p, device, fold_bn, precision, checked=False)
                     for p in checker_paths(path)] if checked else [])
        return cls(model, meta, device, load_detector(path, meta), fold_bn, Path(path), precision,
                   fam.from_checkpoint(path, meta), checkers)

    def alone(self) -> "Predictor":
        """This predictor without its checkers: the same loaded model, answering as one
        checkpoint does (what the studies measure), beside the checked one."""
        single = copy.copy(self)
        single.checkers = ()
        return single

    @property
    def name(self) -> str:
        return self.meta.get("name", self.meta["arch"])

    @property
    def bf16(self) -> bool:
        """Whether the trunk runs under bfloat16 autocast (asked for, and on a GPU)."""
        return self.device.type == "cuda" and self.precision == "bf16"

    def autocast(self):
        """The context the trunk runs in: bfloat16 autocast when `bf16`, else nothing."""
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) -> target-layer activations (B, K, h, w), float32, no autograd."""
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with self.autocast():
            acts = self.model.trunk(x)
        return acts.float()

    def classify(self, acts: torch.Tensor, targets: Sequence[int] | None = None):
        """Target-layer activations (B, K, h, w) -> logits (B, classes) and, when `targets`
        (one class index per image) is given, d logit[target] / d acts (B, K, h, w), else None.

        Autograd runs through the parameter-free pool and the small head only.
        """
        if targets is None:
            with torch.no_grad():
                return self.model.classify(acts), None
        leaf = acts.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model.classify(leaf)
            chosen = logits[torch.arange(len(targets)), torch.as_tensor(targets)]
            (grads,) = torch.autograd.grad(chosen.sum(), leaf)
        return logits.detach(), grads

    def logits_and_features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) model input -> (raw logits (B, classes), activations (B, K, h, w)),
        float32, from one trunk pass without autograd."""
        acts = self.features(batch)
        return self.classify(acts)[0], acts

    def recorded(self, batch: torch.Tensor, run, probe: bool = False):
        """`run()` and the taps' statistics {tap: (mean (B, K), std (B, K))} of the first trunk
        pass it makes -> (its result, statistics). `probe`: run `cams.fusion_index`'s one-off
        probe pass first, so that it is not the pass recorded (fused and reference methods)."""
        if probe:
            try:
                cams.fusion_index(self.model, batch.shape[-2:])
            except ValueError:                 # no finer block: no fused map will be asked for
                pass
        with fam.recording() as taps:
            out = run()
        return out, dict(taps)

    def tapped(self, batch: torch.Tensor) -> tuple[torch.Tensor, fam.TapStats]:
        """`features` plus the taps' statistics, from one trunk pass."""
        return self.recorded(batch, lambda: self.features(batch))

    def fused(self, batch: torch.Tensor, choose=None):
        """Layer-CAM on two layers (`cams.fused_cam`) for (B, C, S, S) model input ->
        (last acts, logits, targets, maps (B, S, S)); `choose(logits)` gives the target class
        indices (None: the predicted classes)."""
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return cams.fused_cam(self.model, x, choose or predicted, self.autocast())

    def maps(self, batch: torch.Tensor, methods: Sequence[str], choose=None):
        """(B, C, S, S) model input -> (logits (B, classes), pooled activations (B, K), targets,
        {method: (B, S, S) maps in [0, 1] over the model input}).

        `choose(logits)` gives one target class index per image (None: the predicted class).
        Each method is computed the way its record says (`cams.Method.path`): the fast ones
        share one trunk pass and the head's gradient; the fused one runs its own pass (alone,
        it is the only pass); reference methods go through pytorch-grad-cam's hooks.
        """
        specs = [cams.METHODS[cams.canonical_method(m)] for m in methods]
        choose = choose or predicted
        if specs and all(m.path == "fused" for m in specs):
            acts, logits, targets, fused = self.fused(batch, choose)
            return logits, acts.mean(dim=(2, 3)), targets, {m.name: fused for m in specs}
        acts = self.features(batch)
        logits, _ = self.classify(acts)
        targets = list(choose(logits))
        out: dict[str, np.ndarray] = {}
        if any(m.path == "fast" for m in specs):
            _, grads = self.classify(acts, targets)
            out.update({m.name: cams.cam_from_activations(m.name, acts, grads, batch.shape[-2:])
                        for m in specs if m.path == "fast"})
        for m in specs:
            if m.path == "fused":        # its own forward, with autograd after the finer block
                out[m.name] = self.fused(batch, lambda _: targets)[3]
            elif m.path == "reference":
                out[m.name] = cams.reference_cam(self.model, m.name, batch.to(self.device), targets)
        return logits, acts.mean(dim=(2, 3)), targets, {m.name: out[m.name] for m in specs}

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Raw logits (..., classes) -> calibrated probabilities (`calibrated` at this
        checkpoint's temperature)."""
        return calibrated(logits, self.temperature)

    def feature_check(self, pooled: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, K) pooled activations -> the not-an-MRI detector's scores (B,) float (nan without
        a detector) and whether each passes it (B,) bool (True without a detector)."""
        if self.ood is None:
            return np.full(len(pooled), np.nan), np.ones(len(pooled), bool)
        scores = self.ood.score(pooled.cpu())
        return scores, scores <= self.ood.threshold

    def prediction(self, logits: torch.Tensor, pooled: torch.Tensor, index: int,
                   prepared: Prepared | None = None, taps: fam.TapStats | None = None) -> Prediction:
        """Image `index` of a batch's logits (B, classes) and pooled activations (B, K) -> its
        `Prediction` (calibrated probabilities, the not-an-MRI check on features and, given
        `prepared`, on the input; given the same pass's `taps` and a familiarity detector,
        familiarity and the outcome's reasons)."""
        probs = self.probabilities(logits[index]).cpu().numpy()
        by_class = {c: float(p) for c, p in zip(self.classes, probs)}
        scores, passed = self.feature_check(pooled[index:index + 1])
        score, features_ok = float(scores[0]), bool(passed[0])
        top = int(probs.argmax())
        familiarity = float("nan")
        if self.familiarity is not None and taps:
            one = {t: (m[index:index + 1], s[index:index + 1]) for t, (m, s) in taps.items()}
            familiarity = float(self.familiarity.score_stats(one, [top])[0])
        verdict = self.verdict(float(probs[top]), features_ok, familiarity,
                               getattr(prepared, "input_check", None))
        return Prediction(self.classes[top], by_class, verdict.outcome is not outcomes.Outcome.NOT_MRI,
                          score, familiarity, verdict.outcome, verdict.reasons)

    def verdict(self, top_probability: float, features_ok: bool = True,
                familiarity: float = float("nan"),
                input_check: mri_check.InputCheck | None = None) -> outcomes.Verdict:
        """This checkpoint's outcome for one answer (`outcomes.decide`): the input check's
        refusals, the not-an-MRI feature check (`features_ok`), then the familiarity
        detector's cautions at its thresholds (without a detector, the default confidence)."""
        found = outcomes.input_reasons(input_check) + (() if features_ok else (outcomes.UNLIKE_TRAINING,))
        det = self.familiarity
        found += (det.reasons(familiarity, top_probability) if det is not None
                  else outcomes.caution_reasons(top_probability))
        return outcomes.decide(found)

    def prepare(self, images: Sequence[ImageSource]) -> list[Checked]:
        out = []
        for source in images:
            image = load_image(source, max_side=WORK_SIDE)   # decoded once, as the preset's
            p = self.preset.prepare(image)
            out.append(Checked(**{f.name: getattr(p, f.name) for f in fields(p)},
                               input_check=mri_check.check(image)))
        return out

    def predict_batch(self, images: Sequence[ImageSource] | None = None, *,
                      prepared: Sequence[Prepared] | None = None) -> list[Prediction]:
        prepared = prepared if prepared is not None else self.prepare(images)
        batch = torch.stack([p.tensor for p in prepared])
        (logits, acts), taps = self.recorded(batch, lambda: self.logits_and_features(batch))
        pooled = acts.mean(dim=(2, 3))
        return self.check([self.prediction(logits, pooled, i, p, taps) for i, p in enumerate(prepared)],
                          prepared)

    def check(self, predictions: Sequence[Prediction], prepared: Sequence[Prepared]) -> list[Prediction]:
        """`predictions` of `prepared` with each confident one checked by `checkers`: each
        answers the same picture (its own preset on `Prepared.grey`) and any other class makes
        the answer "caution" (`outcomes.checker_reasons`). The checkers run only on confident
        answers; nothing else changes (class, probabilities, map)."""
        out = list(predictions)
        todo = [i for i, p in enumerate(out) if p.outcome is outcomes.Outcome.CONFIDENT]
        if not self.checkers or not todo:
            return out
        answers = [c.labels([prepared[i].grey for i in todo]) for c in self.checkers]
        for k, i in enumerate(todo):
            found = outcomes.checker_reasons(out[i].label, [a[k] for a in answers])
            if found:
                verdict = outcomes.decide(out[i].reasons + found)
                out[i] = replace(out[i], outcome=verdict.outcome, reasons=verdict.reasons)
        return out

    def labels(self, greys: Sequence[np.ndarray]) -> list[str]:
        """The predicted class of each picture, from one trunk pass (no outcome, no map)."""
        batch = torch.stack([self.preset.prepare(g).tensor for g in greys])
        logits, _ = self.logits_and_features(batch)
        return [self.classes[i] for i in predicted(logits)]

    def predict(self, image: ImageSource) -> Prediction:
        return self.predict_batch([image])[0]

    def target_index(self, target: str | int | None, logits: torch.Tensor | None, i: int) -> int:
        """The class index to explain for image `i`: `target` (a class name or index) checked,
        or the predicted class when it is None."""
        if target is None:
            return int(logits[i].argmax())
        if isinstance(target, int):
            if not 0 <= target < len(self.classes):
                raise ValueError(f"target index {target} out of range 0..{len(self.classes) - 1}")
            return target
        if target not in self.classes:
            raise ValueError(f"unknown target class {target!r}; known: {', '.join(self.classes)}")
        return self.classes.index(target)

    def explain_batch(self, images: Sequence[ImageSource] | None = None, method: str | None = None,
                      target: str | int | None = None, alpha: float = DEFAULT_ALPHA, *,
                      prepared: Sequence[Prepared] | None = None) -> list[Explanation]:
        """Prediction + class activation map for each image from one trunk pass.

        `method` is a key of `brainmri.cam.METHODS`; `target` a class name or index (None:
        the predicted class). Heatmaps are mapped back onto each input's own pixels.
        """
        method = cams.canonical_method(method or self.default_method)
        prepared = prepared if prepared is not None else self.prepare(images)
        batch = torch.stack([p.tensor for p in prepared])
        (logits, pooled, targets, maps), taps = self.recorded(batch, lambda: self.maps(
            batch, [method], lambda lg: [self.target_index(target, lg, i) for i in range(len(lg))]),
            probe=cams.METHODS[method].path != "fast")
        maps = maps[method]
        checked = self.check([self.prediction(logits, pooled, i, p, taps) for i, p in enumerate(prepared)],
                             prepared)
        out = []
        for i, p in enumerate(prepared):
            heat = to_input_pixels(maps[i], p)
            out.append(Explanation(checked[i], method, self.classes[targets[i]], heat,
                                   blend(p.grey, heat, alpha), p.grey))
        return out

    def explain(self, image: ImageSource, method: str | None = None,
                target: str | int | None = None, alpha: float = DEFAULT_ALPHA) -> Explanation:
        return self.explain_batch([image], method, target, alpha)[0]


def calibrated(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Logits (..., classes) -> float32 softmax of logits / temperature over the last axis
    (temperature scaling, Guo et al. 2017; 1.0: the raw softmax)."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def predicted(logits: torch.Tensor) -> list[int]:
    """The predicted class index of each row of logits (B, classes)."""
    return logits.argmax(dim=1).tolist()


def to_input_pixels(heatmap: np.ndarray, prepared: Prepared) -> np.ndarray:
    """A (S, S) heatmap over the model input -> (H, W) over the original image, 0 outside the crop."""
    x0, y0, x1, y1 = prepared.box
    full = np.zeros(prepared.grey.shape, np.float32)
    full[y0:y1, x0:x1] = cv2.resize(heatmap.astype(np.float32), (x1 - x0, y1 - y0),
                                    interpolation=cv2.INTER_LINEAR)
    return np.clip(full, 0.0, 1.0)
