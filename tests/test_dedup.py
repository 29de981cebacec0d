"""Duplicate finding: every kind of copy is grouped with its original, different pictures
(neighbouring slices included) are not."""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from brainmri.dedup import DEFAULT_THRESHOLD, compute_signatures, group, pair_correlation
from tests.synthetic import scan


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def neighbour(img: Image.Image, seed: int, amp: float = 8.0) -> Image.Image:
    """A stand-in for the next slice of one patient: a smooth random warp of up to a few
    percent of the image (anatomy shifts a little, nothing is copied pixel for pixel)."""
    a = np.asarray(img, np.float32)
    h, w = a.shape
    coarse = np.random.default_rng(seed).normal(0, amp, (2, 4, 4)).astype(np.float32)
    dx, dy = (cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return Image.fromarray(cv2.remap(a, xx + dx, yy + dy, cv2.INTER_LINEAR).clip(0, 255)
                           .astype(np.uint8))


COPIES = {
    "mirrored": lambda im: ImageOps.mirror(im),
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.BILINEAR),
    "jpeg q60": lambda im: jpeg(im, 60),
    "brightness x1.2": lambda im: ImageEnhance.Brightness(im).enhance(1.2),
    "png of a jpeg": lambda im: jpeg(im, 90).convert("L"),
    "rgb": lambda im: im.convert("RGB"),
}


def save_all(folder: Path, images: dict[str, Image.Image]) -> list[Path]:
    paths = []
    for name, im in images.items():
        path = folder / f"{name.replace(' ', '_')}.png"
        im.save(path)
        paths.append(path)
    return paths


def groups_of(paths: list[Path], threshold: float = DEFAULT_THRESHOLD):
    sig = compute_signatures(paths, workers=1)
    labels, pairs, r = group(sig, threshold)
    return labels, {tuple(p): float(v) for p, v in zip(pairs.tolist(), r)}


@pytest.fixture(scope="module", params=[3, 5, 8])
def copies_and_originals(request, tmp_path_factory) -> tuple[list[str], np.ndarray]:
    seed = request.param
    folder = tmp_path_factory.mktemp(f"copies{seed}")
    images = {"original": scan(seed)}
    images.update({name: make(scan(seed)) for name, make in COPIES.items()})
    images.update({"other a": scan(12), "other b": scan(13)})
    paths = save_all(folder, images)
    labels, _ = groups_of(paths)
    return list(images), labels


@pytest.mark.parametrize("kind", list(COPIES))
def test_each_kind_of_copy_is_grouped_with_the_original(copies_and_originals, kind):
    names, labels = copies_and_originals
    assert labels[names.index(kind)] == labels[names.index("original")]


def test_different_scans_are_not_grouped(copies_and_originals):
    names, labels = copies_and_originals
    others = [labels[names.index(n)] for n in ("original", "other a", "other b")]
    assert len(set(others)) == 3


@pytest.mark.xfail(strict=True, reason="known limit of the hash candidate stage: a copy whose "
                   "64-bit hashes differ in 4+ bits in every 16-bit band is never compared "
                   "(about 4% of the r >= 0.97 pairs on the Kaggle set, see docs/audit.md)")
def test_half_size_copy_whose_hash_bands_all_differ_is_found(tmp_path):
    paths = save_all(tmp_path, {"a": scan(31), "b": COPIES["half size"](scan(31))})
    sig = compute_signatures(paths, workers=1)
    assert pair_correlation(sig.thumbs, np.array([[0, 1]]))[0] >= DEFAULT_THRESHOLD
    labels = group(sig)[0]
    assert labels[0] == labels[1]


def test_byte_identical_files_always_share_a_group(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    scan(5).save(a)
    b.write_bytes(a.read_bytes())
    labels, _ = groups_of([a, b], threshold=1.0)
    assert labels[0] == labels[1]


@pytest.mark.parametrize("seed", range(4))
def test_neighbouring_slices_are_similar_but_not_copies(tmp_path, seed):
    paths = save_all(tmp_path, {"slice": scan(7), "next slice": neighbour(scan(7), seed)})
    sig = compute_signatures(paths, workers=1)
    r = float(pair_correlation(sig.thumbs, np.array([[0, 1]]))[0])
    assert 0.8 < r < DEFAULT_THRESHOLD
    labels = group(sig)[0]
    assert labels[0] != labels[1]


def test_signature_cache_is_reused(tmp_path):
    paths = save_all(tmp_path, {"a": scan(1), "b": scan(2)})
    cache = tmp_path / "cache" / "sig.npz"
    first = compute_signatures(paths, cache=cache, workers=1)
    stamp = cache.stat().st_mtime_ns
    second = compute_signatures(paths, cache=cache, workers=1)
    assert cache.stat().st_mtime_ns == stamp          # nothing recomputed, nothing rewritten
    assert second.sha256 == first.sha256 and np.array_equal(second.thumbs, first.thumbs)


# Real scans (BRAINMRI_DATA). Pairs checked by eye in the audit gallery (docs/audit.md).
SAME_PICTURE = ("Testing/glioma/Te-glTr_0000.jpg", "Training/glioma/Tr-gl_0189.jpg")
NEIGHBOURING_SLICES = ("Testing/glioma/Te-gl_0087.jpg", "Training/glioma/Tr-gl_0220.jpg")


@pytest.mark.real_data
def test_real_neighbouring_slices_are_not_grouped_but_copies_are(data_dir):
    root = data_dir / "brain-tumor-mri"
    paths = [root / p for p in SAME_PICTURE + NEIGHBOURING_SLICES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"expected files missing: {missing}")
    labels, _ = groups_of(paths)
    assert labels[0] == labels[1]
    assert labels[2] != labels[3]
    assert labels[0] != labels[2]
