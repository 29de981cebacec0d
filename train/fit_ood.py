"""Refit a checkpoint's "is this a brain MRI?" detector on the inference path.

    python -m train.fit_ood checkpoints/resnet50.safetensors --data ../shared/data          # report
    python -m train.fit_ood checkpoints/resnet50.safetensors --data ../shared/data --write  # store

Training fits the detector on cached training-time crops; the app scores features of files
decoded and cropped by `Predictor.prepare`. This command recomputes both sides exactly as the
app does: features of every training scan of the checkpoint's own split (copies dropped), a
detector fitted on them (`--method`, `brainmri.ood`), and its threshold: by default the one
that refuses `--refused` (0.1%) of the pooled out-of-fold scans described below, a margin of
ten under the 1% budget for real scans, because scans of other sources and styles score higher
than the training ones; with `--refused 0`, the `--quantile` of the validation scans' scores.
Nothing from Kaggle Testing is read. `--write` replaces the `ood.*`
tensors and `meta["ood"]` in the checkpoint (weights untouched).

Reports, to compare detectors without touching a test set:
- the validation share refused by the stored detector and by the refitted one;
- `crossfit_refused`: the share of training scans refused by a detector fitted on the other
  `--crossfit` folds (threshold again from validation): how often unseen scans drawn like the
  training ones would be refused, on thousands of scans instead of validation's hundreds;
  the default threshold comes from these out-of-fold scans: it refuses the share `--refused`
  of the cross-fitted training scans and the validation scans pooled (each score taken
  relative to its own detector's `--quantile` threshold, so folds are comparable);
- `non_mri_accepted` and `val_auroc`: the feature score alone on `brainmri.gallery`'s non-MRI
  pictures (the app adds its input checks on top; `studies.ood_eval` reports both).
Features are cached in `--cache-dir`, keyed by the checkpoint's weights, so comparing methods
costs one feature pass.

    python -m train.fit_ood checkpoints/resnet50.safetensors --data ../shared/data --method knn-cosine
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from brainmri.checkpoint import update_metadata
from brainmri.io import ImageLoadError, load_image
from brainmri import ood as detectors
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, run_splits

log = logging.getLogger("fit_ood")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--quantile", type=float, default=detectors.DEFAULT_QUANTILE,
                   help="share of validation scans the threshold accepts")
    p.add_argument("--refused", type=float, default=0.001,
                   help="threshold refusing this share of the pooled out-of-fold scans (cross-fitted "
                        "training + validation); 0: the --quantile of validation alone")
    p.add_argument("--method", choices=sorted(detectors.DETECTORS), default=detectors.DEFAULT_DETECTOR,
                   help="detector (brainmri.ood)")
    p.add_argument("--dims", type=int, default=128, help="PCA dimensions of the detector")
    p.add_argument("--k", type=int, default=10, help="neighbour rank scored by knn-cosine")
    p.add_argument("--crossfit", type=int, default=5, help="folds of the cross-fitted refusal (0: skip)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=0, help="at most N scans per split (0: all)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"),
                   help="duplicate-signature and feature cache")
    p.add_argument("--device", default=None)
    p.add_argument("--write", action="store_true", help="store the refitted detector in the checkpoint")
    return p


def pooled_features(predictor: Predictor, paths: list, batch_size: int,
                    desc: str) -> tuple[np.ndarray, list[int]]:
    """(N, K) globally averaged target-layer activations of the files the loader accepts,
    computed exactly as `Predictor.predict_batch` does; and the indices of those files."""
    feats, kept = [], []
    for start in tqdm(range(0, len(paths), batch_size), desc=desc, unit="batch"):
        prepared, idx = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                prepared.append(predictor.prepare([paths[i]])[0])
                idx.append(i)
            except ImageLoadError as error:
                log.warning("skipped %s: %s", paths[i], error)
        if prepared:
            acts = predictor.features(torch.stack([p.tensor for p in prepared]))
            feats.append(acts.mean(dim=(2, 3)).cpu().numpy())
            kept += idx
    return np.concatenate(feats), kept


def weights_digest(checkpoint: Path) -> str:
    """sha256 of a checkpoint's weights, not its detector (which --write replaces)."""
    key = hashlib.sha256()
    with safe_open(str(checkpoint), framework="pt") as f:
        for tensor in sorted(k for k in f.keys() if not k.startswith(detectors.PREFIX)):
            key.update(tensor.encode() + f.get_tensor(tensor).numpy().tobytes())
    return key.hexdigest()


def cached_features(predictor: Predictor, args, weights: str, name: str,
                    items: list) -> tuple[np.ndarray, list[int]]:
    """`pooled_features`, stored under --cache-dir keyed by `weights_digest` and the items."""
    key = hashlib.sha256(weights.encode())
    key.update(json.dumps([str(i) for i in items]).encode())
    path = Path(args.cache_dir) / f"features-{name}-{key.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as f:
            return f["x"], f["kept"].tolist()
    x, kept = pooled_features(predictor, items, args.batch_size, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, kept=np.asarray(kept))
    return x, kept


