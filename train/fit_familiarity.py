"""Fit a checkpoint's familiarity detector and its two thresholds, on the inference path.

    python -m train.fit_familiarity checkpoints/resnet50.safetensors --data ../shared/data          # report
    python -m train.fit_familiarity checkpoints/resnet50.safetensors --data ../shared/data --write  # store
    python -m train.fit_familiarity checkpoints/resnet50.safetensors --data ../shared/data --compare

The rule is docs/familiarity.md's, written before any measurement. The taps' statistics
(`brainmri.familiarity`) of every training scan of the checkpoint's own split (copies dropped)
and of every validation scan are computed exactly as the app computes them (`Predictor.prepare`
on the files, one trunk pass each); the detector is fitted on the training scans; on the
validation scans, `min_familiarity` is `--quantile` (a familiarity below it is "unfamiliar
acquisition") and `min_confidence` is the `--quantile` of their top probability ("low
confidence"). The confident share it reports is the app's outcome (`outcomes.decide` on the
input check, the not-an-MRI feature check and these cautions). Nothing from Kaggle Testing is
read. `--floor-from RESULT` raises `min_confidence` to the floor learnt on a held-out source
(`brainmri.familiarity.held_out_floor` of a leave-one-source-out run's `studies.generalisation`
JSON; rule v6 of logs/confident/rule.md) when that is higher. `--write` replaces the `fam.*` tensors and
`meta["familiarity"]` (weights and the not-an-MRI detector untouched).

`--compare` scores the three candidate statistics (`CANDIDATES`) on the development shifts
(`brainmri.shifts.DEV`) of the validation scans and prints the AUROC of each; the rule picks the
highest mean (within 0.005, the simpler). Statistics are cached in `--cache-dir`, keyed by the
checkpoint's weights, so a second run costs no trunk pass.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from brainmri import familiarity as fam
from brainmri import outcomes
from brainmri.checkpoint import update_metadata
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, run_splits
from brainmri.shifts import DEV
from brainmri.tapstats import auroc, cached_stats, from_file, shifted, tap_stats, weights_digest

log = logging.getLogger("fit_familiarity")

# name -> (taps: "last" or "all", statistics); in order of simplicity (docs/familiarity.md)
CANDIDATES = {"last-mean": ("last", "mean"), "multi-mean": ("all", "mean"),
              "multi-meanstd": ("all", "meanstd")}
DEFAULT = "multi-mean"
TIE = 0.005


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--candidate", choices=sorted(CANDIDATES), default=DEFAULT,
                   help="statistics of the detector written (chosen by --compare's rule)")
    p.add_argument("--quantile", type=float, default=0.025,
                   help="validation share below each threshold (familiarity, top probability)")
    p.add_argument("--floor-from", type=Path, metavar="RESULT",
                   help="a held-out run's studies.generalisation JSON: min_confidence is at least "
                        "its floor_at_90 on loso_training (rule v6)")
    p.add_argument("--dims", type=int, default=256, help="PCA dimensions per tap, at most")
    p.add_argument("--compare", action="store_true", help="score the candidates on the development shifts")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=0,
                   help="at most N scans per split, evenly spread over it (every class) (0: all)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="statistics cache")
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", action="store_true", help="store the detector in the checkpoint")
    return p


def candidate_taps(predictor: Predictor, candidate: str) -> list[int]:
    which, _ = CANDIDATES[candidate]
    return list(predictor.taps) if which == "all" else [predictor.taps[-1]]


def fit_candidate(predictor: Predictor, candidate: str, train: dict, train_y: np.ndarray,
                  val: dict, quantile: float, dims: int) -> fam.Familiarity:
    """The detector of `candidate` fitted on `train`, thresholds from `val` by the rule."""
    taps, kind = candidate_taps(predictor, candidate), CANDIDATES[candidate][1]
    det = fam.Familiarity.fit(fam.as_features(tap_stats(train), taps, kind), train_y, kind, dims)
    val_u = det.unfamiliarity(fam.as_features(tap_stats(val), taps, kind), val["probs"].argmax(1))
    det.val_unfamiliarity = np.sort(val_u)
    det.min_familiarity = quantile
    det.min_confidence = float(np.quantile(val["probs"].max(1), quantile))
    return det


def familiarity_of(det: fam.Familiarity, stats: dict) -> np.ndarray:
    return det.familiarity(det.unfamiliarity(fam.as_features(tap_stats(stats), det.taps, det.kind),
                                             stats["probs"].argmax(1)))


def compare(predictor: Predictor, args, weights: str, val_samples: list, train: dict,
            train_y: np.ndarray, val: dict) -> dict:
    """AUROC of unfamiliarity, development shift vs validation, per candidate; the rule's pick."""
    keys = [str(s.path) for s in val_samples]
    dev = {name: cached_stats(predictor, args.cache_dir, weights, f"dev-{name}", keys,
                              [shifted(s.path, shift) for s in val_samples], args.batch_size)
           for name, shift in DEV.items()}
    table = {}
    for cand in CANDIDATES:
        det = fit_candidate(predictor, cand, train, train_y, val, args.quantile, args.dims)
        base = det.unfamiliarity(fam.as_features(tap_stats(val), det.taps, det.kind), val["probs"].argmax(1))
        row = {}
        for name, stats in dev.items():
            u = det.unfamiliarity(fam.as_features(tap_stats(stats), det.taps, det.kind), stats["probs"].argmax(1))
            row[name] = auroc(base, u)
        row["mean"] = float(np.mean(list(row.values())))
        table[cand] = row
    best = max(v["mean"] for v in table.values())
    chosen = next(c for c in CANDIDATES if table[c]["mean"] >= best - TIE)
    print("\n| candidate | " + " | ".join(DEV) + " | mean |")
    print("|---|" + "---:|" * (len(DEV) + 1))
    for cand, row in table.items():
        print(f"| {cand} | " + " | ".join(f"{row[n]:.3f}" for n in (*DEV, "mean")) + " |")
    print(f"\nchosen by the rule: {chosen}\n")
    return {"auroc": table, "chosen": chosen}


