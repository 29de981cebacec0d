"""The shift bench: does familiarity catch acquisitions unlike the training scans?

    python -m studies.shift_bench checkpoints/resnet50.safetensors checkpoints/baseline.safetensors \\
        --data ../shared/data --out logs/eval/familiarity

Reads the familiarity detector and thresholds stored in each checkpoint (`train.fit_familiarity
--write`) and scores, as the app would (`Predictor.prepare` on the picture, one trunk pass):
the validation scans; each shift of `brainmri.shifts.BENCH` applied to them (named in
docs/familiarity.md before any measurement; none is a training augmentation); the
counterfactual no-tumour scans (the tumour box of boxed validation scans, grown by 2% of the
longer side, painted out with `brainmri.localisation.paint_out`; truth: notumor); and Kaggle
Testing under `--protocols` (report only: nothing is chosen on them).

Per set: AUROC of unfamiliarity against the validation scans (and, for comparison, of the
not-an-MRI score and of 1 - top probability); the share of each outcome (confident / caution /
not_mri); accuracy of all answers and of the confident ones; risk-coverage curves (accuracy of
the answers kept against the share kept, ranked by familiarity and by top probability). Writes
`<model>.json` and `<model>.png` (one panel per set) under `--out` and prints a table.
Statistics are cached like `train.fit_familiarity`'s (same cache, same keys).
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
from brainmri import localisation as loc
from brainmri.outcomes import Outcome
from brainmri.boxes import box_for, boxes_csv, load_boxes
from brainmri.classes import CLASSES, NO_TUMOUR
from brainmri.io import load_image, to_grey
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, kaggle_root, run_splits
from brainmri.shifts import BENCH, COUNTERFACTUAL
from brainmri.tapstats import auroc, cached_stats, from_file, shifted, tap_stats, weights_digest

log = logging.getLogger("shift_bench")
GROW = 0.02
COVERAGE = np.round(np.linspace(0.05, 1.0, 20), 2)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, default=Path("logs/eval/familiarity"))
    p.add_argument("--shifts", nargs="+", default=[*BENCH, COUNTERFACTUAL],
                   choices=[*BENCH, COUNTERFACTUAL])
    p.add_argument("--protocols", nargs="*", default=["clean", "official"], choices=["clean", "official"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--update-checkpoint", action="store_true",
                   help='store what "confident" was measured to mean (validation and Testing '
                        'protocols) in meta["familiarity"]["measured"], for the model card')
    return p


def painted(path: Path, box) -> object:
    """The counterfactual source: the grey scan with the grown tumour box painted out."""
    def source():
        grey = to_grey(load_image(path))
        h, w = grey.shape
        g = round(GROW * max(h, w))
        x0, y0, x1, y1 = box
        grown = (max(0, x0 - g), max(0, y0 - g), min(w, x1 + g), min(h, y1 + g))
        return loc.paint_out(grey, loc.box_mask(grey.shape, grown))
    return source


def outcomes(predictor: Predictor, stats: dict) -> dict[str, np.ndarray]:
    """Per scan, from cached statistics: predicted index, top probability, not-an-MRI verdict,
    unfamiliarity, familiarity, and the outcome from `Predictor.verdict`, as the app decides it
    (the cache keeps the input check's verdict, not its measures: a refusal by it is passed as a
    refusal by the features, which names another reason but gives the same outcome)."""
    det = predictor.familiarity
    probs = stats["probs"]
    pred, top = probs.argmax(1), probs.max(1)
    last = predictor.taps[-1]
    is_mri = stats["input_ok"].astype(bool)
    ood = np.full(len(probs), np.nan)
    if predictor.ood is not None:
        ood = predictor.ood.score(torch.as_tensor(stats[f"mean{last}"]))
        is_mri &= ood <= predictor.ood.threshold
    unfam = det.unfamiliarity(fam.as_features(tap_stats(stats), det.taps, det.kind), pred)
    famil = det.familiarity(unfam)
    outcome = np.array([predictor.verdict(float(p), bool(m), float(f)).outcome.value
                        for m, f, p in zip(is_mri, famil, top)])
    return {"pred": pred, "top": top, "is_mri": is_mri, "ood": ood, "unfamiliarity": unfam,
            "familiarity": famil, "outcome": outcome}


def risk_coverage(right: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(N,) right answers, (N,) score (higher = kept first) -> accuracy of the k kept, k = 1..N."""
    order = np.argsort(-score, kind="stable")
    return np.cumsum(right[order]) / np.arange(1, len(right) + 1)


