"""Refit a checkpoint's "is this a brain MRI?" detector on the inference path.

    python -m train.fit_ood checkpoints/resnet50.safetensors --data ../shared/data          # report
    python -m train.fit_ood checkpoints/resnet50.safetensors --data ../shared/data --write  # store

Training fits the detector on cached training-time crops; the app scores features of files
decoded and cropped by `Predictor.prepare`. This command recomputes both sides exactly as the
app does: features of every training scan of the checkpoint's own split (copies dropped), a
Mahalanobis fit on them (`brainmri.ood`), and the threshold at `--quantile` of the validation
scans' scores. Nothing from Kaggle Testing is read. Prints the validation share refused by the
stored detector and by the refitted one; `--write` replaces the `ood.*` tensors and
`meta["ood"]` in the checkpoint (weights untouched).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from brainmri.checkpoint import update_metadata
from brainmri.io import ImageLoadError
from brainmri.ood import MahalanobisOOD
from brainmri.predictor import Predictor
from brainmri.protocols import build_splits

log = logging.getLogger("fit_ood")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help="folder holding brain-tumor-mri/ (or it)")
    p.add_argument("--quantile", type=float, default=0.995,
                   help="share of validation scans the threshold accepts")
    p.add_argument("--dims", type=int, default=128, help="PCA dimensions of the detector")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=0, help="at most N scans per split (0: all)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"),
                   help="duplicate-signature cache used to rebuild the split")
    p.add_argument("--device", default=None)
    p.add_argument("--write", action="store_true", help="store the refitted detector in the checkpoint")
    return p


def pooled_features(predictor: Predictor, paths: list[Path], batch_size: int,
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


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not 0.5 < args.quantile < 1:
        raise SystemExit(f"--quantile must lie in (0.5, 1), got {args.quantile}")
    start = time.time()
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device)
    margs = predictor.meta.get("args", {})
    splits = build_splits(args.data, margs.get("val_fraction", 0.12), margs.get("seed", 0),
                          cache_dir=args.cache_dir)
    train, val = splits.train[: args.limit or None], splits.val[: args.limit or None]
    train_x, kept = pooled_features(predictor, [s.path for s in train], args.batch_size, "train")
    train_y = np.array([train[i].label for i in kept])
    val_x, _ = pooled_features(predictor, [s.path for s in val], args.batch_size, "val")
    ood = MahalanobisOOD.fit(train_x, train_y, dims=args.dims)
    val_scores = ood.score(val_x)
    ood.threshold = float(np.quantile(val_scores, args.quantile))
    report = {"checkpoint": str(args.checkpoint), "train_scans": len(kept), "val_scans": len(val_x),
              "quantile": args.quantile, "threshold": ood.threshold,
              "val_refused_refit": float(np.mean(val_scores > ood.threshold))}
    if predictor.ood is not None:
        old = predictor.ood.score(val_x)
        report.update(threshold_stored=predictor.ood.threshold,
                      val_refused_stored=float(np.mean(old > predictor.ood.threshold)))
    if args.write:
        update_metadata(args.checkpoint, extra=ood.tensors(), ood={
            "method": "mahalanobis-pca", "threshold": ood.threshold, "quantile": args.quantile,
            "dims": args.dims, "fitted_on": f"train ({len(kept)} scans, inference path)",
            "threshold_on": f"val ({len(val_x)} scans)", "fitted_by": "train.fit_ood"})
        report["written"] = True
    report["seconds"] = round(time.time() - start, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