def spread(samples: list, limit: int) -> list:
    """At most `limit` samples taken at an even stride (the splits are ordered by class)."""
    if limit <= 0 or limit >= len(samples):
        return list(samples)
    return [samples[i] for i in np.linspace(0, len(samples) - 1, limit).round().astype(int)]


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0 < args.quantile < 0.5:
        raise SystemExit(f"--quantile must lie in (0, 0.5), got {args.quantile}")
    try:      # read first: a result without a floor is refused before any trunk pass
        held_out = fam.held_out_floor(args.floor_from) if args.floor_from else 0.0
    except (OSError, ValueError) as e:
        raise SystemExit(f"--floor-from: {e}")
    torch.set_num_threads(args.threads)
    start = time.time()
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, checked=False)
    margs = predictor.meta.get("args", {})
    splits = run_splits(args.data, margs, cache_dir=args.cache_dir)
    train_s, val_s = spread(splits.train, args.limit), spread(splits.val, args.limit)
    weights = weights_digest(args.checkpoint)
    stats = {name: cached_stats(predictor, args.cache_dir, weights, name, [str(s.path) for s in samples],
                                [from_file(s.path) for s in samples], args.batch_size)
             for name, samples in (("train", train_s), ("val", val_s))}
    train, val = stats["train"], stats["val"]
    train_y = np.array([train_s[i].label for i in train["kept"]])
    val_y = np.array([val_s[i].label for i in val["kept"]])
    report = {"checkpoint": str(args.checkpoint), "candidate": args.candidate,
              "train_scans": len(train_y), "val_scans": len(val_y)}
    if args.compare:
        report["compare"] = compare(predictor, args, weights, [val_s[i] for i in val["kept"]],
                                    train, train_y, val)
    det = fit_candidate(predictor, args.candidate, train, train_y, val, args.quantile, args.dims)
    quantile_floor = det.min_confidence
    det.min_confidence = max(quantile_floor, held_out)
    familiarity, top = familiarity_of(det, val), val["probs"].max(1)
    # The not-an-MRI feature check on the pooled features, the last tap's means (as the bench).
    features_ok = predictor.feature_check(torch.as_tensor(val[f"mean{predictor.taps[-1]}"]))[1]
    is_mri = val["input_ok"].astype(bool) & features_ok
    verdicts = [outcomes.decide(det.reasons(f, p), ok) for f, p, ok in zip(familiarity, top, is_mri)]
    confident = np.array([v.outcome is outcomes.Outcome.CONFIDENT for v in verdicts])
    right = val["probs"].argmax(1) == val_y
    report.update({"taps": det.taps, "stats": det.kind, "min_familiarity": det.min_familiarity,
                   "min_confidence": det.min_confidence, "min_confidence_quantile": quantile_floor,
                   "val_unfamiliar": float(np.mean(familiarity < det.min_familiarity)),
                   "val_low_confidence": float(np.mean(top < det.min_confidence)),
                   "val_not_mri": float(np.mean(~is_mri)),
                   "val_confident": float(confident.mean()),
                   "val_accuracy": float(right.mean()),
                   "val_accuracy_confident": float(right[confident].mean()) if confident.any() else None})
    if args.write:
        update_metadata(args.checkpoint, extra=det.tensors(), drop_prefix=fam.PREFIX, familiarity={
            **det.describe(), "candidate": args.candidate, "dims": args.dims, "quantile": args.quantile,
            "fitted_on": f"train ({len(train_y)} scans, inference path)",
            "threshold_on": f"val ({len(val_y)} scans): familiarity and top probability at their "
                            f"{100 * args.quantile:g}th percentiles"
                            + (f"; top probability at least the floor of {args.floor_from.name} "
                               "(rule v6)" if args.floor_from else ""),
            "rule": "docs/familiarity.md", "fitted_by": "train.fit_familiarity",
            "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        report["written"] = True
    report["seconds"] = round(time.time() - start, 1)
    report["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    report["threads"] = args.threads
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
