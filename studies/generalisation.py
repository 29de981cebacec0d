"""Generalisation across sources: leave-one-source-out, and validation broken down by source,
brightness and framing, with how far "confident" holds on each.

    python -m studies.generalisation checkpoints/resnet50.safetensors runs/loso-A/model.safetensors \\
        --data ../shared/data --out logs/eval/generalisation
    python -m studies.generalisation --table logs/eval/generalisation/*.json     # print again
    python -m studies.generalisation --table ... --intervals   # how sure: Wilson intervals

For each checkpoint the splits are rebuilt as it was trained (`brainmri.protocols`, with the
run's `holdout_source` / `holdout_classes` when it held a source out). Sets scored: `val`,
and `loso` for a run that held a source out (the held-out source's pictures), else `clean`;
`loso_training` is the part of `loso` from Kaggle Training, the only part a choice may use.
Every scan goes through `Predictor` as the app runs it (input check, calibrated
probabilities, not-an-MRI detector, familiarity and the outcome when the checkpoint carries
a detector), and once more with its intensities inverted inside the head
(`brainmri.intensity.invert_head`): an answer is *stable* when the inverted scan gets the same
class; and once in each Kaggle source's intensity look (`brainmri.intensity.match_landmarks`
onto `looks` of the `val` scans of that source): an answer is *look-stable* when every look
gets the same class. Each answer also gets its *look share* (`brainmri.lookprior`): the share,
among the `LOOK_K` training scans of the checkpoint's own training split nearest in look, of the
class it was given; an answer the look alone gives (share at least tau) is "look-decided"
(rule v4, logs/confident/rule.md, for tau in `LOOK_TAUS`).

Strata (the collection itself carries no plane or sequence label):
- `source`: the scan's duplicate group's source (`brainmri.protocols.group_sources`);
- `brightness`: mean intensity inside the head at the model's input, in tertiles of `val`;
- `framing`: the head crop's share of the picture's area, in tertiles of `val`;
- `plane` and `contrast`: set by hand on the scans of `val` and of the first meningioma
  protocol's `loso` (`--labels`, logs/labels/README.md); "unlabelled" elsewhere.

Reported per set: accuracy, per-class recall and what each class is called instead; per
stratum and class, counts and accuracy; the share of answers marked confident and how many
of them are right, under the outcome as it stands, with "stable" added, and with "loosely
stable" added (the inverted scan gives the plain answer a probability of at least `LOOSE`), and
with "look-stable" added; and
`coverage_at_90`, the largest share of answers, ranked by top probability, that is right at
least 90% of the time (what a top-probability floor alone could mark confident); rule v6's
`floor_at_90`, the lowest top-probability floor at which the answers marked confident are right
at least 90% of the time, with what it keeps, and `floor_crossfit`, that floor chosen on four
fifths of the set and applied to the fifth left (pooled over the five), an estimate of what it
holds on scans it was not chosen on; with `--floor-from RESULT` (a held-out run's JSON,
`brainmri.familiarity.held_out_floor`), `confident_floor`: the confident answers at or above
that run's floor; rule v8's `no_tumour_floor_at_90` and `no_tumour_floor_crossfit`, the same
with the floor on "no tumour" answers only (the others kept as they stand), and with
`--no-tumour-floor-from RESULT`, `confident_no_tumour_floor`; and `frontier`: for each share of
`val` answers kept confident in `KEPT`, the
top-probability floor (on `val`) that keeps that share, and what it keeps on every set (what
confidence alone can buy on a held-out source at a given cost inside the collection). Writes
`<model>.json` under `--out` (a run that held a source out under `loso-<source>-<name>` unless
its name starts with `loso`: `result_name`) and prints Markdown tables.

`--bn-prior N` scores each checkpoint with single-scan batch-norm adaptation (`prior_batch_norm`,
addendum 18 of logs/loso/rule.md) and writes its results as `<model>-bn<N>`.

`--pair` scores two checkpoints of one protocol as the app's comparison does (`brainmri.service`:
when they answer differently, neither is confident) and writes `pair-<A>-<B>.json`: how often
they agree, each one's confident answers alone and those that stay confident in the comparison,
and the answers both mark confident, agreeing; each with how many are right.

`--checked` scores each checkpoint with the checkers installed beside it (`train.checkers`), as
the app and the batch command answer: its outcome is then the checked one (rule v18 of
logs/confident/rule.md), written as `<model>-checked.json`.

`--ensemble` scores N checkpoints of one recipe, protocol and validation split (`python -m train
--split-seed`) under rule v10's condition U (logs/confident/rule.md): confident when every member
marks its own answer confident and all agree, and rule v13's condition A: confident when the
first member marks its own answer confident and the others give its class (the first may be of
another recipe); it writes `ensemble-<first>-x<N>.json` with the ensembles of the first k
members, k = 2..N (`ensemble_summary`, `ensemble_table`).
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest

from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.familiarity import held_out_floor
from brainmri.intensity import invert_head, looks, match_landmarks
from brainmri.io import ImageLoadError, load_image
from brainmri.lookprior import DEFAULT_K as LOOK_K, LookPrior, look_features
from brainmri.outcomes import DEFAULT_MIN_CONFIDENCE, Outcome
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, kaggle_root, run_splits

log = logging.getLogger("generalisation")
HEAD = 0.04            # intensity (of 1) above which a pixel counts as head for `brightness`
LOOSE = 0.2            # "loosely stable": the inverted scan gives the plain answer at least this
TARGET = 0.9           # the accuracy "confident" should hold (`coverage_at_90`)
LEVEL = 0.95           # `--intervals`: the confidence level of the Wilson intervals
LOOK_TAUS = (0.96, 0.88, 0.8)   # look-decided: the answer's look share at least this (rule v4)
BOUND_CONTRAST = "t1"           # rule v5's bound: confident only on scans hand-labelled this
BOUND_PLANE = "axial"           # rule v7's bound: "no tumour" confident only on scans labelled this
KEPT = (0.95, 0.9, 0.85, 0.8, 0.7)   # frontier: shares of `val` answers kept confident
FOLDS = 5                       # floor_crossfit: folds, and the seed of their shuffle
HAND_SET = ("plane", "contrast")     # the kinds of hand-set label the breakdowns use
UNLABELLED = "unlabelled"
LABELS = Path("logs/labels/plane_contrast.csv")   # the hand-set plane and contrast labels


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """The options every study that scores sets of scans through `Predictor` takes."""
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=0, help="score only N evenly spaced scans a set (smoke tests)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--device", default="cpu")


def evenly(samples: list, limit: int) -> list:
    """`--limit`: at most `limit` evenly spaced samples (0: all of them)."""
    return samples[::max(1, len(samples) // limit)][:limit] if limit else samples


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="*")
    p.add_argument("--data", type=Path, help=DATA_HELP)
    p.add_argument("--table", type=Path, nargs="+", default=[], metavar="JSON",
                   help="print the tables of results already written (no scoring)")
    p.add_argument("--intervals", action="store_true",
                   help="with --table: print instead how sure each confident-right share is "
                        "(right k of n, Wilson interval)")
    p.add_argument("--out", type=Path, default=Path("logs/eval/generalisation"))
    p.add_argument("--labels", type=Path, default=LABELS,
                   help="hand-set plane and contrast labels (CSV; logs/labels/README.md)")
    p.add_argument("--floor-from", type=Path, metavar="RESULT",
                   help="a held-out run's JSON: also score the confident answers at or above its "
                        "floor_at_90 on loso_training (rule v6)")
    p.add_argument("--no-tumour-floor-from", type=Path, metavar="RESULT",
                   help="a held-out run's JSON: also score the confident answers with its "
                        "no_tumour_floor_at_90 on loso_training applied to 'no tumour' answers (rule v8)")
    add_scoring_arguments(p)
    p.add_argument("--bn-prior", type=float, default=None, metavar="N",
                   help="normalise each scan with its batch-norm statistics mixed with the "
                        "training ones, N : 1 (prior_batch_norm)")
    p.add_argument("--pair", action="store_true",
                   help="two checkpoints of one protocol: also score them as the app's comparison "
                        "(pair-A-B.json: answers differing are both caution)")
    p.add_argument("--checked", action="store_true",
                   help="score each checkpoint with its installed checkers, as the app answers "
                        "(train.checkers; results written as <model>-checked.json)")
    p.add_argument("--ensemble", action="store_true",
                   help="checkpoints of one recipe, protocol and validation split: also score "
                        "rule v10's unanimous outcome (ensemble-A-xN.json)")
    return p


def unit_input(predictor: Predictor, tensor: torch.Tensor) -> torch.Tensor:
    """A prepared (C, S, S) normalised tensor -> its (1, S, S) luminance in [0, 1]."""
    preset = predictor.preset
    return tensor[:1] * preset.std[0] + preset.mean[0]


def read_labels(path: Path | None, data: Path) -> dict[str, dict[str, str]]:
    """Hand-set labels (a CSV of `path` under the Kaggle root, then one column per label kind,
    e.g. plane and contrast) -> {absolute path: {kind: value}}; {} without a file."""
    if path is None or not Path(path).is_file():
        return {}
    root = kaggle_root(data)
    with open(path, newline="") as f:
        return {str(root / row.pop("path")): row for row in csv.DictReader(f)}


def prepared_batches(predictor: Predictor, samples, batch_size: int):
    """Yields, per batch of `samples`: (the readable ones, each prepared as the app prepares it,
    how many could not be read)."""
    for s in range(0, len(samples), batch_size):
        chunk, prepared, skipped = [], [], 0
        for smp in samples[s:s + batch_size]:
            try:
                prepared += predictor.prepare([smp.path])
                chunk.append(smp)
            except ImageLoadError:
                skipped += 1
        yield chunk, prepared, skipped


def score_set(predictor: Predictor, samples, sources: dict[str, str], batch_size: int,
              labels: dict[str, dict[str, str]] | None = None) -> dict:
    """Per-scan arrays for `samples`: label, probabilities (plain and inverted), outcome,
    is_mri, brightness, framing, source, the hand-set plane and contrast ("unlabelled" where
    `labels` has none), the input at the model's size. Unreadable files are skipped (counted)."""
    labels = labels or {}
    rows = {k: [] for k in ("label", "probs", "probs_inverted", "outcome", "is_mri",
                            "brightness", "framing", "source", "split", "path", "unit", "look")
            + HAND_SET}
    unreadable = 0
    for chunk, prepared, skipped in prepared_batches(predictor, samples, batch_size):
        unreadable += skipped
        if not prepared:
            continue
        preds = predictor.predict_batch(prepared=prepared)
        unit = torch.stack([unit_input(predictor, p.tensor) for p in prepared])
        inverted = predictor.preset.normalise(invert_head(unit)).contiguous()
        with torch.no_grad():
            logits, _ = predictor.logits_and_features(inverted)
        probs_inv = predictor.probabilities(logits.float()).cpu().numpy()
        for smp, p, pred, u, pi in zip(chunk, prepared, preds, unit, probs_inv):
            inside = u[u > HEAD]
            rows["label"].append(smp.label)
            rows["probs"].append([pred.probabilities[c] for c in predictor.classes])
            rows["probs_inverted"].append(pi.tolist())
            # "": no familiarity detector and no checkers, so `confident_mask` applies its own
            # min_top rule (the predictor's default floor, the same number)
            rows["outcome"].append(pred.outcome.value if predictor.familiarity is not None
                                   or predictor.checkers else "")
            rows["is_mri"].append(pred.is_mri)
            rows["brightness"].append(float(inside.mean()) if inside.numel() else 0.0)
            rows["framing"].append(framing_of(p))
            rows["source"].append(sources.get(str(smp.path), ""))
            rows["split"].append(smp.split)
            rows["path"].append(str(smp.path))
            rows["unit"].append(as_u8(u))
            rows["look"].append(look_features(rows["unit"][-1], rows["framing"][-1]))
            for kind in HAND_SET:
                rows[kind].append(labels.get(str(smp.path), {}).get(kind, UNLABELLED))
    out = {k: np.array(v) for k, v in rows.items()}
    out["unreadable"] = unreadable
    return out


