"""Finding copies of the same picture: byte copies, resized, re-encoded, intensity-scaled or
mirrored left-right.

Each file gets a signature: a SHA-256 of its bytes, and, for its head crop and the mirror of
it, a 64-bit DCT perceptual hash and a 32x32 z-normalised thumbnail. Candidate pairs are files
sharing one 16-bit band of a hash (multi-index hashing: two hashes within Hamming distance 3
always share a band), so the search grows with the number of files, not its square. A
candidate is a copy when its thumbnails correlate at or above `threshold` (Pearson's r, either
orientation); r is blind to brightness and contrast scaling by construction.
"""
from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .io import ImageLoadError, load_image, to_grey
from .presets import head_box

THUMB = 32
# Copies score r >= 0.97 (re-encodes and resizes ~0.99+); different scans, neighbouring
# slices of one patient included, stay below: see docs/audit.md for the measured pairs.
DEFAULT_THRESHOLD = 0.97
BANDS = 4


@dataclass
class Signatures:
    paths: list[str]
    sha256: list[str]
    hashes: np.ndarray      # (N, 2) uint64: [plain, mirrored]
    thumbs: np.ndarray      # (N, 2, THUMB*THUMB) float16, z-normalised: [plain, mirrored]
    ok: np.ndarray          # (N,) bool: False for unreadable files


def _thumb(grey: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = head_box(grey)
    crop = grey[y0:y1, x0:x1]
    t = cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return t


def _phash(t: np.ndarray) -> np.uint64:
    d = cv2.dct(t)[:8, :8].flatten()
    bits = d > np.median(d[1:])
    return np.uint64(int("".join("1" if b else "0" for b in bits), 2))


def _znorm(t: np.ndarray) -> np.ndarray:
    v = t.flatten() - t.mean()
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float16)


def file_signature(path: str) -> tuple[str, np.ndarray, np.ndarray, bool]:
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        t = _thumb(to_grey(load_image(data)))
    except ImageLoadError:
        return sha, np.zeros(2, np.uint64), np.zeros((2, THUMB * THUMB), np.float16), False
    m = t[:, ::-1].copy()
    return sha, np.array([_phash(t), _phash(m)], np.uint64), np.stack([_znorm(t), _znorm(m)]), True


def compute_signatures(paths: Sequence[str | Path], cache: Path | None = None,
                       workers: int = os.cpu_count() or 2) -> Signatures:
    """Signatures of `paths`, reusing a cache keyed by (path, size, mtime) when given."""
    paths = [str(p) for p in paths]
    keys = [f"{p}|{os.stat(p).st_size}|{os.stat(p).st_mtime_ns}" for p in paths]
    cached: dict[str, tuple] = {}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            arrays = {name: z[name] for name in ("keys", "sha", "hashes", "thumbs", "ok")}
        for i, k in enumerate(arrays["keys"]):
            cached[str(k)] = (str(arrays["sha"][i]), arrays["hashes"][i], arrays["thumbs"][i],
                              bool(arrays["ok"][i]))
    todo = [p for p, k in zip(paths, keys) if k not in cached]
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            todo_keys = [k for k in keys if k not in cached]
            for k, sig in zip(todo_keys, pool.map(file_signature, todo, chunksize=32)):
                cached[k] = sig
    rows = [cached[k] for k in keys]
    sig = Signatures(paths, [r[0] for r in rows], np.stack([r[1] for r in rows]),
                     np.stack([r[2] for r in rows]), np.array([r[3] for r in rows]))
    if cache is not None and todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        # One temporary name per process: torchrun ranks build the same cache at once.
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, keys=np.array(keys), sha=np.array(sig.sha256), hashes=sig.hashes,
                 thumbs=sig.thumbs, ok=sig.ok)
        tmp.replace(cache)
    return sig


def candidate_pairs(hashes: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """(M, 2) index pairs i < j whose plain or mirrored hash shares a 16-bit band with j's plain or mirrored hash."""
    n = len(hashes)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in np.flatnonzero(ok):
        for orient in (0, 1):
            h = int(hashes[i, orient])
            for b in range(BANDS):
                buckets[(b, (h >> (16 * b)) & 0xFFFF)].append(i)
    pairs = set()
    for members in buckets.values():
        members = sorted(set(members))
        if len(members) > 1:
            m = np.array(members)
            a, b = np.triu_indices(len(m), 1)
            pairs.update(zip(m[a].tolist(), m[b].tolist()))
    del n
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def pair_correlation(thumbs: np.ndarray, pairs: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """Best Pearson r over orientations for each pair: max(r(a, b), r(a, mirror(b)))."""
    out = np.empty(len(pairs), np.float32)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        a = thumbs[p[:, 0], 0].astype(np.float32)
        b = thumbs[p[:, 1]].astype(np.float32)                       # (M, 2, D)
        out[s:s + chunk] = np.einsum("md,mod->mo", a, b).max(axis=1)
    return out


def group(sig: Signatures, threshold: float = DEFAULT_THRESHOLD) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group id per file, candidate pairs, their r). Byte-identical files always share a group."""
    n = len(sig.paths)
    pairs = candidate_pairs(sig.hashes, sig.ok)
    r = pair_correlation(sig.thumbs, pairs) if len(pairs) else np.zeros(0, np.float32)
    keep = pairs[r >= threshold]
    by_sha: dict[str, int] = {}
    extra = []
    for i, h in enumerate(sig.sha256):
        if h in by_sha:
            extra.append((by_sha[h], i))
        else:
            by_sha[h] = i
    edges = np.concatenate([keep, np.array(extra, np.int64).reshape(-1, 2)])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels, pairs, r
