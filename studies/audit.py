"""Leak-aware data audit: copies of one picture within and across splits (and datasets), the
evidence behind the duplicate threshold, and how far file properties alone predict the class.

    python -m studies.audit ../shared/data/brain-tumor-mri --out runs/audit/kaggle
    python -m studies.audit ../shared/data/roboflow-brain-mri \\
        --against ../shared/data/brain-tumor-mri --out runs/audit/roboflow

Writes to --out: summary.json (every figure printed), groups.csv (one row per file: its
duplicate group and the group's size), pairs_near_threshold.csv, r_histogram.png,
gallery.png, args.json. Signatures are cached under --cache-dir, so a rerun takes seconds.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np

from brainmri.data import discover
from brainmri.dedup import DEFAULT_THRESHOLD, compute_signatures, group
from studies import shortcuts
from studies.audit_figures import plot_gallery, plot_histogram
from studies.audit_print import print_against, print_duplicates, print_shortcuts
from studies.audit_stats import (LOOK_SIZE, Dataset, against_report, candidate_recall,
                               counts_by_split_class, cross_split, greyscale_pairs,
                               mixed_label_groups, near_threshold, r_histogram, second_look,
                               shortcut_report)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studies.audit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data_dir", type=Path, help="dataset folder: <split>/<class>/* or <class>/*")
    p.add_argument("--against", type=Path, default=None,
                   help="a second dataset: report which images of DATA_DIR are copies of it")
    p.add_argument("--out", type=Path, default=Path("runs/audit"), help="output folder")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="thumbnail correlation at or above which two files are copies")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"),
                   help="where signatures are cached (one file per dataset folder)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for computing signatures")
    p.add_argument("--gallery", type=int, default=2,
                   help="pairs per row kind (greyscale/other) and side (above/below) in gallery.png")
    p.add_argument("--recall-check", action=argparse.BooleanOptionalAction, default=True,
                   help="also compare every pair (brute force) to count copies the hash "
                        "candidate stage misses")
    p.add_argument("--second-look", action=argparse.BooleanOptionalAction, default=True,
                   help=f"re-compare greyscale pairs near the threshold at {LOOK_SIZE} px to "
                        "count neighbouring slices on either side of it")
    p.add_argument("--list-limit", type=int, default=50, help="longest file list kept in the JSON")
    return p


def check_args(args: argparse.Namespace) -> None:
    for name, folder in (("DATA_DIR", args.data_dir), ("--against", args.against)):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{name}: no such folder: {folder}")
    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.workers < 1 or args.gallery < 0 or args.list_limit < 0:
        raise ValueError(f"--workers must be >= 1, --gallery and --list-limit >= 0; got "
                         f"{args.workers}, {args.gallery}, {args.list_limit}")


def cache_file(cache_dir: Path | None, root: Path) -> Path | None:
    """One signature cache per dataset folder, named by the folder and its resolved path."""
    if cache_dir is None:
        return None
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return cache_dir / f"audit-signatures-{root.name}-{tag}.npz"


def load(root: Path, cache_dir: Path | None, workers: int) -> Dataset:
    samples = discover(root)
    sig = compute_signatures([s.path for s in samples], cache=cache_file(cache_dir, root),
                             workers=workers)
    return Dataset(root, samples, sig, [shortcuts.file_info(s.path) for s in samples])


def write_groups_csv(ds: Dataset, path: Path) -> None:
    sizes = Counter(ds.groups.tolist())
    order = sorted(range(len(ds.samples)),
                   key=lambda i: (-sizes[ds.groups[i]], ds.groups[i], ds.rel(i)))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "group_size", "split", "class", "path", "sha256", "readable"])
        for i in order:
            s = ds.samples[i]
            w.writerow([int(ds.groups[i]), sizes[ds.groups[i]], s.split, s.class_name, ds.rel(i),
                        ds.sig.sha256[i], int(ds.sig.ok[i])])


def write_pairs_csv(ds: Dataset, threshold: float, path: Path, band: float = 0.03) -> None:
    """Candidate pairs within `band` of the threshold, for anyone who wants to look further."""
    grey = greyscale_pairs(ds)
    sel = np.flatnonzero(np.abs(ds.r - threshold) <= band)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["r", "copy", "both_greyscale", "a", "b", "class_a", "class_b"])
        for k in sel[np.argsort(-ds.r[sel])]:
            a, b = ds.pairs[k]
            w.writerow([f"{ds.r[k]:.4f}", int(ds.r[k] >= threshold), int(grey[k]), ds.rel(a),
                        ds.rel(b), ds.samples[a].class_name, ds.samples[b].class_name])


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(args: argparse.Namespace) -> dict:
    check_args(args)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.json").write_text(json.dumps(
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2))
    ds = load(args.data_dir, args.cache_dir, args.workers)
    other = load(args.against, args.cache_dir, args.workers) if args.against else None
    t_sig = time.perf_counter()
    ds.groups, ds.pairs, ds.r = group(ds.sig, args.threshold)
    t_group = time.perf_counter()
    recall = candidate_recall(ds, args.threshold) if args.recall_check else None
    t_recall = time.perf_counter()
    look = second_look(ds, args.threshold, args.workers) if args.second_look else None
    t_look = time.perf_counter()
    summary = {
        "dataset": str(args.data_dir), "date": datetime.date.today().isoformat(),
        "machine": machine(), "threshold": args.threshold, "files": len(ds.samples),
        "unreadable": int((~ds.sig.ok).sum()),
        "splits": counts_by_split_class(ds),
        "groups": len(set(ds.groups.tolist())),
        "groups_with_copies": sum(1 for n in Counter(ds.groups.tolist()).values() if n > 1),
        "candidate_pairs": int(len(ds.pairs)),
        "pairs_at_or_above_threshold": int((ds.r >= args.threshold).sum()),
        "cross_split": cross_split(ds),
        "mixed_label_groups": mixed_label_groups(ds),
        "r_histogram": r_histogram(ds),
        "candidate_recall": recall,
        "second_look": look,
    }
    rows = near_threshold(ds, args.threshold, args.gallery)
    summary["gallery"] = [{k: v for k, v in r.items() if k not in ("title_a", "title_b")}
                          for r in rows]
    summary["against"] = (against_report(ds, other, args.threshold, args.list_limit)
                          if other else None)
    summary["shortcuts"] = shortcut_report(ds, other)
    write_groups_csv(ds, args.out / "groups.csv")
    write_pairs_csv(ds, args.threshold, args.out / "pairs_near_threshold.csv")
    plot_histogram(summary["r_histogram"], args.threshold, args.out / "r_histogram.png")
    plot_gallery(rows, args.out / "gallery.png")
    summary["timings_s"] = {"signatures": round(t_sig - t0, 1), "grouping": round(t_group - t_sig, 1),
                            "all_pairs_check": round(t_recall - t_group, 1),
                            "second_look": round(t_look - t_recall, 1),
                            "total": round(time.perf_counter() - t0, 1)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_duplicates(summary)
    if summary["against"]:
        print_against(summary["against"])
    print_shortcuts(summary["shortcuts"])
    print(f"timings (s): {summary['timings_s']}")
    print(f"wrote {args.out}/summary.json, groups.csv, pairs_near_threshold.csv, "
          f"r_histogram.png, gallery.png")
    return summary


if __name__ == "__main__":
    main(get_args_parser().parse_args())
