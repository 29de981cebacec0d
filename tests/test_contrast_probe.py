"""studies.contrast_probe: a contrast detector's reach, on synthetic features and end to end on
a synthetic two-source folder with hand labels."""
from __future__ import annotations

import csv
from argparse import Namespace

import numpy as np
import pytest

from brainmri.protocols import build_splits, kaggle_root
from studies import contrast_probe
from tests import synthetic
from tests.conftest import make_tiny_checkpoint
from tests.test_protocols import SEEDS


def test_flagged_counts_each_side_at_the_threshold():
    f = contrast_probe.flagged(np.array([0.9, 0.2, 0.6, 0.4]), np.array([True, True, False, False]))
    assert f == {"non_t1": 2, "t1": 2, "non_t1_flagged": 0.5, "t1_flagged": 0.5}


def test_a_detector_of_the_no_tumour_look_misses_other_contrasts_of_a_tumour():
    """The finding the probe exists for: fitted where "not T1" always comes with one look,
    the detector flags that look, not the contrast, so held-out non-T1 scans of another look
    are missed."""
    rng = np.random.default_rng(0)

    def scans(n, contrast_shift, look_shift):
        x = rng.normal(size=(n, 10))
        x[:, 0] += contrast_shift
        x[:, 1] += look_shift
        return x
    # val: the non-T1 scans differ in contrast AND in look; loso: in contrast only
    val = np.concatenate([scans(60, 0, 0), scans(30, 0.5, 6)])
    loso = np.concatenate([scans(60, 0, 0), scans(30, 0.5, 0)])
    y = np.r_[np.zeros(60, bool), np.ones(30, bool)]
    sets = {"val": {"look": val, "model": val, "not_t1": y}, "loso": {"look": loso, "model": loso, "not_t1": y}}
    r = contrast_probe.probe(sets, dims=4, folds=5)
    for kind in ("look", "model"):
        assert r[kind]["cross_validated"]["non_t1"] == 60 and r[kind]["val_to_loso"]["non_t1"] == 30
        assert r[kind]["val_to_loso"]["non_t1_flagged"] < 0.5
    assert "| look | val | loso |" in contrast_probe.table({"probe": r})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.two_source_kaggle(tmp_path_factory.mktemp("two-sources"), SEEDS)


def test_runs_end_to_end_on_hand_labels(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                   # the signature cache goes under tmp_path
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline")
    root = kaggle_root(folder)
    rows = [*build_splits(folder).val, *build_splits(folder, **contrast_probe.PROTOCOL_1).loso]
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "plane", "contrast"])
        for i, s in enumerate(rows):
            w.writerow([s.path.relative_to(root).as_posix(), "axial", ("t1", "t2")[i % 2]])
    out = tmp_path / "probe.json"
    r = contrast_probe.main(Namespace(checkpoint=ckpt, data=folder, labels=tmp_path / "labels.csv",
                                      out=out, dims=4, folds=2, batch_size=8))
    assert out.is_file() and set(r["probe"]) == {"look", "model"}
    for kind in r["probe"].values():
        assert kind.pop("folds") == 2
        for f in kind.values():
            assert f["non_t1"] > 0 and f["t1"] > 0
            assert 0 <= f["non_t1_flagged"] <= 1 and 0 <= f["t1_flagged"] <= 1
