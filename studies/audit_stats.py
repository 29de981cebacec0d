"""The figures of the data audit (`python -m studies.audit`): duplicate counts per split and
class, Training/Testing leakage, label conflicts, threshold evidence, copies in a second
dataset, and the source-shortcut report. Plain functions of a `Dataset`; JSON-ready output.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brainmri.classes import CLASSES
from brainmri.data import Sample
from brainmri.dedup import Signatures, group
from studies import shortcuts
from studies.audit_figures import aligned_r, head_thumb

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
    groups: np.ndarray | None = None     # (N,) int group id per sample
    pairs: np.ndarray | None = None      # (M, 2) candidate pairs
    r: np.ndarray | None = None          # (M,) their thumbnail correlation

    def rel(self, i: int) -> str:
        return str(self.samples[i].path.relative_to(self.root))


def counts_by_split_class(ds: Dataset) -> dict:
    """{split: {class or "all": {files, distinct, redundant, byte_copies}}}.

    distinct = duplicate groups among those files; redundant = files - distinct;
    byte_copies = files - distinct SHA-256 (the byte-identical extras only).
    """
    cells: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, s in enumerate(ds.samples):
        # A set: for a flat layout split is "all" already, and a file must count once.
        for key in {(s.split, s.class_name), (s.split, "all"), ("all", s.class_name),
                    ("all", "all")}:
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
    same_bytes = {i for i, h in enumerate(ds.sig.sha256) if h in other_sha}
    with_direct = set(direct[:, 0].tolist()) | same_bytes
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
        clean = [i for i in test if ds.groups[i] not in train_groups and ds.sig.ok[i]]
        evals["clean test"] = _pick(ds, clean)
    if source is not ds:
        evals[f"{ds.root.name} (all)"] = _pick(ds, range(len(ds.samples)))
    report["fit_on"] = f"{source.root.name} Training ({len(tr)} files)"
    report["classifiers"] = shortcuts.trivial_classifiers(_pick(source, tr), evals)
    return report