def framing_of(prepared) -> float:
    """The head crop's share of the whole picture's area."""
    x0, y0, x1, y1 = prepared.box
    return (x1 - x0) * (y1 - y0) / float(prepared.grey.shape[0] * prepared.grey.shape[1])


def as_u8(unit: torch.Tensor) -> np.ndarray:
    """(1, S, S) luminance in [0, 1] -> (S, S) uint8."""
    return (unit[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def training_looks(predictor: Predictor, samples) -> tuple[np.ndarray, np.ndarray]:
    """The looks (`brainmri.lookprior.look_features`) and labels of `samples` (the
    checkpoint's training split), from its preset's crops alone (no model pass)."""
    feats, labels = [], []
    for smp in samples:
        try:
            p = predictor.preset.prepare(load_image(smp.path))
        except ImageLoadError:
            continue
        feats.append(look_features(as_u8(unit_input(predictor, p.tensor)), framing_of(p)))
        labels.append(smp.label)
    return np.array(feats), np.array(labels)


def score_looks(predictor: Predictor, scored: dict, source_looks: dict, batch_size: int) -> None:
    """Adds `probs_looks` (N, sources, classes) to `scored`: the probabilities once each scan (at
    the model's input) is rendered in each source's look (`brainmri.intensity.match_landmarks`)."""
    units = scored["unit"]
    per_look = []
    for look in source_looks.values():
        probs = []
        for s in range(0, len(units), batch_size):
            x = torch.stack([torch.from_numpy(match_landmarks(u, look)).float()[None] / 255
                             for u in units[s:s + batch_size]])
            with torch.no_grad():
                logits, _ = predictor.logits_and_features(predictor.preset.normalise(x).contiguous())
            probs.append(predictor.probabilities(logits.float()).cpu().numpy())
        per_look.append(np.concatenate(probs) if probs else np.zeros((0, len(predictor.classes))))
    scored["probs_looks"] = np.stack(per_look, 1) if per_look else np.zeros((len(units), 0, 0))


def subset(scored: dict, mask: np.ndarray) -> dict:
    """The rows of `scored` where `mask` holds (counts of unreadable files are not split)."""
    return {k: (v[mask] if isinstance(v, np.ndarray) else 0) for k, v in scored.items()}


def confident_mask(scored: dict, min_top: float) -> np.ndarray:
    """The outcome as it stands: "confident" from the checkpoint's own rule when it carries a
    familiarity detector, else (a run without one) a real MRI whose top probability reaches
    `min_top`."""
    outcome = scored["outcome"]
    if (outcome != "").all():
        return outcome == Outcome.CONFIDENT.value
    return scored["is_mri"] & (scored["probs"].max(1) >= min_top)


def coverage_at(right: np.ndarray, score: np.ndarray, target: float) -> dict:
    """Answers ranked by `score`, highest first: the largest share kept whose accuracy is at
    least `target`, and the lowest score kept (nan, 0: no share reaches it)."""
    order = np.argsort(-score, kind="stable")
    acc = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(acc >= target)
    if not len(ok):
        return {"share": 0.0, "min_score": float("nan")}
    k = int(ok.max())
    return {"share": float((k + 1) / len(order)), "min_score": float(score[order][k])}


def floor_at(confident: np.ndarray, right: np.ndarray, top: np.ndarray, target: float,
             applies: np.ndarray | None = None) -> dict:
    """Rule v6: the lowest top-probability floor at which the answers `confident` marks, kept
    only at or above it, are right at least `target` of the time (nan: no floor reaches it),
    and what it keeps (`held`, shares of the whole set). With `applies` (rule v8: the "no
    tumour" answers), the floor holds for those answers only and the others are kept as they
    stand; inf: only cautioning every one of them reaches `target`."""
    applies = np.ones_like(confident) if applies is None else applies
    base, floored = confident & ~applies, confident & applies
    order = np.argsort(-top[floored], kind="stable")          # the floored answers, surest first
    tops = top[floored][order]
    hits = right[base].sum() + np.concatenate([[0], np.cumsum(right[floored][order])])
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.flatnonzero(hits / (base.sum() + np.arange(len(tops) + 1)) >= target)   # 0/0: nan
    if not len(ok):
        return {"floor": float("nan"), **held(np.zeros_like(confident), right)}
    floor = float(tops[ok.max() - 1]) if ok.max() else float("inf")
    return {"floor": floor, **held(base | (floored & (top >= floor)), right)}


def floor_keeping(confident: np.ndarray, top: np.ndarray, share: float) -> float:
    """The highest top-probability floor that still keeps `share` of the answers confident
    (confident and at or above it); 0 when fewer than that are confident."""
    tops = np.sort(top[confident])[::-1]
    k = int(np.ceil(round(share * len(top), 9)))      # 0.7 * 10 is 7.000000000000001
    return 0.0 if k > len(tops) or k == 0 else float(tops[k - 1])


def frontier(scored: dict, min_top: float) -> list[dict]:
    """For each share in `KEPT`: the floor that keeps it of `val` confident, and what that
    floor keeps on every set (`held`)."""
    masks = {name: (confident_mask(s, min_top), s["probs"].max(1), s["probs"].argmax(1) == s["label"])
             for name, s in scored.items()}
    out = []
    for share in KEPT:
        floor = floor_keeping(masks["val"][0], masks["val"][1], share)
        out.append({"val_kept": share, "floor": floor,
                    "sets": {name: held(c & (t >= floor), r) for name, (c, t, r) in masks.items()}})
    return out


def floor_crossfit(confident: np.ndarray, right: np.ndarray, top: np.ndarray, target: float,
                   folds: int = FOLDS, applies: np.ndarray | None = None) -> dict:
    """`floor_at` chosen on all folds but one and applied to the one left, pooled over the
    folds (a fold whose others reach no floor keeps nothing); folds by a seeded shuffle."""
    applies = np.ones_like(confident) if applies is None else applies
    fold = np.random.default_rng(folds).permutation(len(right)) % folds
    kept = np.zeros(len(right), bool)
    for k in range(folds):
        out = fold == k
        floor = floor_at(confident[~out], right[~out], top[~out], target, applies[~out])["floor"]
        if not np.isnan(floor):
            kept[out] = confident[out] & (~applies[out] | (top[out] >= floor))
    return held(kept, right)


def tertile_edges(values: np.ndarray) -> list[float]:
    return [float(q) for q in np.quantile(values, [1 / 3, 2 / 3])]


def stratum(values: np.ndarray, edges: list[float]) -> np.ndarray:
    names = np.array(["low", "mid", "high"])
    return names[np.searchsorted(edges, values, side="right")]


def held(mask: np.ndarray, right: np.ndarray) -> dict:
    """The answers `mask` marks: their share of the set, their number, and how many are right."""
    return {"share": float(mask.mean()), "n": int(mask.sum()),
            "right": float(right[mask].mean()) if mask.any() else float("nan")}


def interval(h: dict, level: float = LEVEL) -> tuple[int, float, float] | None:
    """How many of a `held` result's answers are right, and the Wilson interval of their share
    at `level` (scipy's `binomtest`); None when it holds no answer."""
    if not h["n"]:
        return None
    k = int(round(h["right"] * h["n"]))
    ci = binomtest(k, h["n"]).proportion_ci(confidence_level=level, method="wilson")
    return k, float(ci.low), float(ci.high)


def sure_row(name: str, set_name: str, condition: str, h: dict) -> str:
    """One row of `intervals_table`: the answers marked confident, right k of n, the interval,
    and where `TARGET` stands against it."""
    got = interval(h)
    if got is None:
        return f"| {name} | {set_name} | {condition} | 0 | - | - | - |"
    k, low, high = got
    where = "above" if low >= TARGET else "below" if high < TARGET else "inside"
    return (f"| {name} | {set_name} | {condition} | {h['n']} | {k} ({h['right']:.1%}) | "
            f"{low:.1%} - {high:.1%} | {where} |")


def intervals_table(results: list[dict]) -> str:
    """How sure the "confident right" figures are: for each result's sets, the answers marked
    confident (a model's own; an ensemble's U and A at each size), how many are right, the
    Wilson interval at `LEVEL`, and whether `TARGET` lies below, inside or above it."""
    lines = [f"| model or members | set | confident | n | right | {LEVEL:.0%} interval | "
             f"{TARGET:.0%} is |", "|---|---|---|---|---|---|---|"]
    for r in results:
        if "by_size" in r:
            for k, sets in r["by_size"].items():
                names = ", ".join(r["models"][:int(k)])
                for set_name, s in sets.items():
                    lines.append(sure_row(names, set_name, "U, unanimous", s["unanimous"]))
                    if "first_checked" in s:                        # before v13: none
                        lines.append(sure_row(names, set_name, "A, first checked", s["first_checked"]))
        elif "models" in r:
            for set_name, s in r["sets"].items():
                lines.append(sure_row(" vs ".join(r["models"]), set_name, "both, agreeing",
                                      s["both_confident"]))
        else:
            for set_name, s in r["sets"].items():
                lines.append(sure_row(r["model"], set_name, "own", s[Outcome.CONFIDENT.value]))
    return "\n".join(lines)


def cell(h: dict) -> str:
    """A `held` result as a table cell: "share (right)"."""
    return f"{h['share']:.1%} ({h['right']:.1%})"


def summarise(scored: dict, classes: tuple[str, ...], edges: dict[str, list[float]],
              min_top: float, floor: float | None = None, no_tumour_floor: float | None = None) -> dict:
    y = scored["label"]
    pred = scored["probs"].argmax(1)
    right = pred == y
    stable = pred == scored["probs_inverted"].argmax(1)
    loose = scored["probs_inverted"][np.arange(len(pred)), pred] >= LOOSE
    # look-stable: the same class in every source's look (rule v3, logs/confident/rule.md)
    look_stable = (scored["probs_looks"].argmax(-1) == pred[:, None]).all(1)
    confident = confident_mask(scored, min_top)
    top = scored["probs"].max(1)
    share = scored.get("look_share")
    per_class = {}
    for c, name in enumerate(classes):
        m = y == c
        if m.any():
            called = {classes[k]: int((pred[m] == k).sum()) for k in range(len(classes))}
            per_class[name] = {"n": int(m.sum()), "recall": float(right[m].mean()), "called": called}
    strata = {"source": scored["source"], **{kind: scored[kind] for kind in HAND_SET},
              "brightness": stratum(scored["brightness"], edges["brightness"]),
              "framing": stratum(scored["framing"], edges["framing"])}
    breakdown = {}
    for kind, values in strata.items():
        breakdown[kind] = {}
        for v in sorted(set(values.tolist())):
            m = values == v
            breakdown[kind][v] = {
                "n": int(m.sum()), "accuracy": float(right[m].mean()),
                "per_class": {classes[c]: {"n": int((m & (y == c)).sum()),
                                           "accuracy": float(right[m & (y == c)].mean())}
                              for c in range(len(classes)) if (m & (y == c)).any()}}

    return {"n": int(len(y)), "unreadable": int(scored["unreadable"]), "accuracy": float(right.mean()),
            "per_class": per_class, "stable": float(stable.mean()),
            "stable_right": float(right[stable].mean()) if stable.any() else float("nan"),
            "unstable_right": float(right[~stable].mean()) if (~stable).any() else float("nan"),
            Outcome.CONFIDENT.value: held(confident, right), "confident_stable": held(confident & stable, right),
            "loosely_stable": float(loose.mean()), "confident_loosely_stable": held(confident & loose, right),
            "look_stable": float(look_stable.mean()),
            "look_stable_right": float(right[look_stable].mean()) if look_stable.any() else float("nan"),
            "look_unstable_right": float(right[~look_stable].mean()) if (~look_stable).any() else float("nan"),
            "confident_look_stable": held(confident & look_stable, right),
            "coverage_at_90": coverage_at(right, top, TARGET),
            "floor_at_90": floor_at(confident, right, top, TARGET),
            "floor_crossfit": floor_crossfit(confident, right, top, TARGET),
            "confident_floor": None if floor is None else {
                "floor": floor, **held(confident & (top >= floor), right)},
            "look_prior": None if share is None else {
                str(tau): look_decided(share >= tau, right, confident, y, classes)
                for tau in LOOK_TAUS},
            "contrast_bound": contrast_bound(scored["contrast"], right, confident),
            "plane_bound": plane_bound(scored["plane"], scored["contrast"], pred == classes.index(NO_TUMOUR),
                                       right, confident) if NO_TUMOUR in classes else None,
            **(no_tumour_floors(pred == classes.index(NO_TUMOUR), confident, right, top, no_tumour_floor)
               if NO_TUMOUR in classes else {}),
            "breakdown": breakdown}


def no_tumour_floors(no_tumour: np.ndarray, confident: np.ndarray, right: np.ndarray, top: np.ndarray,
                     given: float | None) -> dict:
    """Rule v8's figures: `floor_at` and `floor_crossfit` with the floor on the "no tumour"
    answers (`no_tumour`) only, and with a floor `given` (a held-out run's), the confident answers
    it leaves and how many of the confident "no tumour" answers stay confident."""
    out = {"no_tumour_floor_at_90": floor_at(confident, right, top, TARGET, no_tumour),
           "no_tumour_floor_crossfit": floor_crossfit(confident, right, top, TARGET, applies=no_tumour),
           "confident_no_tumour_floor": None}
    if given is not None:
        stays = confident & no_tumour & (top >= given)
        out["confident_no_tumour_floor"] = {
            "floor": given, **held((confident & ~no_tumour) | stays, right),
            "no_tumour_confident": int((confident & no_tumour).sum()), "no_tumour_kept": int(stays.sum())}
    return out


def contrast_bound(contrast: np.ndarray, right: np.ndarray, confident: np.ndarray) -> dict | None:
    """Rule v5's bound, over the hand-labelled scans only (None without any): the confident
    answers as they stand, and those left if every scan not labelled `BOUND_CONTRAST` were
    cautioned (a perfect contrast detector); shares of the labelled scans."""
    labelled = contrast != UNLABELLED
    if not labelled.any():
        return None
    keep = contrast[labelled] == BOUND_CONTRAST
    right, confident = right[labelled], confident[labelled]
    return {"labelled": int(labelled.sum()), "labelled_share": float(labelled.mean()),
            "kept_contrast": float(keep.mean()), Outcome.CONFIDENT.value: held(confident, right),
            "confident_if_kept": held(confident & keep, right)}


def plane_bound(plane: np.ndarray, contrast: np.ndarray, no_tumour: np.ndarray, right: np.ndarray,
                confident: np.ndarray) -> dict | None:
    """Rule v7's bound, over the scans with a hand-set plane only (None without any): the
    confident answers as they stand, those left if every "no tumour" answer (`no_tumour`) on a
    scan not labelled `BOUND_PLANE` were cautioned (a perfect plane detector), and those left
    with v5's perfect contrast gate as well; shares of the labelled scans."""
    labelled = plane != UNLABELLED
    if not labelled.any():
        return None
    plane, contrast, no_tumour = plane[labelled], contrast[labelled], no_tumour[labelled]
    right, confident = right[labelled], confident[labelled]
    kept = confident & ~(no_tumour & (plane != BOUND_PLANE))
    return {"labelled": int(labelled.sum()), "labelled_share": float(labelled.mean()),
            "kept_plane": float((plane == BOUND_PLANE).mean()),
            "no_tumour_answers_off_plane": int((no_tumour & (plane != BOUND_PLANE)).sum()),
            Outcome.CONFIDENT.value: held(confident, right), "confident_if_kept": held(kept, right),
            "with_contrast": held(kept & (contrast == BOUND_CONTRAST), right)}


def look_decided(decided: np.ndarray, right: np.ndarray, confident: np.ndarray, y: np.ndarray,
                 classes: tuple[str, ...]) -> dict:
    """Rule v4's figures for one tau: `decided` marks the answers the look alone gives."""
    def rate(mask: np.ndarray) -> float:
        return float(right[mask].mean()) if mask.any() else float("nan")
    return {"decided": float(decided.mean()), "decided_right": rate(decided), "open_right": rate(~decided),
            "confident_open": held(confident & ~decided, right),
            "decided_by_class": {classes[c]: float(decided[y == c].mean())
                                 for c in range(len(classes)) if (y == c).any()}}


def prior_batch_norm(model: torch.nn.Module, prior: float) -> int:
    """Single-scan batch-norm adaptation (Schneider et al. 2020, "Improving robustness against
    common corruptions by covariate shift adaptation"): every 2-D batch-norm layer of `model`
    normalises each scan with its training statistics mixed with the scan's own spatial
    statistics, `prior` : 1 (the scan counts as one batch against `prior` training batches;
    a large prior gives the layer back, 0 is instance normalisation). Each scan is normalised
    on its own, so no answer depends on the others of its batch. Changes `model` in place;
    returns the number of layers changed."""
    share = 1.0 / (prior + 1.0)

    def forward(bn: torch.nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        mean = ((1 - share) * bn.running_mean.view(1, -1, 1, 1)
                + share * xf.mean((2, 3), keepdim=True))
        var = ((1 - share) * bn.running_var.view(1, -1, 1, 1)
               + share * xf.var((2, 3), unbiased=False, keepdim=True))
        y = (xf - mean) * torch.rsqrt(var + bn.eps)
        if bn.affine:
            y = y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)

    layers = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in layers:
        bn.forward = forward.__get__(bn)
    return len(layers)


def result_name(name: str, holdout: str | None) -> str:
    """The name a checkpoint's results are written under (`<name>.json`): a run that held a
    source out and was not named for it (`loso-...`) gets the source in front, so it is never
    written over a shipped checkpoint's results of the same architecture."""
    return name if not holdout or name.startswith("loso") else f"loso-{holdout}-{name}"


def evaluate(path: Path, args, keep: dict | None = None) -> dict:
    """One checkpoint's results; `keep`, when given, receives its per-scan arrays by set and its
    top-probability floor (for `pair_summary`)."""
    bn_prior = getattr(args, "bn_prior", None)
    # Batch-norm is folded into the convolutions for speed; adapting it needs the layers.
    checked = getattr(args, "checked", False)
    predictor = Predictor.from_checkpoint(path, device=args.device, fold_bn=bn_prior is None,
                                          checked=checked)
    if checked:
        if not predictor.checkers:
            raise SystemExit(f"--checked: no checkers installed for {path} (train.checkers)")
        predictor.meta["name"] = f"{predictor.name}-checked"
    if bn_prior is not None:
        log.info("%s: %d batch-norm layers adapted to each scan (prior %g)", predictor.name,
                 prior_batch_norm(predictor.model, bn_prior), bn_prior)
        predictor.meta["name"] = f"{predictor.name}-bn{bn_prior:g}"
    margs = predictor.meta.get("args", {})
    holdout = margs.get("holdout_source")
    splits = run_splits(args.data, margs)
    sets = {"val": splits.val, ("loso" if holdout else "clean"): splits.loso if holdout else splits.clean}
    # A run without a familiarity detector: the service's top-probability floor stands in.
    min_top = float(getattr(predictor.familiarity, "min_confidence", DEFAULT_MIN_CONFIDENCE))
    scored, labels = {}, read_labels(getattr(args, "labels", None), args.data)
    for name, samples in sets.items():
        samples = evenly(samples, args.limit)
        t = time.time()
        scored[name] = score_set(predictor, samples, splits.sources, args.batch_size, labels)
        log.info("%s %s: %d scans in %.0f s", predictor.name, name, len(samples), time.time() - t)
    edges = {k: tertile_edges(scored["val"][k]) for k in ("brightness", "framing")}
    val = scored["val"]
    source_looks = looks(val["unit"], val["source"])
    source_looks = {k: v for k, v in source_looks.items() if k}          # files of no source
    for s in scored.values():
        score_looks(predictor, s, source_looks, args.batch_size)
    # The look prior of the checkpoint's own training split (rule v4): model-independent.
    t = time.time()
    train = splits.train[::max(1, len(splits.train) // (4 * args.limit))] if args.limit else splits.train
    train_looks, train_labels = training_looks(predictor, train)
    prior = LookPrior.fit(train_looks, train_labels, len(predictor.classes),
                          k=min(LOOK_K, len(train_labels)))
    log.info("%s look prior: %d training looks in %.0f s", predictor.name, len(train_labels), time.time() - t)
    for s in scored.values():
        s["look_share"] = prior.answer_shares(s["look"], s["probs"].argmax(1))
    if holdout:
        # The held-out pictures from Kaggle Training: the part a choice may be made on (the
        # Testing part only reports).
        scored["loso_training"] = subset(scored["loso"], scored["loso"]["split"] == "train")
    if keep is not None:
        keep.update(scored=scored, min_top=min_top)
    return {
        "checkpoint": str(path), "model": result_name(predictor.name, holdout),
        "checked": checked, "checkers": [c.name for c in predictor.checkers],
        "holdout_source": holdout, "holdout_classes": margs.get("holdout_classes"),
        "confident_rule": "checkpoint outcome" if predictor.familiarity is not None
                          else f"is_mri and top probability >= {min_top}",
        "tertile_edges": edges, "source_looks": source_looks, "look_k": prior.k,
        "floor_from": str(args.floor_from) if getattr(args, "floor_from", None) else None,
        "frontier": frontier(scored, min_top),
        "no_tumour_floor_from": (str(args.no_tumour_floor_from)
                                 if getattr(args, "no_tumour_floor_from", None) else None),
        "sets": {name: summarise(s, predictor.classes, edges, min_top, getattr(args, "floor", None),
                                 getattr(args, "no_tumour_floor", None))
                 for name, s in scored.items()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def members_agreeing(members: list[dict], min_tops: list[float], option: str) -> dict:
    """The arrays the comparison and the ensemble read, from one set scored by several
    checkpoints of one protocol and split: each one's answers, whether each is right and marked
    confident (`marked`), and where all answer alike."""
    if any(not np.array_equal(members[0]["path"], m["path"]) for m in members[1:]):
        raise SystemExit(f"--{option}: the checkpoints were scored on different scans "
                         "(give checkpoints of one protocol and one validation split)")
    answers = np.stack([m["probs"].argmax(1) for m in members])
    return {"y": members[0]["label"], "answers": answers, "right": answers == members[0]["label"],
            "marked": np.stack([confident_mask(m, t) for m, t in zip(members, min_tops)]),
            "agree": (answers == answers[0]).all(0)}


def pair_summary(a: dict, b: dict, min_top: tuple[float, float]) -> dict:
    """The comparison's outcome on one set scored by two checkpoints of one protocol (the
    service's `compare`: two models answering differently are both "caution"): how often they
    agree (and are right then), each one's confident answers alone and those left confident in
    the comparison, and the answers both mark confident, agreeing."""
    m = members_agreeing([a, b], list(min_top), "pair")
    (ca, cb), (ra, rb), agree = m["marked"], m["right"], m["agree"]
    alone = Outcome.CONFIDENT.value
    return {"n": int(len(m["y"])), "agree": held(agree, ra),
            "a": {alone: held(ca, ra), "confident_in_comparison": held(ca & agree, ra)},
            "b": {alone: held(cb, rb), "confident_in_comparison": held(cb & agree, rb)},
            "both_confident": held(ca & cb & agree, ra)}


def ensemble_summary(members: list[dict], min_tops: list[float]) -> dict:
    """Rule v10's condition U on one set scored by N checkpoints of one split: an answer is
    confident when every member marks its own answer confident and all give the same class; and
    rule v13's condition A (`first_checked`): the first member marks its own answer confident and
    every other member gives the same class. With each member's own confident answers (and their
    mean rightness, what U is weighed against), how often all agree, and the accuracy of the
    members' mean probability; and the scans every member gets wrong (`every_wrong`: the path
    under the Kaggle root, each member's answer), for a person to look at."""
    m = members_agreeing(members, min_tops, "ensemble")
    wrong = np.flatnonzero(~m["right"].any(0))
    own = [held(c, r) for c, r in zip(m["marked"], m["right"])]
    mean_probs = np.mean([s["probs"] for s in members], axis=0)
    return {"n": int(len(m["y"])), "members": len(members), "agree": held(m["agree"], m["right"][0]),
            "mean_probability_accuracy": float((mean_probs.argmax(1) == m["y"]).mean()),
            "own": own, "own_mean": {k: float(np.mean([o[k] for o in own])) for k in ("share", "right")},
            "unanimous": held(m["marked"].all(0) & m["agree"], m["right"][0]),
            "first_checked": held(m["marked"][0] & m["agree"], m["right"][0]),
            "every_wrong": [{"path": "/".join(Path(str(members[0]["path"][i])).parts[-3:]),
                             "answers": [CLASSES[a] for a in m["answers"][:, i]]} for i in wrong]}


def ensemble_table(result: dict) -> str:
    """The ensembles of the first k members, k = 2..N, one row per set and k."""
    lines = ["| members | set | n | all agree (right) | mean probability: accuracy | "
             "members' own confident: mean share (mean right) | unanimous confident (right) | "
             "first confident, all agree (right) |",
             "|---|---|---|---|---|---|---|---|"]
    for k, sets in result["by_size"].items():
        for name, s in sets.items():
            own = s["own_mean"]
            lines.append(f"| {k} | {name} | {s['n']} | {cell(s['agree'])} | "
                         f"{s['mean_probability_accuracy']:.1%} | {own['share']:.1%} ({own['right']:.1%}) | "
                         f"{cell(s['unanimous'])} | "
                         f"{cell(s['first_checked']) if 'first_checked' in s else '-'} |")  # before v13: none
    k, sets = list(result["by_size"].items())[-1]
    for name, s in sets.items():
        if "every_wrong" not in s:                   # written before rule v13's outcome
            continue
        wrong = s["every_wrong"]
        lines.append(f"\nEvery one of the {k} members wrong on {name}: {len(wrong)} scans")
        lines += [f"- {w['path']}: {', '.join(w['answers'])}" for w in wrong]
    return "\n".join(lines)


def pair_table(pair: dict) -> str:
    a, b = pair["models"]
    lines = [f"| set | n | agree (right) | {a}: confident (right) | {a}: confident in the comparison (right) | "
             f"{b}: confident (right) | {b}: confident in the comparison (right) | both confident, agreeing (right) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in pair["sets"].items():
        lines.append(f"| {name} | {s['n']} | {cell(s['agree'])} | {cell(s['a'][Outcome.CONFIDENT.value])} | "
                     f"{cell(s['a']['confident_in_comparison'])} | {cell(s['b'][Outcome.CONFIDENT.value])} | "
                     f"{cell(s['b']['confident_in_comparison'])} | {cell(s['both_confident'])} |")
    return "\n".join(lines)


def look_cells(s: dict) -> str:
    """The look-stable columns; "-" for results written before rule v3 measured them."""
    if "look_stable" not in s:
        return "- | - |"
    ck = s["confident_look_stable"]
    return f"{s['look_stable']:.1%} | {cell(ck)} |"


def rows_table(header: list[str], results: list[dict], rows) -> str:
    """A table of one rule's columns: `rows(set_result)` gives each row's cells after the model
    and set (none: the set has no such figures, e.g. written before the rule); "" when no set has."""
    lines = ["| " + " | ".join(["model", "set", *header]) + " |", "|" + "---|" * (len(header) + 2)]
    for r in results:
        for name, s in r["sets"].items():
            lines += ["| " + " | ".join([r["model"], name, *cells]) + " |" for cells in rows(s)]
    return "\n".join(lines) if len(lines) > 2 else ""


def look_table(results: list[dict]) -> str:
    """The look prior's columns (rule v4), one row per set and tau."""
    def rows(s):
        c = cell(s[Outcome.CONFIDENT.value])
        return [[tau, f"{v['decided']:.1%} ({v['decided_right']:.1%})", f"{v['open_right']:.1%}", c,
                 cell(v["confident_open"])] for tau, v in (s.get("look_prior") or {}).items()]
    return rows_table(["tau", "look-decided (right)", "not look-decided: right", "confident (right)",
                       "confident and not look-decided (right)"], results, rows)


def bound_table(results: list[dict]) -> str:
    """Rule v5's bound, one row per set with hand labels."""
    def rows(s):
        b = s.get("contrast_bound")
        return [[f"{b['labelled']} ({b['labelled_share']:.1%})", f"{b['kept_contrast']:.1%}",
                 cell(b[Outcome.CONFIDENT.value]), cell(b["confident_if_kept"])]] if b else []
    return rows_table(["hand-labelled (share of set)", f"labelled {BOUND_CONTRAST}", "confident (right)",
                       f"confident if only {BOUND_CONTRAST} stays (right)"], results, rows)


def plane_table(results: list[dict]) -> str:
    """Rule v7's bound, one row per set with hand-set planes."""
    def rows(s):
        b = s.get("plane_bound")
        return [[f"{b['labelled']} ({b['labelled_share']:.1%})", f"{b['kept_plane']:.1%}",
                 str(b["no_tumour_answers_off_plane"]), cell(b[Outcome.CONFIDENT.value]),
                 cell(b["confident_if_kept"]), cell(b["with_contrast"])]] if b else []
    return rows_table(["hand-labelled (share of set)", f"labelled {BOUND_PLANE}",
                       f"'no tumour' answers off {BOUND_PLANE}", "confident (right)",
                       "with those cautioned (right)", f"and only {BOUND_CONTRAST} (right)"], results, rows)


def floor_table(results: list[dict]) -> str:
    """Rule v6's columns, one row per set."""
    def rows(s):
        f, given = s.get("floor_at_90"), s.get("confident_floor")
        g = [f"{given['floor']:.4f}", cell(given)] if given else ["-", "-"]
        return [[cell(s[Outcome.CONFIDENT.value]), f"{f['floor']:.4f}", cell(f), cell(s["floor_crossfit"]),
                 *g]] if f else []
    return rows_table(["confident (right)", "floor at 90%", "confident at or above it (right)",
                       "cross-fitted (right)", "at the floor given", "confident at or above it (right)"],
                      results, rows)


def no_tumour_floor_table(results: list[dict]) -> str:
    """Rule v8's columns, one row per set; results written before it: none."""
    def rows(s):
        f, given = s.get("no_tumour_floor_at_90"), s.get("confident_no_tumour_floor")
        g = ([f"{given['floor']:.4f}", cell(given), f"{given['no_tumour_kept']} of {given['no_tumour_confident']}"]
             if given else ["-", "-", "-"])
        return [[cell(s[Outcome.CONFIDENT.value]), f"{f['floor']:.4f}", cell(f),
                 cell(s["no_tumour_floor_crossfit"]), *g]] if f else []
    return rows_table(["confident (right)", "'no tumour' floor at 90%", "confident with it (right)",
                       "cross-fitted (right)", "at the floor given", "confident with it (right)",
                       "confident 'no tumour' answers kept"], results, rows)


def frontier_table(results: list[dict]) -> str:
    """The frontier, one row per model, share of `val` kept and set; results written before it: none."""
    lines = ["| model | val kept confident | floor | set | confident (right) |", "|---|---|---|---|---|"]
    for r in results:
        for f in r.get("frontier") or []:
            lines += [f"| {r['model']} | {f['val_kept']:.0%} | {f['floor']:.4f} | {name} | {cell(h)} |"
                      for name, h in f["sets"].items()]
    return "\n".join(lines) if len(lines) > 2 else ""


def table(results: list[dict]) -> str:
    lines = ["| model | set | n | accuracy | per-class recall | stable | confident (right) | "
             "confident and stable (right) | confident and loosely stable (right) | "
             "look-stable | confident and look-stable (right) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name, s in r["sets"].items():
            recall = ", ".join(f"{c[:4]} {v['recall']:.1%} ({v['n']})" for c, v in s["per_class"].items())
            c, cs, cl = s[Outcome.CONFIDENT.value], s["confident_stable"], s["confident_loosely_stable"]
            lines.append(f"| {r['model']} | {name} | {s['n']} | {s['accuracy']:.1%} | {recall} | "
                         f"{s['stable']:.1%} | {cell(c)} | {cell(cs)} | {cell(cl)} | "
                         + look_cells(s))
    lines += ["", "| model | set | stratum | value | n | accuracy | per class: accuracy (n) |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for name, s in r["sets"].items():
            for kind, values in s["breakdown"].items():
                for v, b in values.items():
                    per = ", ".join(f"{c[:4]} {x['accuracy']:.1%} ({x['n']})" for c, x in b.get("per_class", {}).items())
                    lines.append(f"| {r['model']} | {name} | {kind} | {v} | {b['n']} | {b['accuracy']:.1%} | {per} |")
    parts = [p for p in (look_table(results), bound_table(results), floor_table(results),
                         plane_table(results), frontier_table(results), no_tumour_floor_table(results)) if p]
    return "\n\n".join(["\n".join(lines), *parts])


def main(args: argparse.Namespace) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if getattr(args, "table", None):
        results = [json.loads(path.read_text()) for path in args.table]
        if getattr(args, "intervals", False):
            print(intervals_table(results))
            return results
        singles = [r for r in results if "models" not in r]      # not a pair's or an ensemble's
        print("\n\n".join([*([table(singles)] if singles else []),
                            *((ensemble_table if "by_size" in r else pair_table)(r)
                              for r in results if "models" in r)]))
        return results
    if not args.checkpoints or args.data is None:
        raise SystemExit("give checkpoints and --data, or --table JSON...")
    for flag, key in (("floor_from", "floor_at_90"), ("no_tumour_floor_from", "no_tumour_floor_at_90")):
        try:      # read first: a result without a floor is refused before any scoring
            given = getattr(args, flag, None)
            setattr(args, flag.removesuffix("_from"), held_out_floor(given, key=key) if given else None)
        except (OSError, ValueError) as e:
            raise SystemExit(f"--{flag.replace('_', '-')}: {e}")
    if args.threads:
        torch.set_num_threads(args.threads)
    pair, ensemble = getattr(args, "pair", False), getattr(args, "ensemble", False)
    if pair and len(args.checkpoints) != 2:
        raise SystemExit("--pair needs exactly two checkpoints")
    if ensemble and len(args.checkpoints) < 2:
        raise SystemExit("--ensemble needs at least two checkpoints")
    args.out.mkdir(parents=True, exist_ok=True)
    results, kept = [], []
    for path in args.checkpoints:
        kept.append({})
        r = evaluate(path, args, kept[-1] if pair or ensemble else None)
        (args.out / f"{r['model']}.json").write_text(json.dumps(r, indent=1))
        results.append(r)
    print(table(results))
    if pair:
        (ka, kb), names = kept, [r["model"] for r in results]
        both = {"models": names, "checkpoints": [str(p) for p in args.checkpoints],
                "sets": {name: pair_summary(ka["scored"][name], kb["scored"][name],
                                            (ka["min_top"], kb["min_top"]))
                         for name in ka["scored"] if name in kb["scored"]},
                "date": results[0]["date"], "machine": results[0]["machine"]}
        (args.out / f"pair-{names[0]}-{names[1]}.json").write_text(json.dumps(both, indent=1))
        print("\n" + pair_table(both))
    if ensemble:
        names = [r["model"] for r in results]
        sizes = {k: {name: ensemble_summary([m["scored"][name] for m in kept[:k]],
                                            [m["min_top"] for m in kept[:k]])
                     for name in kept[0]["scored"] if all(name in m["scored"] for m in kept[:k])}
                 for k in range(2, len(kept) + 1)}
        every = {"models": names, "checkpoints": [str(p) for p in args.checkpoints],
                 "by_size": sizes, "date": results[0]["date"], "machine": results[0]["machine"]}
        (args.out / f"ensemble-{names[0]}-x{len(names)}.json").write_text(json.dumps(every, indent=1))
        print("\n" + ensemble_table(every))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
