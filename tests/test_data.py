"""brainmri.data: discovery in both layouts, verification, fingerprints, the crop cache."""
from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from brainmri.classes import CLASSES, UnknownClassError
from brainmri.data import discover, fingerprint, load_crops, verify
from brainmri.io import load_image
from brainmri.presets import EvalPreset

from .synthetic import scan

# Folder names as they appear in the wild; each maps onto one of CLASSES.
FOLDERS = {"glioma": "glioma_tumor", "meningioma": "meningioma",
           "notumor": "no_tumor", "pituitary": "Pituitary"}


def _write_class(folder: Path, n: int, seed: int) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        scan(seed + i, size=48).save(folder / f"img_{i}.jpg", format="JPEG")


def _add_clutter(folder: Path) -> None:
    """Files that are not scans and must never be listed."""
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(b"junk")


@pytest.fixture
def split_root(tmp_path) -> Path:
    """`<root>/<split>/<class>/*`: Training has 3 per class, Testing 1 per class, plus
    a corrupt JPEG and a PNG with a `.jpg` name in Training/no_tumor."""
    root = tmp_path / "kaggle"
    for split, n in (("Training", 3), ("Testing", 1)):
        for k, (cls, folder) in enumerate(FOLDERS.items()):
            _write_class(root / split / folder, n, seed=10 * k + (0 if split == "Training" else 5))
    normal = root / "Training" / FOLDERS["notumor"]
    (normal / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    scan(99, size=40).save(normal / "png_named.jpg", format="PNG")
    _add_clutter(normal)
    (root / "README.md").write_text("dataset card")      # a root-level file is not a folder
    return root


@pytest.fixture
def flat_root(tmp_path) -> Path:
    """`<root>/<class>/*` (Roboflow): 2 per class."""
    root = tmp_path / "roboflow"
    for k, folder in enumerate(FOLDERS.values()):
        _write_class(root / folder, 2, seed=100 + k)
    (root / "_classes.csv").write_text("filename,Glioma\n")
    _add_clutter(root / FOLDERS["glioma"])
    return root


def test_discover_split_layout(split_root):
    samples = discover(split_root)
    counts = Counter((s.split, s.class_name) for s in samples)
    expected = {("train", c): 3 for c in CLASSES} | {("test", c): 1 for c in CLASSES}
    expected[("train", "notumor")] += 2                  # corrupt.jpg and png_named.jpg
    assert counts == expected
    names = {s.path.name for s in samples}
    assert not names & {".DS_Store", "notes.txt", ".hidden.jpg", "README.md"}
    for s in samples:
        assert CLASSES[s.label] == s.class_name
        assert s.path.parent.parent.name in ("Training", "Testing")


def test_discover_flat_layout(flat_root):
    samples = discover(flat_root)
    assert Counter(s.class_name for s in samples) == {c: 2 for c in CLASSES}
    assert {s.split for s in samples} == {"all"}
    assert not {s.path.name for s in samples} & {".DS_Store", "notes.txt", "_classes.csv"}


def test_discover_is_deterministic(split_root):
    assert discover(split_root) == discover(split_root)


def test_verify_lists_and_skips_corrupt_file_and_reads_png_named_jpg(split_root):
    samples = discover(split_root)
    good, bad = verify(samples, workers=1)
    assert [p.name for p, _ in bad] == ["corrupt.jpg"]
    assert isinstance(bad[0][1], str) and bad[0][1]            # a reason fit to show a user
    assert len(good) == len(samples) - 1
    assert all(s.path.name != "corrupt.jpg" for s in good)
    png = next(s for s in good if s.path.name == "png_named.jpg")
    image = load_image(png.path)                                # format by content, not name
    assert image.mode == "L"
    assert np.array_equal(np.asarray(image), np.asarray(scan(99, size=40)))


def test_unknown_class_folder_is_named(tmp_path):
    root = tmp_path / "data"
    _write_class(root / "glioma", 1, seed=0)
    _write_class(root / "astrocytoma", 1, seed=1)
    with pytest.raises(UnknownClassError, match="'astrocytoma'"):
        discover(root)


def test_unknown_class_folder_inside_a_split_is_named(split_root):
    _write_class(split_root / "Testing" / "lymphoma", 1, seed=3)
    with pytest.raises(UnknownClassError, match="'lymphoma'"):
        discover(split_root)


def test_missing_and_empty_roots(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        discover(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class or split folders"):
        discover(tmp_path / "empty")
    (tmp_path / "hollow" / "glioma").mkdir(parents=True)
    with pytest.raises(ValueError, match="no image files"):
        discover(tmp_path / "hollow")


def test_fingerprint_is_stable_order_free_and_relocatable(flat_root, tmp_path):
    samples = discover(flat_root)
    fp = fingerprint(samples, flat_root)
    assert fp["files"] == 8 and fp["per_class"] == {c: 2 for c in CLASSES}
    assert len(fp["sha256"]) == 16
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    assert fingerprint(shuffled, flat_root) == fp
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(flat_root, moved)
    assert fingerprint(discover(moved), moved) == fp        # relative paths: the same data anywhere


def test_fingerprint_changes_with_content_or_labels(flat_root):
    samples = discover(flat_root)
    fp = fingerprint(samples, flat_root)
    with open(samples[0].path, "ab") as f:
        f.write(b"\0")                                        # one file grows by a byte
    assert fingerprint(samples, flat_root)["sha256"] != fp["sha256"]
    relabelled = [type(s)(s.path, (s.label + 1) % len(CLASSES), s.split) for s in samples]
    assert fingerprint(relabelled, flat_root)["sha256"] != fingerprint(samples, flat_root)["sha256"]


def test_load_crops_shape_zero_for_unreadable_and_cache(split_root, tmp_path):
    normal = split_root / "Training" / FOLDERS["notumor"]
    paths = [normal / "corrupt.jpg", normal / "img_0.jpg", normal / "png_named.jpg"]
    cache = tmp_path / "cache" / "crops.npy"
    crops = load_crops(paths, EvalPreset(size=32), 32, workers=1, cache=cache)
    assert crops.shape == (3, 32, 32) and crops.dtype == np.uint8
    assert not crops[0].any()                                   # the corrupt file: all zeros
    assert crops[1:].max() > 0
    assert cache.is_file()
    np.save(cache, np.full((3, 32, 32), 7, np.uint8))
    assert (load_crops(paths, EvalPreset(size=32), 32, workers=1, cache=cache) == 7).all()
    # A cache of the wrong shape is rebuilt, not trusted.
    again = load_crops(paths, EvalPreset(size=24), 24, workers=1, cache=cache)
    assert again.shape == (3, 24, 24) and np.load(cache).shape == (3, 24, 24)