def summarise(o: dict, truth: np.ndarray, val: dict | None) -> dict:
    right = o["pred"] == truth
    conf = o["outcome"] == Outcome.CONFIDENT.value
    out = {"n": int(len(truth)), "accuracy": float(right.mean()),
           **{f"share_{k.value}": float(np.mean(o["outcome"] == k.value)) for k in Outcome},
           "accuracy_confident": float(right[conf].mean()) if conf.any() else None,
           "share_unfamiliar": float(np.mean(o["familiarity"] < o["min_familiarity"])),
           "share_low_confidence": float(np.mean(o["top"] < o["min_confidence"]))}
    if val is not None:
        out.update(auroc_familiarity=auroc(val["unfamiliarity"], o["unfamiliarity"]),
                   auroc_mri_score=auroc(val["ood"], o["ood"]) if not np.isnan(o["ood"]).all() else None,
                   auroc_top_probability=auroc(-val["top"], -o["top"]))
    n = len(truth)
    k = np.maximum(1, np.round(COVERAGE * n).astype(int)) - 1
    out["risk_coverage"] = {"coverage": COVERAGE.tolist(),
                            "by_familiarity": risk_coverage(right, o["familiarity"])[k].tolist(),
                            "by_top_probability": risk_coverage(right, o["top"])[k].tolist()}
    return out


