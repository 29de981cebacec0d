"""Do the heatmaps point at the tumour? Localisation, faithfulness and shortcut checks per model.

    python -m studies.explain_eval checkpoints/resnet50.safetensors checkpoints/baseline.safetensors \\
        --data ../shared/data --out runs/explain
    python -m studies.explain_eval checkpoints/resnet50.safetensors --data ../shared/data --write-default
    python -m studies.explain_eval CKPT --data DIR --limit 64 --faithfulness 16      # a quick look
    python -m studies.explain_eval CKPT --data DIR --samples runs/explain/samples.json --workers 14

For every scan of the chosen splits, every CAM method the app offers explains the *predicted* class
(what the app shows); the fast methods share one trunk pass. On the scans with a tumour box (`tumor_boxes.csv`):
pointing game (maximum inside the box grown by `--tolerance` x the image's longer side) and the
share of heatmap mass inside the box, beside two null maps that never look at the scan (a
Gaussian centred on the head crop, smoothed noise on the head crop). On every scan: the share
of heatmap mass outside the head mask and in the outer `--band` of the head crop the model saw.
On a fixed sample: ROAD faithfulness on the model input (pytorch-grad-cam metrics). The default
method is chosen on the validation split only (the scans carved from Training with boxes),
never on Testing. Writes explain_metrics.json, tables.md, args.json, samples.json (the split
lists, reusable with --samples where Training is not at hand) and one PNG grid per model. The
per-scan numpy work and ROAD's imputation run in --workers processes; the model runs in this one.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import time
import warnings
import zlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

from brainmri import localisation as loc
from brainmri.boxes import box_for, boxes_csv, load_boxes
from brainmri.cam import HOOK_FREE, canonical_method
from brainmri.checkpoint import update_metadata
from brainmri.classes import CLASSES
from brainmri.data import Sample
from brainmri.multicam import input_maps
from brainmri.predictor import Predictor, to_input_pixels
from brainmri.presets import Prepared
from brainmri.protocols import DATA_HELP, build_splits, kaggle_root, split_of

log = logging.getLogger("explain_eval")
SPLITS = ("official", "clean", "val")
BASELINES = ("centre", "random")           # null maps, reported beside the methods


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Evaluate CAM explanations against tumour boxes.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--boxes", type=Path, help="boxes CSV (default: <kaggle root>/tumor_boxes.csv)")
    p.add_argument("--out", type=Path, default=Path("runs/explain"))
    p.add_argument("--methods", default=",".join(HOOK_FREE),
                   help="comma-separated CAM methods the app offers (fast and fused)")
    p.add_argument("--split", default=",".join(SPLITS), help=f"comma-separated, of {SPLITS}")
    p.add_argument("--limit", type=int, default=0, help="at most N scans per split (seeded sample)")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="pointing-game tolerance as a fraction of the image's longer side")
    p.add_argument("--band", type=float, default=0.05, help="border band, fraction of the head crop")
    p.add_argument("--faithfulness", type=int, default=64, help="ROAD sample size (0: skip)")
    p.add_argument("--grid-rows", type=int, default=6, help="scans in each PNG grid (0: none)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="processes for the per-scan numpy work (0: inline)")
    p.add_argument("--samples", type=Path,
                   help="split lists written by an earlier run (its samples.json) instead of "
                        "searching Training for duplicates again")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"),
                   help="duplicate-signature cache (keep one per data folder)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when present)")
    p.add_argument("--write-default", action="store_true",
                   help="store default_cam and the validation cam_scores in each checkpoint")
    return p


# -- samples -----------------------------------------------------------------------------------
def sample(items: list, n: int, seed: int) -> list:
    """The first `n` of a seeded permutation (all of them, in order, when n <= 0)."""
    if n <= 0 or n >= len(items):
        return list(items)
    order = np.random.default_rng(seed).permutation(len(items))[:n]
    return [items[i] for i in sorted(order)]


# -- per-scan measurements (run in worker processes: numpy and OpenCV only) -----------------
def null_maps(grey_shape, crop, rel: str, seed: int) -> dict[str, np.ndarray]:
    x0, y0, x1, y1 = crop
    shape = (y1 - y0, x1 - x0)
    rng = np.random.default_rng([seed, zlib.crc32(rel.encode())])
    return {"centre": loc.place(loc.centred_gaussian(shape), crop, grey_shape),
            "random": loc.place(loc.random_heatmap(shape, rng), crop, grey_shape)}


def measure(grey: np.ndarray, crop, heatmaps: dict[str, np.ndarray], box, tol_frac: float,
            band: float) -> dict:
    """Per map: pointing hit, energy in box (None without a box), mass outside head, border."""
    head = loc.head_mask(grey)
    tol = round(tol_frac * max(grey.shape))
    out = {}
    for name, heat in heatmaps.items():
        out[name] = {"pointing": loc.pointing_game(heat, box, tol) if box else None,
                     "energy": loc.energy_in_box(heat, box) if box else None,
                     "outside_head": loc.mass_outside(heat, head),
                     "border": loc.border_mass(heat, band, crop)}
    return out


def measure_scan(grey: np.ndarray, crop, input_maps_: dict[str, np.ndarray], box, rel: str,
                 seed: int, tol_frac: float, band: float) -> dict:
    """Model-input maps (S, S) -> the input's pixels (as `explain_batch` does) + null maps -> `measure`."""
    geometry = Prepared(None, grey, tuple(crop))
    maps = {m: to_input_pixels(v, geometry) for m, v in input_maps_.items()}
    maps.update(null_maps(grey.shape, crop, rel, seed))
    return measure(grey, crop, maps, box, tol_frac, band)


