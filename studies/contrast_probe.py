"""Could a contrast detector be built inside this collection? Rule v5's follow-up.

    python -m studies.contrast_probe checkpoints/resnet50.safetensors --data ../shared/data \\
        --out logs/eval/generalisation/contrast-probe.json

Rule v5 (logs/confident/rule.md) bounded "caution unless the scan is T1-weighted" with the hand
labels as a perfect detector. A real one would be fitted on labelled scans of this collection,
where a scan that is not T1 is almost always a no-tumour scan. This asks whether such a
detector finds *tumours* on other contrasts, the scans it would exist for. The hand labels
(`--labels`, logs/labels/README.md) cover the shipped split's `val` and the first meningioma
protocol's held-out set (`loso`: meningiomas from the other sources, some of them not T1).

Two feature sets, each into a logistic regression (standardised; class-balanced) of "not T1":
- `look`: `brainmri.lookprior.look_features`, ten numbers with no anatomy in them;
- `model`: the checkpoint's last-block features as the app computes them
  (`Predictor.logits_and_features`), reduced by PCA to `--dims`.
Reported for each, at probability `THRESHOLD`: cross-validated over every labelled scan
(`--folds`, stratified), the share of non-T1 scans flagged and of T1 scans flagged; and fitted
on `val` alone then applied to `loso`, the same two shares there. Writes `--out` (JSON) and
prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainmri.lookprior import look_features
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, OTHER, build_splits
from studies.generalisation import (BOUND_CONTRAST, LABELS, UNLABELLED, as_u8, framing_of, read_labels,
                                    unit_input)

THRESHOLD = 0.5
# The labelled sets: the shipped split's validation scans, and protocol 1's held-out scans.
PROTOCOL_1 = {"holdout_source": OTHER, "holdout_classes": ["meningioma"]}


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="whose features `model` uses (a shipped one)")
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--labels", type=Path, default=LABELS)
    p.add_argument("--out", type=Path, default=Path("logs/eval/generalisation/contrast-probe.json"))
    p.add_argument("--dims", type=int, default=32, help="PCA dimensions of the `model` features")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    return p


def features(predictor: Predictor, samples, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(look (N, 10), model (N, D)) of `samples`, as the app prepares each scan."""
    look, model = [], []
    for s in range(0, len(samples), batch_size):
        prepared = predictor.prepare([smp.path for smp in samples[s:s + batch_size]])
        x = torch.stack([p.tensor for p in prepared])
        with torch.no_grad():
            _, feats = predictor.logits_and_features(x)
        model.append(feats.float().reshape(len(prepared), -1).numpy())
        look += [look_features(as_u8(unit_input(predictor, p.tensor)), framing_of(p)) for p in prepared]
    return np.array(look), np.concatenate(model)


def detector(kind: str, dims: int, n: int):
    """Standardise (`model`: then PCA to `dims`, fewer than the n scans fitted on, with room
    for uneven folds), then a class-balanced logistic regression."""
    steps = [StandardScaler()] + ([PCA(min(dims, max(1, n - 3)), random_state=0)] if kind == "model" else [])
    return make_pipeline(*steps, LogisticRegression(max_iter=3000, class_weight="balanced"))


def flagged(p: np.ndarray, not_t1: np.ndarray) -> dict:
    """At `THRESHOLD`: the share of non-T1 scans flagged, and of T1 scans flagged."""
    f = p >= THRESHOLD
    return {"non_t1": int(not_t1.sum()), "t1": int((~not_t1).sum()),
            "non_t1_flagged": float(f[not_t1].mean()) if not_t1.any() else float("nan"),
            "t1_flagged": float(f[~not_t1].mean()) if (~not_t1).any() else float("nan")}


def probe(sets: dict[str, dict[str, np.ndarray]], dims: int, folds: int) -> dict:
    """`sets`: name -> {"look", "model", "not_t1"} of labelled scans; needs "val" and "loso"."""
    out = {}
    for kind in ("look", "model"):
        x = np.concatenate([s[kind] for s in sets.values()])
        y = np.concatenate([s["not_t1"] for s in sets.values()])
        k = min(folds, int(y.sum()), int((~y).sum()))
        cv = StratifiedKFold(k, shuffle=True, random_state=0)
        smallest_fit = len(y) - -(-len(y) // k)              # the fewest scans a fold is fitted on
        p = cross_val_predict(detector(kind, dims, smallest_fit), x, y, cv=cv, method="predict_proba")[:, 1]
        fitted = detector(kind, dims, len(sets["val"]["not_t1"])).fit(sets["val"][kind], sets["val"]["not_t1"])
        out[kind] = {"folds": k, "cross_validated": flagged(p, y),
                     "val_to_loso": flagged(fitted.predict_proba(sets["loso"][kind])[:, 1],
                                            sets["loso"]["not_t1"])}
    return out


def table(result: dict) -> str:
    lines = ["| features | fitted on | applied to | non-T1 flagged (n) | T1 flagged (n) |",
             "|---|---|---|---|---|"]
    for kind, r in result["probe"].items():
        k = r["folds"]
        for key, (fit, to) in {"cross_validated": (f"{k - 1} of {k} folds", "the other fold"),
                               "val_to_loso": ("val", "loso")}.items():
            f = r[key]
            lines.append(f"| {kind} | {fit} | {to} | {f['non_t1_flagged']:.1%} ({f['non_t1']}) | "
                         f"{f['t1_flagged']:.1%} ({f['t1']}) |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu", checked=False)
    labels = read_labels(args.labels, args.data)
    shipped, held_out = build_splits(args.data), build_splits(args.data, **PROTOCOL_1)
    sets = {}
    for name, samples in (("val", shipped.val), ("loso", held_out.loso)):
        samples = [s for s in samples if labels.get(str(s.path), {}).get("contrast", UNLABELLED) != UNLABELLED]
        look, model = features(predictor, samples, args.batch_size)
        not_t1 = np.array([labels[str(s.path)]["contrast"] != BOUND_CONTRAST for s in samples])
        sets[name] = {"look": look, "model": model, "not_t1": not_t1}
    result = {"checkpoint": str(args.checkpoint), "threshold": THRESHOLD, "dims": args.dims,
              "probe": probe(sets, args.dims, args.folds),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