def figure(name: str, results: dict, curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = list(results)
    cols = 4
    rows = int(np.ceil(len(sets) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, s in zip(axes.flat, sets):
        r, (right, famil, top) = results[s], curves[s]
        x = np.arange(1, len(right) + 1) / len(right)
        ax.plot(x, risk_coverage(right, famil), label="by familiarity")
        ax.plot(x, risk_coverage(right, top), label="by top probability", ls="--")
        if r["accuracy_confident"] is not None:
            ax.plot([r["share_confident"]], [r["accuracy_confident"]], "o", color="k", label=Outcome.CONFIDENT.value)
        title = s + (f"  AUROC {r['auroc_familiarity']:.2f}" if "auroc_familiarity" in r else "")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(min(0.4, ax.get_ylim()[0]), 1.01)
        ax.set_xlabel("share kept", fontsize=8)
        ax.set_ylabel("accuracy of kept", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(sets):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{name}: risk-coverage per set (AUROC: familiarity, set vs validation)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bench(path: Path, args, splits) -> dict:
    predictor = Predictor.from_checkpoint(path, args.device, checked=False)
    weights = weights_digest(path)
    val_s = splits.val
    keys = [str(s.path) for s in val_s]
    stats = cached_stats(predictor, args.cache_dir, weights, "val", keys,
                         [from_file(s.path) for s in val_s], args.batch_size)
    sets = {"val": (stats, np.array([val_s[i].label for i in stats["kept"]]))}
    val_kept = [val_s[i] for i in stats["kept"]]
    for shift in args.shifts:
        if shift == COUNTERFACTUAL:
            root = kaggle_root(args.data)
            boxes = load_boxes(boxes_csv(root))
            boxed = [(s, box_for(s.path, root, boxes)) for s in val_kept]
            boxed = [(s, b[0]) for s, b in boxed if b is not None]
            st = cached_stats(predictor, args.cache_dir, weights, f"bench-{shift}",
                              [str(s.path) for s, _ in boxed], [painted(s.path, b) for s, b in boxed],
                              args.batch_size)
            sets[shift] = (st, np.full(len(st["kept"]), CLASSES.index(NO_TUMOUR)))
        else:
            st = cached_stats(predictor, args.cache_dir, weights, f"bench-{shift}",
                              [str(s.path) for s in val_kept],
                              [shifted(s.path, BENCH[shift]) for s in val_kept], args.batch_size)
            sets[shift] = (st, np.array([val_kept[i].label for i in st["kept"]]))
    for proto in args.protocols:
        samples = splits.protocol(proto)
        st = cached_stats(predictor, args.cache_dir, weights, proto, [str(s.path) for s in samples],
                          [from_file(s.path) for s in samples], args.batch_size)
        sets[proto] = (st, np.array([samples[i].label for i in st["kept"]]))
    det = predictor.familiarity                     # checked after the (cached) passes
    if det is None:
        raise SystemExit(f"{path}: no familiarity detector; run python -m train.fit_familiarity "
                         f"{path} --data {args.data} --write")
    scored = {}
    for name, (st, truth) in sets.items():
        o = outcomes(predictor, st)
        o.update(min_familiarity=det.min_familiarity, min_confidence=det.min_confidence)
        scored[name] = (o, truth)
    val_o = scored["val"][0]
    order = ["val", *args.protocols, *[s for s in args.shifts]]
    results = {n: summarise(scored[n][0], scored[n][1], None if n == "val" else val_o) for n in order}
    curves = {n: (scored[n][0]["pred"] == scored[n][1], scored[n][0]["familiarity"], scored[n][0]["top"])
              for n in order}
    name = path.stem
    figure(name, results, curves, args.out / f"{name}.png")
    return {"checkpoint": str(path), "familiarity": predictor.meta.get("familiarity"), "sets": results}


def print_table(name: str, report: dict) -> None:
    print(f"\n{name}\n")
    print("| set | n | AUROC fam | AUROC not-MRI score | AUROC 1-top p | confident | caution | not MRI "
          "| accuracy all | accuracy confident |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"                       # noqa: E731
    num = lambda x: "-" if x is None else f"{x:.3f}"                               # noqa: E731
    for s, r in report["sets"].items():
        print(f"| {s} | {r['n']} | {num(r.get('auroc_familiarity'))} | {num(r.get('auroc_mri_score'))} | "
              f"{num(r.get('auroc_top_probability'))} | {pct(r['share_confident'])} | {pct(r['share_caution'])} | "
              f"{pct(r['share_not_mri'])} | {pct(r['accuracy'])} | {pct(r['accuracy_confident'])} |")


def store_measured(path: Path, report: dict, start: datetime) -> None:
    """Write the confident share and accuracy of validation and the Testing protocols into
    meta["familiarity"]["measured"] (the model card reads it)."""
    from brainmri.checkpoint import read_metadata, update_metadata
    info = dict(read_metadata(path)["familiarity"])
    info["measured"] = {"by": f"studies.shift_bench, {start:%Y-%m-%d %H:%M} UTC"} | {
        s: {"n": r["n"], Outcome.CONFIDENT.value: r["share_confident"],
            "accuracy_confident": r["accuracy_confident"]}
        for s, r in report["sets"].items() if s in ("val", "clean", "official") and r["accuracy_confident"] is not None}
    update_metadata(path, familiarity=info)


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    start = datetime.now(timezone.utc)
    t0 = time.time()
    out = {}
    for path in args.checkpoints:
        meta_args = Predictor.from_checkpoint(path, args.device, checked=False).meta.get("args", {})
        splits = run_splits(args.data, meta_args, cache_dir=args.cache_dir)
        report = bench(path, args, splits)
        report.update(started=start.isoformat(timespec="seconds"),
                      machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                      seconds=round(time.time() - t0, 1))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{path.stem}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        print_table(path.stem, report)
        if args.update_checkpoint:
            store_measured(path, report, start)
        out[path.stem] = report
    print(f"\n{start:%Y-%m-%d %H:%M} - {datetime.now(timezone.utc):%H:%M} UTC, {platform.node()}; "
          f"figures and JSON in {args.out}")
    return out


if __name__ == "__main__":
    main(get_args_parser().parse_args())