class Inline:
    """`submit` runs at once: the pool when --workers 0 (debugging, tests)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _init_worker() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_pool(workers: int):
    if workers <= 0:
        return Inline()
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)


def evaluate_scans(predictor: Predictor, samples, root: Path, boxes: dict, methods, args, pool) -> dict:
    """{path: record} with class, prediction and `measure` for every method and null map."""
    records, pending, mismatched = {}, deque(), 0

    def collect(limit: int) -> None:
        while len(pending) > limit:
            key, meta, future = pending.popleft()
            records[key] = {**meta, "m": future.result()}
    for s in range(0, len(samples), args.batch_size):
        chunk = samples[s:s + args.batch_size]
        prepared = predictor.prepare([x.path for x in chunk])
        batch = torch.stack([p.tensor for p in prepared])
        logits, _, _, maps = input_maps(predictor, batch, methods)
        for i, (x, p) in enumerate(zip(chunk, prepared)):
            rel = x.path.relative_to(root).as_posix()
            found = box_for(x.path, root, boxes)
            box = None
            if found:
                box, (w, h) = found
                if (h, w) != p.grey.shape:
                    mismatched, box = mismatched + 1, None
            meta = {"class": x.class_name, "pred": predictor.classes[int(logits[i].argmax())],
                    "boxed": box is not None}
            future = pool.submit(measure_scan, p.grey, p.box, {m: v[i] for m, v in maps.items()},
                                 box, rel, args.seed, args.tolerance, args.band)
            pending.append((str(x.path), meta, future))
        collect(4 * args.batch_size)
        log.info("  %d/%d scans", min(s + args.batch_size, len(samples)), len(samples))
    collect(0)
    if mismatched:
        log.warning("%d boxes skipped: image size differs from the CSV's", mismatched)
    return records


# -- summaries ------------------------------------------------------------------------------
def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and not np.isnan(v)]
    return round(float(np.mean(values)), 4) if values else None


def localisation_summary(recs: list[dict], name: str) -> dict:
    boxed = [r for r in recs if r["boxed"]]

    def row(rs):
        return {"n": len(rs), "pointing": _mean(r["m"][name]["pointing"] for r in rs),
                "energy": _mean(r["m"][name]["energy"] for r in rs)}
    classes = sorted({r["class"] for r in boxed})
    return {"all": row(boxed),
            "correct": row([r for r in boxed if r["pred"] == r["class"]]),
            "incorrect": row([r for r in boxed if r["pred"] != r["class"]]),
            "by_class": {c: row([r for r in boxed if r["class"] == c]) for c in classes}}


def shortcut_summary(recs: list[dict], name: str) -> dict:
    def row(rs):
        return {"n": len(rs), "outside_head": _mean(r["m"][name]["outside_head"] for r in rs),
                "border": _mean(r["m"][name]["border"] for r in rs)}
    classes = sorted({r["class"] for r in recs})
    return {**row(recs), "by_class": {c: row([r for r in recs if r["class"] == c]) for c in classes}}


def summarise(records: dict, split_samples: dict, methods) -> dict:
    out = {}
    for split, samples in split_samples.items():
        recs = [records[str(s.path)] for s in samples]
        boxed = [r for r in recs if r["boxed"]]
        out[split] = {
            "n": len(recs), "n_boxed": len(boxed),
            "accuracy": _mean(r["pred"] == r["class"] for r in recs),
            "accuracy_boxed": _mean(r["pred"] == r["class"] for r in boxed),
            "localisation": {m: localisation_summary(recs, m) for m in (*methods, *BASELINES)},
            "shortcut": {m: shortcut_summary(recs, m) for m in (*methods, *BASELINES)}}
    return out


def choose_default(val: dict, methods) -> tuple[str, dict[str, float]]:
    """Best validation pointing game (ties: more energy in the box) -> (method, {method: score})."""
    loc_ = val["localisation"]
    scores = {m: loc_[m]["all"]["pointing"] for m in methods}
    best = max(methods, key=lambda m: (scores[m] or 0.0, loc_[m]["all"]["energy"] or 0.0))
    return best, scores


# -- faithfulness ---------------------------------------------------------------------------
def road_perturb(tensor: np.ndarray, cam: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, S, S) model input, (S, S) map -> (top 20% imputed, all but the top 20% imputed), with
    pytorch-grad-cam's ROAD perturbations (noisy linear imputation)."""
    torch.manual_seed(seed)
    x, m = torch.from_numpy(tensor), torch.from_numpy(np.ascontiguousarray(cam, np.float32))
    with warnings.catch_warnings():        # the imputer calls np.argwhere on a torch tensor
        warnings.filterwarnings("ignore", "__array_wrap__", DeprecationWarning)
        morf = ROADMostRelevantFirst(percentile=80).perturbation(x, m)
        lerf = ROADLeastRelevantFirst(percentile=20).perturbation(x, m)
    return morf.numpy(), lerf.numpy()


