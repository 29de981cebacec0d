"""Does the model need the tumour? Accuracy with the tumour painted out, against a control.

    python -m studies.lesion_masked checkpoints/resnet50.safetensors --data ../shared/data \\
        --out runs/lesion_masked.json

A heatmap can only point at the tumour if the decision rests on it. For every boxed scan of
the chosen splits (`tumor_boxes.csv`), the model classifies the scan three times:

- as it is (in grey, as the model sees it);
- **lesion out**: the tumour box, grown by `--grow` x the longer side, filled by OpenCV's
  inpainting (Telea) from the tissue around it;
- **control**: a box of the same size filled the same way somewhere else inside the head (the
  head mask of `brainmri.localisation`), not touching the grown tumour box; seeded per scan.

If painting the tumour out changes the answer much more than painting out a control region, the
model relies on the tumour. If accuracy barely moves, the class is read from the rest of the
slice (its level, plane, anatomy), and no explanation of that model can point at the tumour.
Reported per class: accuracy and the mean probability of the true class for each version, and
the pointing game of the checkpoint's default map on the original scan (as `studies.explain_eval`
scores it), split by whether painting the tumour out changed the answer ("needed") or not.

A fourth version is the app's per-scan check (`Service.recheck`), which needs no box: **hot
region out**, the default map's hot region (`localisation.hot_region`) painted out. Reported:
how often that changed the answer, and how often the hot region touched the grown tumour box
among the answers it changed and among those it did not, so the app's verdict can be read
against the boxes. The boxes are only used to measure; no model is trained or chosen here.
"""
from __future__ import annotations

import argparse
import json
import logging
import zlib
from pathlib import Path

import numpy as np

from brainmri import localisation as loc
from brainmri.io import load_image, to_grey
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, kaggle_root, run_splits

from brainmri.boxes import box_for, boxes_csv, load_boxes

