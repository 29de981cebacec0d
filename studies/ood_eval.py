"""Does the "is this a brain MRI?" verdict hold? Real held-out scans versus non-MRI images.

    python -m studies.ood_eval checkpoints/resnet50.safetensors --data ../shared/data --out runs/ood

Real scans: the validation split the checkpoint was trained with (its threshold was set there)
and Kaggle Testing under the `clean` and `official` protocols (reporting only; nothing is tuned
on them). Non-MRI: `brainmri.gallery.non_mri` (scikit-image's sample pictures, synthetic
noise, gradients and shapes, rendered text, pydicom's non-MR medical images). The MR samples
shipped with pydicom/nibabel (`other_mr`) are scored and listed but left out of the figures:
they are MR, just not necessarily axial brain slices like the training scans.
Reports, per verdict (feature detector alone, input check alone, combined as in
`Prediction.is_mri`): AUROC, the share of real scans refused and of non-MRI accepted; writes
`ood_eval.json` and prints a table.
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

from brainmri import mri_check
from brainmri.gallery import non_mri, other_mr
from brainmri.io import ImageLoadError, load_image
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, run_splits

log = logging.getLogger("ood_eval")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, default=Path("runs/ood"))
    p.add_argument("--protocols", nargs="+", default=["val", "clean", "official"])
    p.add_argument("--limit", type=int, default=0, help="at most N scans per protocol (0: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    return p


def _features(predictor: Predictor, images: list, threshold: float) -> list[float]:
    return [p.mri_score / threshold for p in predictor.predict_batch(images)] if images else []


def score(predictor: Predictor, items: dict[str, object], batch_size: int,
          cache: Path | None = None) -> list[dict]:
    """Per item: feature score and verdict, input check and verdict, combined verdict.

    Scores are relative to each check's limit (over 1 = refused). Items the loader refuses
    (e.g. too small) count as refused by every verdict. With `cache` (JSON lines of feature
    scores, the expensive part), an interrupted run resumes where it stopped.
    """
    threshold = predictor.ood.threshold
    done = {}
    if cache is not None and cache.is_file():
        done = {r["name"]: r["feature"] for r in map(json.loads, cache.read_text().splitlines())}
    rows, names = [], list(items)
    sink = open(cache, "a") if cache is not None else None
    try:
        for start in range(0, len(names), batch_size):
            loaded = {}
            for name in names[start:start + batch_size]:
                try:
                    loaded[name] = load_image(items[name])
                except ImageLoadError as error:
                    rows.append({"name": name, "refused_at_load": str(error), "feature": 1e12,
                                 "feature_ok": False, "input": 1e12, "input_ok": False,
                                 "is_mri": False})
            todo = [n for n in loaded if n not in done]
            for name, value in zip(todo, _features(predictor, [loaded[n] for n in todo], threshold)):
                done[name] = value
                if sink:
                    sink.write(json.dumps({"name": name, "feature": value}) + "\n")
            for name, image in loaded.items():
                check = mri_check.check(image)
                rows.append({"name": name, "feature": done[name], "feature_ok": done[name] <= 1.0,
                             "input": check.score, "input_ok": check.ok,
                             "is_mri": done[name] <= 1.0 and check.ok})
            if sink:
                sink.flush()
            if todo and (start // batch_size) % 10 == 0:
                log.info("scored %d/%d", start + len(loaded), len(names))
    finally:
        if sink:
            sink.close()
    order = {n: i for i, n in enumerate(names)}
    return sorted(rows, key=lambda r: order[r["name"]])


def summarise(real: dict[str, list[dict]], other: list[dict]) -> dict:
    """Shares refused/accepted and AUROC (non-MRI = positive) for each verdict and protocol."""
    from sklearn.metrics import roc_auc_score
    out = {"non_mri": {"n": len(other)}, "real": {}, "auroc": {}}
    verdicts = {"features": ("feature", "feature_ok"), "input": ("input", "input_ok"),
                "combined": (None, "is_mri")}
    combined = lambda r: max(r["feature"], r["input"])                 # noqa: E731
    for verdict, (key, ok) in verdicts.items():
        out["non_mri"][f"accepted_{verdict}"] = float(np.mean([r[ok] for r in other]))
    out["non_mri"]["accepted_names"] = [r["name"] for r in other if r["is_mri"]]
    for protocol, rows in real.items():
        entry = {"n": len(rows)}
        for verdict, (key, ok) in verdicts.items():
            entry[f"refused_{verdict}"] = float(np.mean([not r[ok] for r in rows]))
            scores = [combined(r) if key is None else r[key] for r in rows + other]
            labels = [0] * len(rows) + [1] * len(other)
            scores = np.nan_to_num(np.asarray(scores, np.float64), posinf=1e12)
            out["auroc"].setdefault(protocol, {})[verdict] = float(roc_auc_score(labels, scores))
        entry["refused_names"] = [r["name"] for r in rows if not r["is_mri"]][:50]
        out["real"][protocol] = entry
    return out


def table(summary: dict) -> str:
    lines = [f"{'set':10s} {'n':>5s}  {'AUROC feat/input/comb':>24s}  {'refused feat/input/comb':>26s}"]
    for protocol, e in summary["real"].items():
        a = summary["auroc"][protocol]
        lines.append(f"{protocol:10s} {e['n']:5d}  {a['features']:7.4f} {a['input']:7.4f} {a['combined']:7.4f}"
                     f"   {e['refused_features']:7.2%} {e['refused_input']:7.2%} {e['refused_combined']:7.2%}")
    n = summary["non_mri"]
    lines.append(f"{'non-MRI':10s} {n['n']:5d}  accepted: features {n['accepted_features']:.2%}, "
                 f"input {n['accepted_input']:.2%}, combined {n['accepted_combined']:.2%}")
    if n["accepted_names"]:
        lines.append("accepted non-MRI: " + ", ".join(n["accepted_names"]))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint, args.device, checked=False)
    if predictor.ood is None:
        raise SystemExit(f"{args.checkpoint.name} has no OOD detector (meta['ood']); retrain or refit")
    margs = predictor.meta.get("args", {})
    splits = run_splits(args.data, margs)
    chosen = {p: [str(s.path) for s in splits.protocol(p)[: args.limit or None]] for p in args.protocols}
    paths = sorted(set().union(*chosen.values()))          # `clean` is a subset of `official`
    log.info("scoring %d scans (%s)", len(paths), ", ".join(f"{p} {len(v)}" for p, v in chosen.items()))
    # Feature scores cached per checkpoint and OOD fit: a rerun resumes.
    cache = args.out / f"features-{args.checkpoint.stem}-{predictor.ood.threshold:.6g}.jsonl"
    rows = {r["name"]: r for r in score(predictor, {p: p for p in paths}, args.batch_size, cache)}
    real = {p: [rows[name] for name in names] for p, names in chosen.items()}
    other = score(predictor, non_mri(), args.batch_size)
    mr = score(predictor, other_mr(), args.batch_size)
    summary = summarise(real, other)
    report = {"checkpoint": args.checkpoint.name, "model": predictor.name,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {platform.node()}, device {predictor.device}",
              "threshold": {"features": predictor.ood.threshold,
                            "features_quantile": predictor.meta["ood"].get("quantile"),
                            "input": mri_check.describe()},
              "args": {k: str(v) for k, v in vars(args).items()}, **summary,
              "other_mr": [{k: r[k] for k in ("name", "feature", "input", "is_mri")} for r in mr],
              "non_mri_scores": [{k: r[k] for k in ("name", "feature", "input", "is_mri")} for r in other],
              "seconds": round(time.time() - start, 1)}
    (args.out / "ood_eval.json").write_text(json.dumps(report, indent=2, default=float))
    print(table(summary))
    print("other MR (not in the figures): " + ", ".join(
        f"{r['name']} {'accepted' if r['is_mri'] else 'refused'}" for r in mr))
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