@torch.no_grad()
def _softmax_at(predictor: Predictor, x: np.ndarray | torch.Tensor, targets) -> np.ndarray:
    """Softmax probability of each row's target (as pytorch-grad-cam's ClassifierOutputSoftmaxTarget)."""
    x = torch.as_tensor(x).to(predictor.device).contiguous(memory_format=torch.channels_last)
    probs = torch.softmax(predictor.model(x).float(), dim=-1).cpu().numpy()
    return probs[np.arange(len(targets)), targets]


def faithfulness(predictor: Predictor, samples, methods, args, pool) -> dict:
    """ROAD (Rong et al. 2022) on the model input: the change of the target's softmax when the top
    20% of pixels by the map are imputed (MoRF; more negative = more faithful) and when only the
    top 20% are kept (LeRF; nearer 0 = better); combined = (LeRF - MoRF) / 2, higher = better."""
    scores: dict[str, dict[str, list]] = {}
    for s in range(0, len(samples), args.batch_size):
        prepared = predictor.prepare([x.path for x in samples[s:s + args.batch_size]])
        batch = torch.stack([p.tensor for p in prepared])
        _, _, targets, maps = input_maps(predictor, batch, methods)
        size = tuple(batch.shape[-2:])
        rng = np.random.default_rng(args.seed + s)
        maps["centre"] = np.repeat(loc.centred_gaussian(size)[None], len(batch), 0)
        maps["random"] = np.stack([loc.random_heatmap(size, rng) for _ in prepared])
        before = _softmax_at(predictor, batch, targets)
        x = batch.numpy()
        futures = {name: [pool.submit(road_perturb, x[i], cam[i], args.seed + s + i)
                          for i in range(len(x))] for name, cam in maps.items()}
        for name, fs in futures.items():
            morf, lerf = zip(*(f.result() for f in fs))
            row = scores.setdefault(name, {"morf": [], "lerf": []})
            row["morf"] += (_softmax_at(predictor, np.stack(morf), targets) - before).tolist()
            row["lerf"] += (_softmax_at(predictor, np.stack(lerf), targets) - before).tolist()
        log.info("  ROAD %d/%d scans", min(s + args.batch_size, len(samples)), len(samples))
    out = {}
    for name, row in scores.items():
        mo, le = float(np.mean(row["morf"])), float(np.mean(row["lerf"]))
        out[name] = {"n": len(row["morf"]), "road_morf": round(mo, 4), "road_lerf": round(le, 4),
                     "road_combined": round((le - mo) / 2, 4)}
    return out


# -- driver ---------------------------------------------------------------------------------
def split_lists(args, root: Path, key: tuple[float, int], cache: dict) -> dict[str, list[Sample]]:
    """{split: samples} for a (val_fraction, seed): from --samples when given (no duplicate
    search, no Training folder needed beyond the validation files), else from `build_splits`."""
    name = f"{key[0]}/{key[1]}"
    if name not in cache:
        if args.samples_from is not None:
            if name not in args.samples_from:
                raise SystemExit(f"--samples has no splits for val_fraction/seed {name}")
            cache[name] = {split: [Sample(root / rel, CLASSES.index(c), split) for rel, c in rows]
                           for split, rows in args.samples_from[name].items()}
        else:
            splits = build_splits(args.data, *key, cache_dir=args.cache_dir)
            cache[name] = {split: splits.protocol(split) for split in SPLITS}
    return cache[name]


