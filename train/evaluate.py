"""Evaluate checkpoints on every protocol; write metrics JSON and plots.

    python -m train.evaluate checkpoints/resnet50.safetensors checkpoints/baseline.safetensors \
        --data ../shared/data --out runs/eval [--update-checkpoint]

Protocols (brainmri.protocols): official, clean, roboflow, plus val. Metrics from
scikit-learn: accuracy, macro-F1, per-class precision/recall, one-vs-rest ROC-AUC, log loss,
and expected calibration error before and after temperature scaling.
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score,
                             log_loss, roc_auc_score)

from brainmri import Predictor
from brainmri.predictor import calibrated
from brainmri.checkpoint import update_metadata
from brainmri.io import ImageLoadError
from brainmri.protocols import DESCRIPTIONS, PROTOCOLS, build_splits

from . import plots


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate brainmri checkpoints on every protocol.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", type=Path, required=True, help="folder holding brain-tumor-mri/")
    p.add_argument("--out", type=Path, default=Path("runs/eval"))
    p.add_argument("--protocols", default=",".join(("val",) + PROTOCOLS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--grid", type=int, default=8, help="examples per correct/incorrect grid")
    p.add_argument("--update-checkpoint", action="store_true",
                   help="store the metrics in each checkpoint's metadata")
    p.add_argument("--device", default=None)
    return p


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    return float(ece)


def infer(predictor: Predictor, paths: list[Path], batch_size: int) -> tuple[np.ndarray, list[int]]:
    """Raw logits (N_ok, K) for the readable paths, and the indices that were readable."""
    logits, ok = [], []
    with ThreadPoolExecutor(2) as pool:
        for s in range(0, len(paths), batch_size):
            chunk = list(range(s, min(s + batch_size, len(paths))))

            def prep(i):
                try:
                    return predictor.preset.prepare(paths[i])
                except ImageLoadError:
                    return None
            prepared = list(pool.map(prep, chunk))
            keep = [(i, p) for i, p in zip(chunk, prepared) if p is not None]
            if not keep:
                continue
            out, _ = predictor.logits_and_features(torch.stack([p.tensor for _, p in keep]))
            logits.append(out.float().cpu().numpy())
            ok += [i for i, _ in keep]
    return np.concatenate(logits), ok


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> probabilities, as `Predictor` computes them (`predictor.calibrated`)."""
    return calibrated(torch.from_numpy(np.asarray(logits)), temperature).numpy()


def metrics_for(logits: np.ndarray, labels: np.ndarray, classes, temperature: float) -> dict:
    raw, cal = softmax(logits), softmax(logits, temperature)
    pred = cal.argmax(1)
    k = list(range(len(classes)))
    report = classification_report(labels, pred, labels=k, target_names=list(classes),
                                   output_dict=True, zero_division=0)
    try:
        auc = roc_auc_score(labels, cal, multi_class="ovr", labels=k)
    except ValueError:
        auc = float("nan")
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=k, zero_division=0)),
        "per_class": {c: {"precision": report[c]["precision"], "recall": report[c]["recall"],
                          "support": report[c]["support"]} for c in classes},
        "roc_auc_ovr": float(auc),
        "log_loss": float(log_loss(labels, cal, labels=k)),
        "ece_uncalibrated": expected_calibration_error(raw, labels),
        "ece_calibrated": expected_calibration_error(cal, labels),
        "confusion": confusion_matrix(labels, pred, labels=k).tolist(),
    }


def evaluate_checkpoint(path: Path, splits, protocols: list[str], args) -> dict:
    predictor = Predictor.from_checkpoint(path, device=args.device, checked=False)
    name = predictor.name
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    results = {"checkpoint": str(path), "model": name, "protocols": {},
               "date": time.strftime("%Y-%m-%d"), "temperature": predictor.temperature}
    for proto in protocols:
        samples = splits.protocol(proto)
        if not samples:
            continue
        t = time.time()
        paths = [s.path for s in samples]
        logits, ok = infer(predictor, paths, args.batch_size)
        labels = np.array([samples[i].label for i in ok])
        m = metrics_for(logits, labels, predictor.classes, predictor.temperature)
        m["description"] = DESCRIPTIONS[proto]
        m["unreadable"] = len(samples) - len(ok)
        m["seconds"] = round(time.time() - t, 1)
        results["protocols"][proto] = m
        print(f"{name:10s} {proto:9s} n={m['n']:5d} acc={m['accuracy']:.4f} "
              f"macroF1={m['macro_f1']:.4f} auc={m['roc_auc_ovr']:.4f} "
              f"ECE {m['ece_uncalibrated']:.3f}->{m['ece_calibrated']:.3f}", flush=True)
        plots.confusion(np.array(m["confusion"]), predictor.classes,
                        f"{name} - {proto} (acc {m['accuracy']:.2%})", out / f"confusion-{proto}.png")
        pred = logits.argmax(1)
        if proto in ("official", "clean"):
            plots.prediction_grid(predictor, [paths[i] for i in ok], labels, pred, args.grid,
                                  out / f"examples-{proto}.png", seed=0)
    if predictor.meta.get("history"):
        plots.curves(predictor.meta["history"], name, out / "curves.png")
    (out / "metrics.json").write_text(json.dumps(results, indent=1))
    if args.update_checkpoint:
        metrics = dict(predictor.meta.get("metrics", {}))
        metrics.update({p: {k: v for k, v in m.items() if k != "confusion"}
                        for p, m in results["protocols"].items()})
        update_metadata(path, metrics=metrics)
    return results


def main(args: argparse.Namespace) -> None:
    splits = build_splits(args.data)
    protocols = [p for p in args.protocols.split(",") if p]
    args.out.mkdir(parents=True, exist_ok=True)
    plots.class_distributions({p: splits.protocol(p) for p in ("train", "val") + PROTOCOLS},
                              args.out / "class-distributions.png")
    all_results = [evaluate_checkpoint(p, splits, protocols, args) for p in args.checkpoints]
    (args.out / "metrics.json").write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
