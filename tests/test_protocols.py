"""Evaluation protocols: the validation split shares no duplicate group with training, and the
clean test set shares none with Training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import ImageEnhance, ImageOps

from brainmri.classes import CLASSES
from brainmri.data import Sample
from brainmri.protocols import (VAL_FRACTION, build_splits, first_of_group, group_split, run_splits,
                                split_of, split_seed_of)
from tests import synthetic
from tests.synthetic import scan

ROOT = Path(__file__).resolve().parent.parent
# Synthetic scans whose thumbnails correlate below 0.9 pairwise (checked once): distinct pictures.
SEEDS = [0, 1, 2, 3, 4, 5, 7, 11, 12, 13, 14, 17, 18, 19, 21, 22, 28, 31, 32, 34, 41, 49, 52, 54,
         70, 108, 117, 161]


def fake_samples(n_groups: int = 60, seed: int = 0) -> tuple[list[Sample], np.ndarray]:
    """Groups of 1-4 files, one label per group, in shuffled order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    labels = np.repeat(rng.integers(0, len(CLASSES), n_groups), sizes)
    order = rng.permutation(len(groups))
    samples = [Sample(Path(f"f{i}.png"), int(labels[i]), "train") for i in order]
    return samples, groups[order]


@pytest.mark.parametrize("seed", range(3))
def test_group_split_keeps_each_group_on_one_side(seed):
    samples, groups = fake_samples(seed=seed)
    train, val = group_split(samples, groups, val_fraction=0.25, seed=seed)
    assert sorted(train + val) == list(range(len(samples)))
    assert not set(groups[train]) & set(groups[val])
    assert 0 < len(val) < len(train)


def test_group_split_is_deterministic_and_stratified():
    samples, groups = fake_samples(n_groups=200)
    assert group_split(samples, groups, 0.2, seed=1) == group_split(samples, groups, 0.2, seed=1)
    _, val = group_split(samples, groups, 0.2, seed=1)
    labels = np.array([s.label for s in samples])
    for c in range(len(CLASSES)):
        n_groups = len(set(groups[labels == c]))
        assert abs(len(set(groups[val][labels[val] == c])) - 0.2 * n_groups) <= 1


def test_first_of_group_keeps_one_file_per_group():
    groups = np.array([5, 5, 2, 7, 2, 5])
    assert first_of_group([0, 1, 2, 3, 4, 5], groups) == [0, 2, 3]