def evaluate_checkpoint(path: Path, args, root: Path, boxes: dict, methods, splits_cache: dict,
                        pool) -> dict:
    t0 = time.time()
    predictor = Predictor.from_checkpoint(path, device=args.device, checked=False)
    train_args = predictor.meta.get("args", {})
    key = split_of(train_args)
    splits = split_lists(args, root, key, splits_cache)        # the checkpoint's own validation split
    missing = [name for name in args.splits if name not in splits]
    if missing:
        raise SystemExit(f"--samples has no {missing} lists")
    chosen = {name: sample(splits[name], args.limit, args.seed) for name in args.splits}
    unique = {str(s.path): s for ss in chosen.values() for s in ss}
    log.info("%s: %d scans over %s", path, len(unique), ", ".join(chosen))
    records = evaluate_scans(predictor, list(unique.values()), root, boxes, methods, args, pool)
    result = {"checkpoint": str(path), "name": predictor.name, "arch": predictor.meta["arch"],
              "input_size": predictor.preset.size, "splits": summarise(records, chosen, methods)}
    if "val" in chosen:
        best, scores = choose_default(result["splits"]["val"], methods)
        result["default_cam"] = {"method": best, "chosen_on": "val", "val_pointing": scores}
        if args.write_default:
            update_metadata(path, default_cam=best, cam_scores=scores,
                            cam_scores_about=f"pointing game on {result['splits']['val']['n_boxed']} "
                            f"validation scans with tumour boxes, tolerance {args.tolerance:.0%} "
                            "of the image side (studies.explain_eval)")
            log.info("wrote default_cam=%s and cam_scores into %s", best, path)
    test = [n for n in ("clean", "official") if n in chosen]
    if args.faithfulness > 0 and test:
        result["faithfulness"] = {"split": test[0], **faithfulness(
            predictor, sample(splits[test[0]], args.faithfulness, args.seed), methods, args, pool)}
    if args.grid_rows > 0 and test:
        from .explain_figures import plot_grid
        grid = plot_grid(predictor, splits[test[0]], root, boxes, methods, args)
        result["grid"] = str(grid) if grid else None
    result["seconds"] = round(time.time() - t0, 1)
    log.info("%s done in %.0f s", path, result["seconds"])
    return result


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.splits = [s.strip() for s in args.split.split(",") if s.strip()]
    bad = [s for s in args.splits if s not in SPLITS]
    if bad or not args.splits:
        raise SystemExit(f"--split: unknown {bad or args.split!r}; choose from {', '.join(SPLITS)}")
    try:
        methods = tuple(dict.fromkeys(canonical_method(m) for m in args.methods.split(",") if m.strip()))
    except ValueError as error:
        raise SystemExit(f"--methods: {error}") from None
    slow = [m for m in methods if m not in HOOK_FREE]
    if slow or not methods:
        raise SystemExit(f"--methods: only the app's methods are evaluated ({', '.join(HOOK_FREE)}); got {slow}")
    if args.write_default and "val" not in args.splits:
        raise SystemExit("--write-default needs the val split in --split (the choice is made on it)")
    if not 0 <= args.tolerance < 0.5 or not 0 < args.band < 0.5:
        raise SystemExit(f"--tolerance {args.tolerance} / --band {args.band} out of range")
    root = kaggle_root(args.data)
    boxes = load_boxes(args.boxes or boxes_csv(root))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.samples and not args.samples.is_file():
        raise SystemExit(f"--samples: file not found: {args.samples}")
    resolved = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    resolved["checkpoints"] = [str(c) for c in args.checkpoints]
    (args.out / "args.json").write_text(json.dumps(resolved, indent=2))
    args.samples_from = json.loads(args.samples.read_text()) if args.samples else None
    splits_cache: dict = {}
    models = {}
    with make_pool(args.workers) as pool:
        for path in args.checkpoints:
            result = evaluate_checkpoint(path, args, root, boxes, methods, splits_cache, pool)
            name = result["name"] if result["name"] not in models else f"{result['name']}-{len(models)}"
            models[name] = result
    rel = {k: {split: [[s.path.relative_to(root).as_posix(), s.class_name] for s in v]
               for split, v in splits.items()} for k, splits in splits_cache.items()}
    (args.out / "samples.json").write_text(json.dumps(rel))
    report = {"tolerance": args.tolerance, "band": args.band, "methods": list(methods),
              "target": "predicted class", "null_maps": {
                  "centre": "Gaussian centred on the head crop, std 1/4 of each side",
                  "random": "white noise blurred (std 8% of the crop's longer side), on the head crop"},
              "models": models}
    (args.out / "explain_metrics.json").write_text(json.dumps(report, indent=1))
    from .explain_figures import markdown_tables
    tables = markdown_tables(report)
    (args.out / "tables.md").write_text(tables)
    print(tables)
    return report


if __name__ == "__main__":
    main(get_args_parser().parse_args())