def crossfit_ratios(args, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
                    **kwargs) -> np.ndarray | None:
    """Each training scan's score from a detector fitted on the other folds, over that
    detector's --quantile threshold on validation (> 1: refused at that threshold)."""
    from sklearn.model_selection import StratifiedKFold
    folds = min(args.crossfit, int(np.bincount(train_y).min()))
    if folds < 2:
        return None
    ratios = np.empty(len(train_x))
    for fit_idx, held in StratifiedKFold(folds, shuffle=True, random_state=0).split(train_x, train_y):
        ood = detectors.fit(args.method, train_x[fit_idx], train_y[fit_idx], **kwargs)
        ratios[held] = ood.score(train_x[held]) / np.quantile(ood.score(val_x), args.quantile)
    return ratios


def non_mri_report(predictor: Predictor, args, ood, val_scores: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score
    from brainmri.gallery import non_mri
    items = {}
    for name, item in non_mri().items():
        try:
            items[name] = load_image(item)
        except ImageLoadError:                         # refused before any feature is computed
            pass
    x, kept = pooled_features(predictor, list(items.values()), args.batch_size, "non-MRI")
    names = list(items)
    scores, names = ood.score(x), [names[i] for i in kept]
    auroc = roc_auc_score(np.r_[np.zeros(len(val_scores)), np.ones(len(scores))], np.r_[val_scores, scores])
    return {"non_mri_scored": len(names), "val_auroc": float(auroc),
            "non_mri_accepted": float(np.mean(scores <= ood.threshold)),
            "non_mri_accepted_names": [n for n, s in zip(names, scores) if s <= ood.threshold]}


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0.5 < args.quantile < 1:
        raise SystemExit(f"--quantile must lie in (0.5, 1), got {args.quantile}")
    refused = args.refused or None                 # 0: the validation quantile alone
    if refused is not None and not (0 < refused < 0.5 and args.crossfit >= 2):
        raise SystemExit("--refused must lie in [0, 0.5); above 0 it needs --crossfit >= 2")
    start = time.time()
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, checked=False)
    margs = predictor.meta.get("args", {})
    splits = run_splits(args.data, margs, cache_dir=args.cache_dir)
    train, val = splits.train[: args.limit or None], splits.val[: args.limit or None]
    weights = weights_digest(args.checkpoint)
    train_x, kept = cached_features(predictor, args, weights, "train", [s.path for s in train])
    train_y = np.array([train[i].label for i in kept])
    val_x, _ = cached_features(predictor, args, weights, "val", [s.path for s in val])
    kwargs = {"dims": args.dims} | ({"k": args.k} if args.method == "knn-cosine" else {})
    ood = detectors.fit(args.method, train_x, train_y, **kwargs)
    val_scores = ood.score(val_x)
    base = float(np.quantile(val_scores, args.quantile))
    ratios = crossfit_ratios(args, train_x, train_y, val_x, **kwargs) if args.crossfit else None
    scale, pooled = 1.0, None
    if refused is not None:
        if ratios is None:
            raise SystemExit("--refused needs at least 2 training scans of every class")
        pooled = np.r_[ratios, val_scores / base]
        scale = float(np.quantile(pooled, 1 - refused))
    ood.threshold = base * scale
    report = {"checkpoint": str(args.checkpoint), "method": args.method, **kwargs,
              "train_scans": len(kept), "val_scans": len(val_x), "quantile": args.quantile,
              "refused_target": refused, "threshold_scale": scale,
              "threshold_at_quantile": base, "threshold": ood.threshold,
              "val_refused_refit": float(np.mean(val_scores > ood.threshold))}
    if ratios is not None:
        report["crossfit_refused"] = float(np.mean(ratios > scale))
        report["crossfit_refused_at_quantile"] = float(np.mean(ratios > 1))
    if pooled is not None:
        report["pooled_refused"] = float(np.mean(pooled > scale))
    report.update(non_mri_report(predictor, args, ood, val_scores))
    if predictor.ood is not None:
        old = predictor.ood.score(val_x)
        report.update(threshold_stored=predictor.ood.threshold,
                      val_refused_stored=float(np.mean(old > predictor.ood.threshold)))
    if args.write:
        on = (f"val ({len(val_x)} scans)" if pooled is None else
              f"out-of-fold scans ({len(ratios)} cross-fitted train + {len(val_x)} val)")
        update_metadata(args.checkpoint, extra=ood.tensors(), drop_prefix=detectors.PREFIX, ood={
            "method": args.method, "threshold": ood.threshold, "quantile": args.quantile,
            **({} if pooled is None else {"refused": refused, "scale": scale}),
            **kwargs, "fitted_on": f"train ({len(kept)} scans, inference path)",
            "threshold_on": on, "fitted_by": "train.fit_ood"})
        report["written"] = True
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
