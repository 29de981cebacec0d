"""Leak-aware data audit: copies of one picture within and across splits (and datasets), the
evidence behind the duplicate threshold, and how far file properties alone predict the class.

    python -m train.audit ../shared/data/brain-tumor-mri --out runs/audit/kaggle
    python -m train.audit ../shared/data/roboflow-brain-mri \\
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
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brainmri.classes import CLASSES
from brainmri.data import Sample, discover
from brainmri.dedup import DEFAULT_THRESHOLD, Signatures, compute_signatures, group
from train import shortcuts
from train.audit_figures import aligned_r, head_thumb, plot_gallery, plot_histogram

HIST_EDGES = np.round(np.arange(0.50, 1.0001, 0.01), 2)
NEAR = 0.01          # "just above / just below the threshold" means within this of it
# Second look at greyscale pairs near the threshold: re-compared at 128 px, a copy of one
# picture stays >= 0.96 (measured: >= 0.98) while neighbouring slices fall below (<= 0.95).
LOOK_SIZE, LOOK_COPY, LOOK_BAND = 128, 0.96, 0.03


@dataclass
class Dataset:
    """One audited folder: its samples, their signatures and header facts, and groups."""
    root: Path
    samples: list[Sample]
    sig: Signatures
    infos: list[shortcuts.FileInfo]
    groups: np.ndarray = None        # (N,) int group id per sample
    pairs: np.ndarray = None         # (M, 2) candidate pairs
    r: np.ndarray = None             # (M,) their thumbnail correlation

    def rel(self, i: int) -> str:
        return str(self.samples[i].path.relative_to(self.root))


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
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
    for name in ("data_dir", "against"):
        folder = getattr(args, name)
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"--{name.replace('_', '-')}: no such folder: {folder}")
    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")


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


def counts_by_split_class(ds: Dataset) -> dict:
    """{split: {class or "all": {files, distinct, redundant, byte_copies}}}.

    distinct = duplicate groups among those files; redundant = files - distinct;
    byte_copies = files - distinct SHA-256 (the byte-identical extras only).
    """
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(ds.samples):
        for key in {(s.split, s.class_name), (s.split, "all"), ("all", s.class_name), ("all", "all")}:
            cells[key].append(i)
    out: dict[str, dict] = defaultdict(dict)
    for (split, cls), idx in sorted(cells.items()):
        distinct = len(set(ds.groups[idx].tolist()))
        out[split][cls] = {"files": len(idx), "distinct": distinct, "redundant": len(idx) - distinct,
                           "byte_copies": len(idx) - len({ds.sig.sha256[i] for i in idx})}
    return dict(out)


def cross_split(ds: Dataset) -> dict | None:
    """Train/test leakage through groups; None when the folder has no train and test split."""
    split = np.array([s.split for s in ds.samples])
    if not {"train", "test"} <= set(split.tolist()):
        return None
    train_groups = set(ds.groups[split == "train"].tolist())
    test_groups = set(ds.groups[split == "test"].tolist())
    leaked = [i for i in np.flatnonzero(split == "test") if ds.groups[i] in train_groups]
    per_class = Counter(ds.samples[i].class_name for i in leaked)
    tests = Counter(s.class_name for s in ds.samples if s.split == "test")
    return {"groups_crossing": len(train_groups & test_groups),
            "test_files": int((split == "test").sum()),
            "test_with_copy_in_train": len(leaked),
            "test_without_copy_in_train": int((split == "test").sum()) - len(leaked),
            "per_class": {c: {"test_files": tests[c], "with_copy_in_train": per_class[c]}
                          for c in CLASSES if tests[c]}}


def mixed_label_groups(ds: Dataset) -> list[dict]:
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(ds.groups):
        members[int(g)].append(i)
    out = []
    for g, idx in sorted(members.items()):
        if len({ds.samples[i].label for i in idx}) > 1:
            out.append({"group": g, "members": [
                {"path": ds.rel(i), "split": ds.samples[i].split,
                 "class": ds.samples[i].class_name} for i in idx]})
    return out


def greyscale_pairs(ds: Dataset) -> np.ndarray:
    """(M,) bool: both files of a candidate pair are stored as greyscale (mode L)."""
    grey = np.array([f.mode == "L" for f in ds.infos])
    return grey[ds.pairs[:, 0]] & grey[ds.pairs[:, 1]] if len(ds.pairs) else np.zeros(0, bool)


def r_histogram(ds: Dataset) -> dict:
    grey = greyscale_pairs(ds)
    h = {"edges": HIST_EDGES.tolist(), "pairs": int(len(ds.r)),
         "below_range": int((ds.r < HIST_EDGES[0]).sum())}
    for name, sel in (("greyscale_pairs", grey), ("other_pairs", ~grey)):
        h[name] = np.histogram(np.clip(ds.r[sel], None, 1.0), bins=HIST_EDGES)[0].tolist()
    return h


def near_threshold(ds: Dataset, threshold: float, per_kind: int, seed: int = 0) -> list[dict]:
    """Gallery rows: `per_kind` random pairs per (greyscale/other, above/below) within NEAR."""
    grey = greyscale_pairs(ds)
    rng = np.random.default_rng(seed)
    rows = []
    for side, lo, hi in (("above", threshold, threshold + NEAR), ("below", threshold - NEAR, threshold)):
        for kind, sel in (("greyscale", grey), ("other", ~grey)):
            idx = np.flatnonzero(sel & (ds.r >= lo) & (ds.r < hi))
            for k in sorted(rng.choice(idx, min(per_kind, len(idx)), replace=False),
                            key=lambda k: -ds.r[k]):
                a, b = ds.pairs[k]
                rows.append({"side": side, "kind": kind, "r": float(ds.r[k]),
                             "a": str(ds.samples[a].path), "b": str(ds.samples[b].path),
                             "title_a": f"{ds.samples[a].split}/{ds.rel(a).split('/')[-1]}",
                             "title_b": f"{ds.samples[b].split}/{ds.rel(b).split('/')[-1]}"})
    return rows


def exhaustive_pairs(sig: Signatures, threshold: float, rows: np.ndarray | None = None,
                     chunk: int = 512) -> np.ndarray:
    """(K, 2) every pair (i, j), i in `rows` (default all, then i < j), j != i, whose thumbnail
    r (best of plain / mirrored) is >= threshold: brute force, O(len(rows) * N) dot products in
    chunks of `chunk` rows (~30 MB each for 7,000 files). A check on the hash candidates."""
    n = len(sig.paths)
    a = np.where(sig.ok[:, None], sig.thumbs[:, 0].astype(np.float32), 0)         # (N, D)
    b = np.where(sig.ok[:, None, None], sig.thumbs.astype(np.float32), 0)           # (N, 2, D)
    b = np.concatenate([b[:, 0], b[:, 1]])                                          # (2N, D)
    every = rows is None
    rows = np.arange(n) if every else np.asarray(rows)
    out = []
    for s in range(0, len(rows), chunk):
        idx = rows[s:s + chunk]
        r = a[idx] @ b.T
        i, j = np.nonzero(np.maximum(r[:, :n], r[:, n:]) >= threshold)
        i = idx[i]
        out.append(np.stack([i, j], 1)[i < j if every else i != j])
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 2), np.int64)


def components(n: int, edges: np.ndarray, sha256: list[str]) -> np.ndarray:
    """Group id per file from pair edges, byte-identical files joined as in `dedup.group`."""
    first: dict[str, int] = {}
    extra = []
    for i, h in enumerate(sha256):
        j = first.setdefault(h, i)
        if j != i:
            extra.append((j, i))
    e = np.concatenate([edges.reshape(-1, 2), np.array(extra, np.int64).reshape(-1, 2)])
    graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def candidate_recall(ds: Dataset, threshold: float) -> dict:
    """How many pairs at or above the threshold the hash candidate stage never compares, and
    what the headline figures would be with every pair compared."""
    pairs = exhaustive_pairs(ds.sig, threshold)
    found = int((ds.r >= threshold).sum())
    full = Dataset(ds.root, ds.samples, ds.sig, ds.infos,
                   components(len(ds.samples), pairs, ds.sig.sha256), ds.pairs, ds.r)
    x = cross_split(full)
    return {"pairs_at_or_above_threshold": int(len(pairs)), "found_by_hash_candidates": found,
            "missed": int(len(pairs)) - found,
            "recall": round(found / len(pairs), 4) if len(pairs) else 1.0,
            "groups_if_all_pairs_compared": len(set(full.groups.tolist())),
            "test_with_copy_in_train_if_all_pairs_compared":
                x["test_with_copy_in_train"] if x else None}


def _look_thumb(path: str) -> np.ndarray:
    return head_thumb(path, LOOK_SIZE)


def second_look(ds: Dataset, threshold: float, workers: int) -> dict:
    """Greyscale-greyscale candidate pairs with r >= threshold - LOOK_BAND, re-compared at
    LOOK_SIZE px. Per 0.01 bin of r: pairs, and how many still correlate >= LOOK_COPY at full
    detail (the same picture) rather than below (a different slice, typically the next one)."""
    sel = np.flatnonzero(greyscale_pairs(ds) & (ds.r >= threshold - LOOK_BAND))
    files = sorted(set(ds.pairs[sel].ravel().tolist()))
    with ProcessPoolExecutor(max(1, workers)) as pool:
        thumbs = dict(zip(files, pool.map(_look_thumb, [str(ds.samples[i].path) for i in files],
                                          chunksize=16)))
    r_hi = np.array([aligned_r(thumbs[a], thumbs[b])[0] for a, b in ds.pairs[sel]])
    edges = np.round(np.arange(threshold - LOOK_BAND, 1.0, 0.01), 3)
    bins = np.clip(np.searchsorted(edges, ds.r[sel], side="right") - 1, 0, len(edges) - 1)
    table = [{"r_from": float(e), "pairs": int((bins == k).sum()),
              "same_picture_at_128px": int(((bins == k) & (r_hi >= LOOK_COPY)).sum())}
             for k, e in enumerate(edges)]
    above = ds.r[sel] >= threshold
    return {"size": LOOK_SIZE, "copy_if_r_at_size_at_least": LOOK_COPY, "bins": table,
            "above_threshold_but_different_at_128px": int((above & (r_hi < LOOK_COPY)).sum()),
            "below_threshold_but_same_at_128px": int((~above & (r_hi >= LOOK_COPY)).sum())}


def against_report(ds: Dataset, other: Dataset, threshold: float, limit: int) -> dict:
    """Which files of `ds` share a duplicate group with a file of `other` (grouped together)."""
    n = len(ds.samples)
    both = Signatures(ds.sig.paths + other.sig.paths, ds.sig.sha256 + other.sig.sha256,
                      np.concatenate([ds.sig.hashes, other.sig.hashes]),
                      np.concatenate([ds.sig.thumbs, other.sig.thumbs]),
                      np.concatenate([ds.sig.ok, other.sig.ok]))
    groups, _, _ = group(both, threshold)
    direct = exhaustive_pairs(both, threshold, rows=np.arange(n))
    direct = direct[direct[:, 1] >= n]
    other_sha = set(other.sig.sha256)
    with_direct = set(direct[:, 0].tolist()) | {i for i, h in enumerate(ds.sig.sha256) if h in other_sha}
    members: dict[int, list[int]] = defaultdict(list)
    for j in range(len(other.samples)):
        members[int(groups[n + j])].append(j)
    per_class: dict[str, Counter] = defaultdict(Counter)
    missing, relabelled = [], []
    for i, s in enumerate(ds.samples):
        copies = [other.samples[j] for j in members.get(int(groups[i]), [])]
        c = per_class[s.class_name]
        c["files"] += 1
        if not copies:
            missing.append(ds.rel(i))
            continue
        c["with_copy"] += 1
        for split in sorted({o.split for o in copies}):
            c[f"copy_in_{split}"] += 1
        if any(o.label == s.label for o in copies):
            c["same_label"] += 1
        else:
            relabelled.append({"path": ds.rel(i), "class": s.class_name,
                               "copy_classes": sorted({o.class_name for o in copies})})
    total = sum(per_class.values(), Counter())
    return {"other": str(other.root), "other_files": len(other.samples),
            "files": total["files"], "with_copy": total["with_copy"],
            "same_label": total["same_label"],
            "with_direct_copy_all_pairs_compared": len(with_direct),
            "copy_in_split": {k[8:]: v for k, v in sorted(total.items()) if k.startswith("copy_in_")},
            "per_class": {c: dict(per_class[c]) for c in CLASSES if c in per_class},
            "without_copy": missing[:limit], "without_copy_count": len(missing),
            "label_differs": relabelled[:limit], "label_differs_count": len(relabelled)}


def _pick(d: Dataset, idx) -> tuple[list, list]:
    return [d.infos[i] for i in idx], [d.samples[i].label for i in idx]


def shortcut_report(ds: Dataset, other: Dataset | None) -> dict:
    """File-property distributions per class, and trivial classifiers: fit on Training (of
    DATA_DIR, else of --against), scored on Testing, its clean part, and a flat DATA_DIR."""
    labels = [s.label for s in ds.samples]
    report = {"per_class": shortcuts.distributions(labels, ds.infos),
              "extension_mismatch": shortcuts.extension_mismatches(
                  [Path(ds.rel(i)) for i in range(len(ds.samples))], ds.infos)}
    split = np.array([s.split for s in ds.samples])
    source = ds if "train" in split else other
    if source is None or not any(s.split == "train" for s in source.samples):
        report["classifiers"] = "no Training split to fit on"
        return report
    tr = [i for i, s in enumerate(source.samples) if s.split == "train"]
    evals = {}
    test = np.flatnonzero(split == "test")
    if len(test):
        train_groups = set(ds.groups[split == "train"].tolist())
        evals["official test"] = _pick(ds, test)
        evals["clean test"] = _pick(ds, [i for i in test if ds.groups[i] not in train_groups
                                        and ds.sig.ok[i]])
    if source is not ds:
        evals[f"{ds.root.name} (all)"] = _pick(ds, range(len(ds.samples)))
    report["fit_on"] = f"{source.root.name} Training ({len(tr)} files)"
    report["classifiers"] = shortcuts.trivial_classifiers(_pick(source, tr), evals)
    return report


def write_groups_csv(ds: Dataset, path: Path) -> None:
    sizes = Counter(ds.groups.tolist())
    order = sorted(range(len(ds.samples)), key=lambda i: (-sizes[ds.groups[i]], ds.groups[i], ds.rel(i)))
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


def print_duplicates(summary: dict) -> None:
    print(f"\n{summary['dataset']}: {summary['files']} files, {summary['unreadable']} unreadable; "
          f"threshold r >= {summary['threshold']}")
    print(f"{'split':<6} {'class':<11} {'files':>6} {'distinct':>9} {'redundant':>10} {'byte copies':>12}")
    for split, row in summary["splits"].items():
        for cls, c in row.items():
            print(f"{split:<6} {cls:<11} {c['files']:>6} {c['distinct']:>9} {c['redundant']:>10} "
                  f"{c['byte_copies']:>12}")
    print(f"groups: {summary['groups']} ({summary['groups_with_copies']} with more than one file); "
          f"candidate pairs: {summary['candidate_pairs']:,}, "
          f"at or above threshold: {summary['pairs_at_or_above_threshold']:,}")
    c = summary["candidate_recall"]
    if c:
        print(f"every pair compared: {c['pairs_at_or_above_threshold']:,} at or above threshold, "
              f"hash candidates found {c['found_by_hash_candidates']:,} (recall {c['recall']}); "
              f"with every pair: {c['groups_if_all_pairs_compared']} groups"
              + (f", Testing with a copy in Training {c['test_with_copy_in_train_if_all_pairs_compared']}"
                 if summary["cross_split"] else ""))
    look = summary["second_look"]
    if look and any(b["pairs"] for b in look["bins"]):
        print(f"second look at greyscale pairs, {look['size']} px (same picture if r >= "
              f"{look['copy_if_r_at_size_at_least']}): r bin: pairs / same picture")
        print("  " + ", ".join(f"{b['r_from']:.2f}: {b['pairs']}/{b['same_picture_at_128px']}"
                               for b in look["bins"]))
        print(f"  above threshold but different at {look['size']} px: "
              f"{look['above_threshold_but_different_at_128px']}; below threshold but the same: "
              f"{look['below_threshold_but_same_at_128px']}")
    x = summary["cross_split"]
    if x:
        print(f"groups crossing Training/Testing: {x['groups_crossing']}; Testing images with a copy "
              f"in Training: {x['test_with_copy_in_train']} of {x['test_files']} ("
              + ", ".join(f"{c} {v['with_copy_in_train']}/{v['test_files']}"
                          for c, v in x["per_class"].items()) + ")")
    print(f"groups with different labels: {len(summary['mixed_label_groups'])}")
    for g in summary["mixed_label_groups"]:
        print(f"  group {g['group']}: " + "; ".join(f"{m['path']}" for m in g["members"]))


def print_against(a: dict) -> None:
    print(f"\ncopies of {a['other']} ({a['other_files']} files): {a['with_copy']} of "
          f"{a['files']} files (every pair compared, direct copies: "
          f"{a['with_direct_copy_all_pairs_compared']}); same label {a['same_label']}; "
          f"copy found in split(s) {a['copy_in_split']}")
    for c, v in a["per_class"].items():
        print(f"  {c:<11} {v.get('with_copy', 0):>5} / {v['files']:<5} same label "
              f"{v.get('same_label', 0)}")
    if a["without_copy_count"]:
        print(f"  without a copy ({a['without_copy_count']}): {', '.join(a['without_copy'][:10])}")
    if a["label_differs_count"]:
        print(f"  copy has another label ({a['label_differs_count']}): "
              + ", ".join(f"{d['path']} -> {'/'.join(d['copy_classes'])}"
                          for d in a["label_differs"][:10]))


def print_shortcuts(s: dict) -> None:
    print("\nfile properties per class (mode, format, distinct sizes, most common size, median KiB):")
    for c, v in s["per_class"].items():
        print(f"  {c:<11} {v['mode']} {v['format']} {v['distinct_sizes']} sizes, "
              f"top {v['top_sizes'][0][0]} x{v['top_sizes'][0][1]}, {v['median_kib']} KiB")
    if s["extension_mismatch"]:
        print(f"  content format differs from extension: {len(s['extension_mismatch'])} "
              f"({', '.join(s['extension_mismatch'][:5])})")
    clf = s["classifiers"]
    if isinstance(clf, str):
        print(f"trivial classifiers: {clf}")
        return
    names = list(clf["n"])
    print(f"accuracy / balanced accuracy without anatomy (fit on {s['fit_on']}):")
    print(f"  {'':<44}" + "".join(f"{n + ' (' + str(clf['n'][n]) + ')':>24}" for n in names))
    for model, acc in clf["accuracy"].items():
        bal = clf["balanced_accuracy"][model]
        print(f"  {model:<44}" + "".join(f"{acc.get(n, float('nan')):>15.3f} / "
                                         f"{bal.get(n, float('nan')):.3f}" for n in names))
    print("  classes: " + "; ".join(f"{n}: {c}" for n, c in clf["class_counts"].items()))


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
