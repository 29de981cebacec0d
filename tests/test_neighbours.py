"""studies.neighbours: an answer's support among its nearest training scans (rule v9)."""
from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest

from brainmri.protocols import build_splits
from studies import neighbours as nb
from tests.test_generalisation import folder, loso_checkpoint  # noqa: F401 (a fixture)


def test_support_is_the_share_of_the_nearest_training_scans_with_the_answer():
    train = {"features": np.array([[1, 0], [0.9, 0.1], [0.8, 0.2], [0, 1], [0.1, 0.9]], float),
             "label": np.array([0, 0, 1, 1, 1])}
    scored = {"features": np.array([[1, 0.05], [0.05, 1]]), "answer": np.array([0, 0])}
    share = nb.support(train, scored, k=3)
    assert share == pytest.approx([2 / 3, 0.0])       # near two 0s and a 1; near 1s only
    assert nb.support(train, scored, k=99) == pytest.approx([0.4, 0.4])   # k capped at the set


def test_summary_keeps_fewer_confident_answers_as_tau_rises():
    scored = {"label": np.array([0, 0, 1, 1, 2]), "answer": np.array([0, 1, 1, 1, 0]),
              "marked": np.array([True, True, True, False, True])}
    share = np.array([1.0, 0.2, 0.6, 1.0, 0.4])
    s = nb.summarise(scored, share)
    assert s["n"] == 5 and s["accuracy"] == pytest.approx(0.6)
    assert s["today"] == {"kept": 0.8, "right": 0.5}
    assert s["by_tau"]["0.2"] == s["today"]
    assert s["by_tau"]["0.6"] == {"kept": 0.4, "right": 1.0}          # the two supported right ones
    kept = [s["by_tau"][str(t)]["kept"] for t in nb.TAUS]
    assert kept == sorted(kept, reverse=True)
    assert s["support_right"] == pytest.approx((1.0 + 0.6 + 1.0) / 3)
    assert s["support_wrong"] == pytest.approx((0.2 + 0.4) / 2)


def test_rule_tau_is_the_largest_keeping_enough_of_val():
    val = {"by_tau": {str(t): {"kept": kept, "right": 1.0} for t, kept in
                      zip(nb.TAUS, (0.95, 0.9, 0.86, 0.7, 0.5))}}
    assert nb.rule_tau(val) == 0.6
    val["by_tau"]["0.2"]["kept"] = val["by_tau"]["0.4"]["kept"] = val["by_tau"]["0.6"]["kept"] = 0.5
    assert nb.rule_tau(val) is None


def test_a_held_out_run_is_scored_on_val_and_its_source(folder, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    ckpt = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    args = Namespace(checkpoint=ckpt, data=folder, out=tmp_path / "out", k=3, name=None, batch_size=4,
                     limit=0, threads=1, device="cpu")
    r = nb.main(args)
    splits = build_splits(folder, 0.34, 0, holdout_source="sartaj-br35h", holdout_classes=["meningioma"])
    assert set(r["sets"]) == {"val", "loso", "loso_training"}
    assert r["sets"]["loso"]["n"] == len(splits.loso) and r["sets"]["val"]["n"] == len(splits.val)
    assert r["model"].startswith("loso-sartaj-br35h-")
    assert (tmp_path / "out" / f"{r['model']}-neighbours.json").exists()
    for s in r["sets"].values():
        assert 0 <= s["today"]["kept"] <= 1 and set(s["by_tau"]) == {str(t) for t in nb.TAUS}
    assert r["tau"] is None or r["tau"] in nb.TAUS
    again = nb.main(args)["sets"]                                       # deterministic (nan == nan)
    assert json.dumps(again, sort_keys=True) == json.dumps(r["sets"], sort_keys=True)
    assert "| val |" in nb.table([r])