@pytest.fixture(scope="module")
def synthetic_kaggle(tmp_path_factory) -> Path:
    """Training/Testing folders where some Testing files are mirrored copies of Training ones
    and some Training pictures appear twice (the second time brighter)."""
    root = tmp_path_factory.mktemp("kaggle")
    for split in ("Training", "Testing"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
    for c, name in enumerate(CLASSES):
        for k in range(6):
            seed = SEEDS[7 * c + k]
            scan(seed).save(root / "Training" / name / f"tr_{k}.png")
            if k < 2:
                bright = ImageEnhance.Brightness(scan(seed)).enhance(1.2)
                bright.save(root / "Training" / name / f"tr_{k}_bright.png")
            if k == 0:
                ImageOps.mirror(scan(seed)).save(root / "Testing" / name / "te_copy.png")
        scan(SEEDS[7 * c + 6]).save(root / "Testing" / name / "te_new.png")
    return root


def check_splits(splits) -> None:
    g = splits.groups
    train = {g[str(s.path)] for s in splits.train}
    val = {g[str(s.path)] for s in splits.val}
    assert splits.val and not train & val
    training = {g[str(s.path)] for s in splits.train + splits.val}
    assert not training & {g[str(s.path)] for s in splits.clean}
    assert {str(s.path) for s in splits.clean} <= {str(s.path) for s in splits.official}


def test_build_splits_on_synthetic_groups(synthetic_kaggle, tmp_path):
    splits = build_splits(synthetic_kaggle, val_fraction=0.34, cache_dir=tmp_path)
    check_splits(splits)
    assert len(splits.official) == 2 * len(CLASSES)
    assert sorted(s.path.name for s in splits.clean) == ["te_new.png"] * len(CLASSES)
    assert len(splits.train) + len(splits.val) == 6 * len(CLASSES)      # copies dropped


@pytest.mark.real_data
def test_build_splits_on_real_data(data_dir):
    # Own cache file: the first run computes signatures (~15 s on 2 cores), later runs reuse them.
    splits = build_splits(data_dir, cache_dir=ROOT / ".cache" / "tests")
    check_splits(splits)
    assert 200 < len(splits.clean) < len(splits.official) == 1311


# -- leave one source out ------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_source_kaggle(tmp_path_factory) -> Path:
    return synthetic.two_source_kaggle(tmp_path_factory.mktemp("two-sources"), SEEDS)


def test_source_of_reads_the_header(two_source_kaggle):
    from brainmri.protocols import FIGSHARE, OTHER, source_of
    glioma = two_source_kaggle / "Training" / "glioma"
    assert source_of(glioma / "fs_1.png") == FIGSHARE
    assert source_of(glioma / "fs_0_rgb.jpg") == OTHER
    assert source_of(glioma / "ot_3.png") == OTHER


def test_group_sources_follow_the_figshare_member():
    from brainmri.protocols import FIGSHARE, OTHER, group_sources
    files = [FIGSHARE, OTHER, OTHER, "", OTHER]
    groups = np.array([0, 0, 1, 2, 2])
    assert group_sources(files, groups) == [FIGSHARE, FIGSHARE, OTHER, "", OTHER]


@pytest.mark.parametrize("holdout,classes", [("figshare", None), ("sartaj-br35h", None),
                                             ("sartaj-br35h", ["meningioma"]),
                                             ("figshare", ["glioma", "pituitary"])])
def test_loso_keeps_every_held_out_group_out_of_training(two_source_kaggle, tmp_path, holdout, classes):
    splits = build_splits(two_source_kaggle, val_fraction=0.34, cache_dir=tmp_path,
                          holdout_source=holdout, holdout_classes=classes)
    check_splits(splits)
    g, src = splits.groups, splits.sources
    held_classes = set(classes or CLASSES)
    held = {g[str(x.path)] for x in splits.loso}
    seen = {g[str(s.path)] for s in splits.train + splits.val}
    assert splits.loso and not held & seen                      # no held-out group reaches training
    assert all(src[str(s.path)] == holdout and s.class_name in held_classes for s in splits.loso)
    assert len(held) == len(splits.loso)                        # one picture per group
    # every picture of the held-out source and classes is in a held-out group
    every = [p for p, s in src.items() if s == holdout]
    for p in every:
        cls = Path(p).parent.name
        if cls in held_classes:
            assert g[p] in held, p
    # what is not held out still trains
    if classes:
        kept = set(CLASSES) - held_classes
        assert {s.class_name for s in splits.train + splits.val} >= kept


def test_loso_re_export_of_a_figshare_slice_counts_as_figshare(two_source_kaggle, tmp_path):
    splits = build_splits(two_source_kaggle, val_fraction=0.34, cache_dir=tmp_path,
                          holdout_source="figshare")
    names = {s.path.name for s in splits.train + splits.val}
    assert not names & {"fs_0_rgb.jpg", "fs_0.png", "fs_1.png", "fs_2.png"}
    assert "te_copy_rgb.png" not in {s.path.name for s in splits.train + splits.val}
    assert splits.sources[str(two_source_kaggle / "Training" / "glioma" / "fs_0_rgb.jpg")] == "figshare"


def test_loso_rejects_unknown_source_and_class(two_source_kaggle, tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        build_splits(two_source_kaggle, cache_dir=tmp_path, holdout_source="br35h-only")
    with pytest.raises(ValueError, match="unknown classes"):
        build_splits(two_source_kaggle, cache_dir=tmp_path, holdout_source="figshare",
                     holdout_classes=["astrocytoma"])


def test_no_holdout_leaves_splits_unchanged(synthetic_kaggle, tmp_path):
    plain = build_splits(synthetic_kaggle, val_fraction=0.34, cache_dir=tmp_path)
    assert plain.loso is None and plain.holdout_source is None
    assert set(plain.sources.values()) == {"sartaj-br35h"}        # 256 px files: not figshare


def test_run_splits_rebuild_a_runs_own_split_from_its_arguments(two_source_kaggle, tmp_path):
    """A checkpoint's recorded arguments give back its run's split: validation share, seed (a
    tail stage's `split_seed` first), held-out source and classes; none recorded: the default."""
    def paths(splits):
        return [[str(s.path) for s in part] for part in (splits.train, splits.val, splits.loso or [])]
    args = {"val_fraction": 0.34, "seed": 3, "holdout_source": "sartaj-br35h",
            "holdout_classes": "meningioma", "lr": 0.1}
    want = build_splits(two_source_kaggle, 0.34, 3, cache_dir=tmp_path, holdout_source="sartaj-br35h",
                        holdout_classes=["meningioma"])
    assert paths(run_splits(two_source_kaggle, args, cache_dir=tmp_path)) == paths(want)
    tail = {"val_fraction": 0.34, "seed": 9, "split_seed": 1}
    assert paths(run_splits(two_source_kaggle, tail, cache_dir=tmp_path)) == paths(
        build_splits(two_source_kaggle, 0.34, 1, cache_dir=tmp_path))
    # `python -m train` records `split_seed` always: None (no --split-seed) means the run's seed.
    assert split_seed_of({"seed": 9, "split_seed": None}) == 9 and split_seed_of(tail) == 1
    assert split_seed_of({"seed": 9, "split_seed": 0}) == 0 and split_seed_of({}) == 0
    assert split_of(tail) == (0.34, 1) and split_of({}) == (VAL_FRACTION, 0)   # what it draws
    assert paths(run_splits(two_source_kaggle, {}, cache_dir=tmp_path)) == paths(
        build_splits(two_source_kaggle, cache_dir=tmp_path))
    assert paths(want) != paths(build_splits(two_source_kaggle, 0.34, 3, cache_dir=tmp_path))
    assert paths(build_splits(two_source_kaggle, 0.34, 1, cache_dir=tmp_path)) != paths(
        build_splits(two_source_kaggle, 0.34, 9, cache_dir=tmp_path))      # the seeds tell apart
