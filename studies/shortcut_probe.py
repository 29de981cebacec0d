"""What a held-out run's answers on the source it never saw hang on: each picture shift of
`brainmri.shifts` (`BENCH` and `DEV`, none of them a training change of its own) applied to the
run's `loso` scans and, for what the shift does inside the collection, to its `val` scans.

    python -m studies.shortcut_probe R1.safetensors K1-avg.safetensors --names loso-R1 loso-K1-avg \\
        --data ../shared/data --out logs/eval/generalisation

Measures; decides nothing. For each checkpoint that held a source out (`brainmri.protocols`,
as it was trained) and each shift: on each set the accuracy, what the scans are called (counts
by class) and the share of answers that differ from those on the scans as they are. Scans go
through `Predictor` as the app runs them (its probabilities; the outcome is not used). A shift
that sends the held-out scans to their class far more often points at what the model reads
instead of the tumour on that source. Writes `<model>-probe.json` under `--out` and prints a
Markdown table.
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

from brainmri.io import ImageLoadError, load_image, to_grey
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, run_splits
from brainmri.shifts import BENCH, DEV
from studies.generalisation import add_scoring_arguments, evenly, result_name

log = logging.getLogger("shortcut_probe")
AS_THEY_ARE = "none"
SHIFTS = {AS_THEY_ARE: None, **BENCH, **DEV}
SEED = 0


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+", help="runs that held a source out")
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, default=Path("logs/eval/generalisation"))
    p.add_argument("--names", nargs="+", default=[],
                   help="a name for each checkpoint's results (default: its name, `loso-<source>-` "
                        "in front unless it starts with loso)")
    add_scoring_arguments(p)
    return p


def read_greys(paths: list[Path]) -> list[np.ndarray | None]:
    """Each picture as a grey array, decoded once; None: unreadable."""
    out = []
    for path in paths:
        try:
            out.append(to_grey(load_image(path)))
        except ImageLoadError:
            out.append(None)
    return out


def shifted(greys: list[np.ndarray], shift) -> list[np.ndarray]:
    """`shift` applied to each grey picture (seeded per picture); None: the pictures as they are."""
    return greys if shift is None else [shift(g, np.random.default_rng(SEED + i)) for i, g in enumerate(greys)]


def predicted(predictor: Predictor, images: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(N,) class index of each image as the app would answer it."""
    out = []
    for s in range(0, len(images), batch_size):
        preds = predictor.predict_batch(images[s:s + batch_size])
        out += [int(np.argmax([p.probabilities[c] for c in predictor.classes])) for p in preds]
    return np.asarray(out, int)


def summary(pred: np.ndarray, label: np.ndarray, plain: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, what the scans are called, and the share answered otherwise than as they are."""
    return {"n": int(len(pred)), "accuracy": float((pred == label).mean()),
            "called": {c: int((pred == k).sum()) for k, c in enumerate(classes)},
            "changed": float((pred != plain).mean())}


def probe(path: Path, args, name: str | None = None) -> dict:
    predictor = Predictor.from_checkpoint(path, device=args.device, checked=False)
    margs = predictor.meta.get("args", {})
    if not margs.get("holdout_source"):
        raise SystemExit(f"{path}: not a run that held a source out (no holdout_source)")
    splits = run_splits(args.data, margs)
    sets = {"loso": splits.loso, "val": splits.val}
    results = {}
    for set_name, samples in sets.items():
        samples = evenly(samples, args.limit)
        read = read_greys([s.path for s in samples])
        label = np.asarray([s.label for s, g in zip(samples, read) if g is not None], int)
        greys = [g for g in read if g is not None]
        plain = None
        results[set_name] = {}
        for shift_name, shift in SHIFTS.items():
            t = time.time()
            pred = predicted(predictor, shifted(greys, shift), args.batch_size)
            plain = pred if plain is None else plain
            results[set_name][shift_name] = summary(pred, label, plain, predictor.classes)
            log.info("%s %s %s: %.1f%% in %.0f s", predictor.name, set_name, shift_name,
                     100 * results[set_name][shift_name]["accuracy"], time.time() - t)
    return {"checkpoint": str(path), "model": name or result_name(predictor.name, margs["holdout_source"]),
            "holdout_source": margs.get("holdout_source"), "holdout_classes": margs.get("holdout_classes"),
            "shifts": {k: (v.__doc__ or "").strip() if v else "the scans as they are" for k, v in SHIFTS.items()},
            "sets": results, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}


def table(results: list[dict]) -> str:
    lines = ["| model | shift | loso: accuracy | loso: called (gl / me / no / pi) | loso: changed | "
             "val: accuracy | val: changed |", "|---|---|---|---|---|---|---|"]
    for r in results:
        loso, val = r["sets"]["loso"], r["sets"]["val"]
        for shift in loso:
            called = " / ".join(str(v) for v in loso[shift]["called"].values())
            lines.append(f"| {r['model']} | {shift} | {loso[shift]['accuracy']:.1%} | {called} | "
                         f"{loso[shift]['changed']:.1%} | {val[shift]['accuracy']:.1%} | "
                         f"{val[shift]['changed']:.1%} |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    names = getattr(args, "names", None) or []
    if names and len(names) != len(args.checkpoints):
        raise SystemExit("--names: one name for each checkpoint")
    results = []
    for i, path in enumerate(args.checkpoints):
        r = probe(path, args, names[i] if names else None)
        (args.out / f"{r['model']}-probe.json").write_text(json.dumps(r, indent=1))
        results.append(r)
    print(table(results))
    return results


if __name__ == "__main__":
    main(get_args_parser().parse_args())