log = logging.getLogger("lesion_masked")
VERSIONS = ("original", "lesion out", "control")
HOT = "hot region out"            # built from the default map of the original, after the model ran
SPLITS = ("val", "clean", "official")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Accuracy with the tumour box painted out, against a control box.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--split", default="val,clean", help=f"comma-separated, of {SPLITS}")
    p.add_argument("--grow", type=float, default=0.02, help="grow the tumour box by this x the longer side")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="pointing-game tolerance, a fraction of the longer side (as studies.explain_eval)")
    p.add_argument("--limit", type=int, default=0, help="at most N boxed scans per split (0: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p


def grown(box, grow_px: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = shape
    x0, y0, x1, y1 = box
    return max(0, x0 - grow_px), max(0, y0 - grow_px), min(w, x1 + grow_px), min(h, y1 + grow_px)


def paint_out(grey: np.ndarray, box) -> np.ndarray:
    """`grey` (H, W) uint8 with `box` (x0, y0, x1, y1) filled from its surroundings (Telea)."""
    return loc.paint_out(grey, loc.box_mask(grey.shape, box))


def control_box(head: np.ndarray, box, rng: np.random.Generator, tries: int = 200):
    """A box of `box`'s size inside `head` (all four corners and the centre on it) that does not
    overlap `box`; None if `tries` random places all fail."""
    x0, y0, x1, y1 = box
    return loc.fit_box(head, (x1 - x0, y1 - y0), rng, avoid=tuple(box), tries=tries)


def versions(path: Path, box, grow: float) -> tuple[dict[str, np.ndarray], tuple, np.ndarray] | None:
    """({version: (H, W) uint8}, the grown tumour box, the head mask) for one scan; None when no
    control box fits in the head."""
    grey = to_grey(load_image(path))
    lesion = grown(box, round(grow * max(grey.shape)), grey.shape)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    head = loc.head_mask(grey)
    control = control_box(head, lesion, rng)
    if control is None:
        return None
    return ({"original": grey, "lesion out": paint_out(grey, lesion),
             "control": paint_out(grey, control)}, lesion, head)


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def summarise(rows: list[dict]) -> dict:
    """rows of {class, pointing, version: (label, p_true)} -> per class and overall: accuracy and
    mean p(true) per version; the pointing game where the tumour was needed and where not."""
    out = {}
    for name in sorted({r["class"] for r in rows}) + ["all"]:
        chosen = [r for r in rows if name in ("all", r["class"])]
        needed = [r for r in chosen if r["lesion out"][0] != r["original"][0]]
        kept = [r for r in chosen if r["lesion out"][0] == r["original"][0]]
        hot_changed = [r for r in chosen if r[HOT][0] != r["original"][0]]
        hot_kept = [r for r in chosen if r[HOT][0] == r["original"][0]]
        out[name] = {"n": len(chosen), **{v: {"accuracy": _mean(r[v][0] == r["class"] for r in chosen),
                                                "p_true": _mean(r[v][1] for r in chosen)}
                                            for v in (*VERSIONS, HOT)},
                     "control_unchanged": _mean(r["control"][0] == r["original"][0] for r in chosen),
                     "hot_changed": len(hot_changed),
                     "hot_share_of_head": _mean(r["hot_share"] for r in chosen),
                     "hot_on_tumour_changed": _mean(r["hot_on_tumour"] for r in hot_changed),
                     "hot_on_tumour_kept": _mean(r["hot_on_tumour"] for r in hot_kept),
                     "needed": len(needed), "pointing": _mean(r["pointing"] for r in chosen),
                     "pointing_needed": _mean(r["pointing"] for r in needed),
                     "pointing_not_needed": _mean(r["pointing"] for r in kept)}
    return out


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    splits_asked = [s.strip() for s in args.split.split(",") if s.strip()]
    if not splits_asked or any(s not in SPLITS for s in splits_asked):
        raise SystemExit(f"--split: choose from {', '.join(SPLITS)}; got {args.split!r}")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, checked=False)
    root = kaggle_root(args.data)
    boxes = load_boxes(boxes_csv(root))
    train_args = predictor.meta.get("args", {})
    splits = run_splits(args.data, train_args, cache_dir=args.cache_dir)
    result = {}
    for split in splits_asked:
        scans = [(s, box_for(s.path, root, boxes)) for s in splits.protocol(split)]
        scans = [(s, b) for s, b in scans if b is not None]
        scans = scans[:args.limit] if args.limit > 0 else scans
        rows, skipped = [], 0
        for start in range(0, len(scans), args.batch_size):
            chunk, boxes_of = [], []
            for s, (box, (w, h)) in scans[start:start + args.batch_size]:
                found_versions = versions(s.path, box, args.grow)
                if found_versions is None or found_versions[0]["original"].shape != (h, w):
                    skipped += 1
                    continue
                chunk.append((s, found_versions[0]))
                boxes_of.append((box, *found_versions[1:]))
            new = [{"class": s.class_name} for s, _ in chunk]
            for version in (*VERSIONS, HOT):
                if not chunk:
                    break
                if version == "original":   # the app's default map, as the app shows it
                    found = predictor.explain_batch([v[version] for _, v in chunk])
                    preds = [e.prediction for e in found]
                    for row, (_, v), (box, lesion, head), e in zip(new, chunk, boxes_of, found):
                        tol = round(args.tolerance * max(v[version].shape))
                        row["pointing"] = loc.pointing_game(e.heatmap, box, tol)
                        hot = loc.hot_region(e.heatmap)
                        v[HOT] = loc.paint_out(v[version], hot)
                        row["hot_share"] = loc.share_of_head(hot, head)
                        row["hot_on_tumour"] = bool((hot & loc.box_mask(hot.shape, lesion)).any())
                else:
                    preds = predictor.predict_batch([v[version] for _, v in chunk])
                for row, (s, _), p in zip(new, chunk, preds):
                    row[version] = (p.label, p.probabilities[s.class_name])
            rows += new
            log.info("%s: %d/%d boxed scans", split, min(start + args.batch_size, len(scans)), len(scans))
        result[split] = {"scans": len(rows), "skipped": skipped, "classes": summarise(rows)}
    print_tables(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "grow": args.grow,
                                        "tolerance": args.tolerance, "method": predictor.default_method,
                                        "splits": result}, indent=1))
    return result


def print_tables(result: dict) -> None:
    print("Accuracy % (mean probability of the true class) with the tumour box painted out "
          "and with a control box of the same size painted out elsewhere in the head:\n")
    print("| split | class | n | original | lesion out | control | answer changed by lesion out | "
          "control: answer unchanged | PG, all | PG, changed | PG, unchanged |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}"                       # noqa: E731
    for split, r in result.items():
        for name, c in r["classes"].items():
            cells = " | ".join(f"{100 * c[v]['accuracy']:.1f} ({c[v]['p_true']:.2f})" for v in VERSIONS)
            print(f"| {split} | {name} | {c['n']} | {cells} | {c['needed']} | {pct(c['control_unchanged'])} | "
                  f"{pct(c['pointing'])} | "
                  f"{pct(c['pointing_needed'])} | {pct(c['pointing_not_needed'])} |")
    print("\nThe app's per-scan check: the default map's hot region painted out instead (no box "
          "needed), and whether that region touched the tumour box:\n")
    print("| split | class | n | hot region out | answer changed | hot region, % of head | "
          "touched the tumour, changed | touched the tumour, unchanged |")
    print("|---|---|---|---|---|---|---|---|")
    for split, r in result.items():
        for name, c in r["classes"].items():
            print(f"| {split} | {name} | {c['n']} | {100 * c[HOT]['accuracy']:.1f} ({c[HOT]['p_true']:.2f}) | "
                  f"{c['hot_changed']} | {pct(c['hot_share_of_head'])} | {pct(c['hot_on_tumour_changed'])} | "
                  f"{pct(c['hot_on_tumour_kept'])} |")


if __name__ == "__main__":
    main(get_args_parser().parse_args())
