"""studies.generalisation on a synthetic two-source folder and a tiny checkpoint trained
"without" one source: the sets, strata and confident shares it reports."""
from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from brainmri.checkpoint import load_checkpoint, save_checkpoint
from brainmri.protocols import build_splits
from studies import generalisation
from tests import synthetic
from tests.conftest import make_tiny_checkpoint
from tests.test_protocols import SEEDS


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return synthetic.two_source_kaggle(tmp_path_factory.mktemp("two-sources"), SEEDS)


def loso_checkpoint(tmp_path, **args):
    path = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline")
    model, meta = load_checkpoint(path)
    meta["args"] = {"val_fraction": 0.34, "seed": 0, **args}
    return save_checkpoint(path, model, meta)


def run(checkpoint, folder, out):
    return generalisation.main(Namespace(checkpoints=[checkpoint], data=folder, out=out, batch_size=8,
                                         limit=0, threads=1, device="cpu"))[0]


def test_loso_run_is_scored_on_its_held_out_source(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                   # the signature cache goes under tmp_path
    ckpt = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    r = run(ckpt, folder, tmp_path / "out")
    splits = build_splits(folder, 0.34, 0, holdout_source="sartaj-br35h",
                          holdout_classes=["meningioma"])
    assert set(r["sets"]) == {"val", "loso", "loso_training"}
    assert r["sets"]["loso_training"]["n"] == sum(s.split == "train" for s in splits.loso)
    loso = r["sets"]["loso"]
    assert loso["n"] == len(splits.loso) > 0
    assert set(loso["per_class"]) == {"meningioma"}
    assert sum(loso["per_class"]["meningioma"]["called"].values()) == loso["n"]
    assert set(loso["breakdown"]["source"]) == {"sartaj-br35h"}
    for s in r["sets"].values():
        assert 0 <= s["stable"] <= 1 and 0 <= s["accuracy"] <= 1
        assert s["confident_stable"]["n"] <= s["confident_loosely_stable"]["n"] <= s["confident"]["n"] <= s["n"]
        assert sum(b["n"] for b in s["breakdown"]["framing"].values()) == s["n"]
    assert r["confident_rule"].startswith("is_mri and top probability")
    assert set(r["source_looks"]) == {"figshare", "sartaj-br35h"}
    for look in r["source_looks"].values():
        assert len(look) == 5 and all(0 <= a < b <= 1 for a, b in zip(look, look[1:]))
    for s in r["sets"].values():
        assert 0 <= s["look_stable"] <= 1
        assert s["confident_look_stable"]["n"] <= s["confident"]["n"]
        # the look prior (rule v4): one entry per tau; a higher tau decides fewer answers
        taus = sorted(s["look_prior"], key=float)
        assert [float(t) for t in taus] == sorted(generalisation.LOOK_TAUS)
        decided = [s["look_prior"][t]["decided"] for t in taus]
        assert all(0 <= d <= 1 for d in decided) and decided == sorted(decided, reverse=True)
        for t in taus:
            assert s["look_prior"][t]["confident_open"]["n"] <= s["confident"]["n"]
            assert set(s["look_prior"][t]["decided_by_class"]) == set(s["per_class"])
    assert r["look_k"] >= 1
    saved = json.loads((tmp_path / "out" / f"{r['model']}.json").read_text())
    assert saved["sets"]["loso"]["n"] == loso["n"]


def test_a_held_out_run_never_takes_a_shipped_name():
    assert generalisation.result_name("resnet50", None) == "resnet50"
    assert generalisation.result_name("resnet50", "figshare") == "loso-figshare-resnet50"
    assert generalisation.result_name("loso-R1", "sartaj-br35h") == "loso-R1"


def test_plain_run_is_scored_on_clean(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run(loso_checkpoint(tmp_path), folder, tmp_path / "out")
    assert set(r["sets"]) == {"val", "clean"} and r["holdout_source"] is None
    assert set(r["sets"]["val"]["breakdown"]["source"]) <= {"figshare", "sartaj-br35h"}


def test_coverage_at_ranks_by_score():
    import numpy as np
    right = np.array([1, 1, 0, 1, 0, 0], bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert generalisation.coverage_at(right, score, 0.75) == {"share": 4 / 6, "min_score": 0.6}
    assert generalisation.coverage_at(right, score, 1.0) == {"share": 2 / 6, "min_score": 0.8}
    none = generalisation.coverage_at(np.zeros(3, bool), score[:3], 0.5)
    assert none["share"] == 0.0 and np.isnan(none["min_score"])


def test_floor_at_90_is_the_lowest_floor_its_confident_answers_hold():
    right = np.array([1, 1, 0, 1, 1, 0, 1, 0], bool)
    top = np.array([0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.8, 0.7])
    confident = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)
    f = generalisation.floor_at(confident, right, top, 0.8)
    # ranked: 1 1 0 1 1 0 1 -> 4 of the first 5 right (0.8); 5 of the first 7 is under 0.8
    assert f["floor"] == 0.95 and f["n"] == 5 and f["right"] == pytest.approx(0.8)
    assert f["share"] == pytest.approx(5 / 8)
    # the answer not marked confident never counts, whatever its probability
    assert generalisation.floor_at(~confident, right, top, 0.8)["n"] == 0
    assert np.isnan(generalisation.floor_at(confident, np.zeros(8, bool), top, 0.5)["floor"])


def test_a_no_tumour_floor_holds_for_no_tumour_answers_only():
    right = np.array([1, 1, 1, 1, 0, 0, 0, 1], bool)
    top = np.array([0.99, 0.9, 0.8, 0.7, 0.999, 0.95, 0.9, 0.6])
    no_tumour = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool)
    confident = np.ones(8, bool)
    # the other answers stay as they are (4 of 4 right); "no tumour" ones join from the surest
    f = generalisation.floor_at(confident, right, top, 0.8, no_tumour)
    assert f["floor"] == 0.999 and f["n"] == 5 and f["right"] == pytest.approx(0.8)
    # only cautioning every "no tumour" answer reaches 90%: the floor is infinite
    f = generalisation.floor_at(confident, right, top, 0.9, no_tumour)
    assert f["floor"] == float("inf") and f["n"] == 4 and f["right"] == 1.0
    # not even that: no floor, nothing kept
    f = generalisation.floor_at(confident, right & no_tumour, top, 0.9, no_tumour)
    assert np.isnan(f["floor"]) and f["n"] == 0
    # a floor on every answer is rule v6's: the lowest score of the best-ranked share
    rng = np.random.default_rng(1)
    top, confident = rng.uniform(0.5, 1, 200), rng.uniform(size=200) < 0.8
    right = rng.uniform(0.5, 1, 200) < top
    assert (generalisation.floor_at(confident, right, top, 0.9)["floor"]
            == generalisation.coverage_at(right[confident], top[confident], 0.9)["min_score"])
    # cross-fitted: a fold keeps its other answers whenever the rest found a floor; seeded
    no_tumour = rng.uniform(size=200) < 0.3
    right = np.where(no_tumour, right, rng.uniform(size=200) < 0.97)   # the others: mostly right
    cross = generalisation.floor_crossfit(confident, right, top, 0.9, applies=no_tumour)
    assert cross == generalisation.floor_crossfit(confident, right, top, 0.9, applies=no_tumour)
    assert cross["n"] >= (confident & ~no_tumour).sum() - 200 // generalisation.FOLDS
    figures = generalisation.no_tumour_floors(no_tumour, confident, right, top, given=0.9)
    given = figures["confident_no_tumour_floor"]
    assert given["no_tumour_confident"] == (confident & no_tumour).sum()
    assert given["no_tumour_kept"] == (confident & no_tumour & (top >= 0.9)).sum()
    assert given["n"] == (confident & ~no_tumour).sum() + given["no_tumour_kept"]
    assert generalisation.no_tumour_floors(no_tumour, confident, right, top, None)["confident_no_tumour_floor"] is None


def test_floor_keeping_keeps_the_share_asked_of_the_confident_answers():
    top = np.array([0.99, 0.98, 0.97, 0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55])
    confident = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    assert generalisation.floor_keeping(confident, top, 0.3) == 0.97        # 3 of 10 kept
    assert generalisation.floor_keeping(confident, top, 0.6) == 0.75        # every confident one
    assert generalisation.floor_keeping(confident, top, 0.8) == 0.0         # only 6 are confident
    confident[6:9] = True                                                   # 9 of 10 now
    scored = {"val": {"probs": np.stack([top, 1 - top], 1), "label": np.zeros(10, int),
                      "outcome": np.where(confident, "confident", "caution"), "is_mri": np.ones(10, bool)}}
    f = generalisation.frontier(scored, 0.5)
    assert [x["val_kept"] for x in f] == list(generalisation.KEPT)
    # a share kept rounds up to whole answers, and never beyond the 9 confident
    assert [x["sets"]["val"]["n"] for x in f] == [min(9, int(np.ceil(k * 10))) for k in generalisation.KEPT]
    assert f[-1]["floor"] == 0.7 and f[0]["floor"] == 0.0


def test_floor_crossfit_scores_each_fold_on_a_floor_chosen_without_it():
    rng = np.random.default_rng(0)
    top = rng.uniform(0.5, 1, 400)
    right = rng.uniform(0.5, 1, 400) < top            # surer answers are right more often
    confident = np.ones(400, bool)
    fitted = generalisation.floor_at(confident, right, top, 0.9)
    cross = generalisation.floor_crossfit(confident, right, top, 0.9)
    assert 0 < cross["n"] <= 400 and 0.75 < cross["right"] < 1
    assert cross == generalisation.floor_crossfit(confident, right, top, 0.9)       # seeded
    assert abs(cross["share"] - fitted["share"]) < 0.15
    # nothing is right: no fold gets a floor, nothing is kept
    assert generalisation.floor_crossfit(confident, np.zeros(400, bool), top, 0.9)["n"] == 0


def test_a_floor_from_a_held_out_run_is_applied_and_a_missing_one_refused(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = tmp_path / "loso-x.json"
    result.write_text(json.dumps({"sets": {"loso_training": {"floor_at_90": {"floor": 0.3},
                                                            "no_tumour_floor_at_90": {"floor": 0.5}}}}))
    r = generalisation.main(Namespace(checkpoints=[loso_checkpoint(tmp_path)], data=folder,
                                      out=tmp_path / "out", batch_size=8, limit=0, threads=1,
                                      device="cpu", floor_from=result, no_tumour_floor_from=result))[0]
    assert r["floor_from"] == str(result) == r["no_tumour_floor_from"]
    for s in r["sets"].values():
        given = s["confident_floor"]
        assert given["floor"] == 0.3 and given["n"] <= s["confident"]["n"]
        assert s["floor_at_90"]["n"] <= s["confident"]["n"]
        given = s["confident_no_tumour_floor"]
        assert given["floor"] == 0.5 and given["n"] <= s["confident"]["n"]
        assert given["no_tumour_kept"] <= given["no_tumour_confident"]
        assert s["no_tumour_floor_at_90"]["n"] <= s["confident"]["n"]
    kept = [f["sets"]["val"]["n"] for f in r["frontier"]]
    assert kept == sorted(kept, reverse=True) and kept[0] <= r["sets"]["val"]["confident"]["n"]
    result.write_text(json.dumps({"sets": {"loso_training": {"floor_at_90": {"floor": float("nan")}}}}))
    with pytest.raises(SystemExit, match="--floor-from: .*no floor"):
        generalisation.main(Namespace(checkpoints=[loso_checkpoint(tmp_path)], data=folder,
                                      out=tmp_path / "out", floor_from=result, threads=0))
    result.write_text(json.dumps({"sets": {"val": {}}}))
    with pytest.raises(SystemExit, match="--floor-from: .*no floor_at_90"):
        generalisation.main(Namespace(checkpoints=[loso_checkpoint(tmp_path)], data=folder,
                                      out=tmp_path / "out", floor_from=result, threads=0))
    with pytest.raises(SystemExit, match="--no-tumour-floor-from: .*no no_tumour_floor_at_90"):
        generalisation.main(Namespace(checkpoints=[loso_checkpoint(tmp_path)], data=folder,
                                      out=tmp_path / "out", no_tumour_floor_from=result, threads=0))


def test_table_prints_from_written_results(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    r = run(loso_checkpoint(tmp_path, holdout_source="figshare"), folder, tmp_path / "out")
    capsys.readouterr()
    again = generalisation.main(Namespace(table=[tmp_path / "out" / f"{r['model']}.json"]))
    out = capsys.readouterr().out
    assert again[0]["sets"]["loso"]["n"] == r["sets"]["loso"]["n"]
    assert f"| {r['model']} | loso | {r['sets']['loso']['n']} |" in out


def test_a_scan_in_its_own_look_keeps_its_answer(folder, tmp_path):
    """score_looks: one look per source; a look equal to the scan's own landmarks gives back
    (up to rounding) the plain probabilities."""
    import numpy as np
    from brainmri.intensity import landmarks
    from brainmri.predictor import Predictor
    predictor = Predictor.from_checkpoint(loso_checkpoint(tmp_path), device="cpu")
    samples = build_splits(folder, 0.34, 0).val[:3]
    scored = generalisation.score_set(predictor, samples, {}, batch_size=8)
    assert scored["unit"].shape[0] == len(samples) and scored["unit"].dtype == np.uint8
    own = {"own": tuple(landmarks(scored["unit"][0]) / 255)}
    generalisation.score_looks(predictor, scored, {**own, "flat": (0.1, 0.2, 0.3, 0.4, 0.5)}, 8)
    assert scored["probs_looks"].shape == (len(samples), 2, len(predictor.classes))
    assert np.allclose(scored["probs_looks"][0, 0], scored["probs"][0], atol=0.05)


def test_hand_set_labels_break_the_sets_down(folder, tmp_path, monkeypatch):
    """--labels: a CSV of paths under the Kaggle root -> plane and contrast strata; scans not
    listed are "unlabelled"; counts add up to the set."""
    import csv
    from brainmri.protocols import kaggle_root
    monkeypatch.chdir(tmp_path)
    ckpt = loso_checkpoint(tmp_path)
    val = build_splits(folder, 0.34, 0).val
    root = kaggle_root(folder)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "plane", "contrast"])
        for i, s in enumerate(val[:3]):
            w.writerow([s.path.relative_to(root).as_posix(), ("axial", "coronal", "sagittal")[i], "t1"])
    r = generalisation.main(Namespace(checkpoints=[ckpt], data=folder, out=tmp_path / "out",
                                      batch_size=8, limit=0, threads=1, device="cpu",
                                      labels=tmp_path / "labels.csv"))[0]
    plane = r["sets"]["val"]["breakdown"]["plane"]
    assert {k: v["n"] for k, v in plane.items() if k != "unlabelled"} == {"axial": 1, "coronal": 1, "sagittal": 1}
    assert sum(v["n"] for v in plane.values()) == r["sets"]["val"]["n"]
    assert r["sets"]["val"]["breakdown"]["contrast"]["t1"]["n"] == 3
    assert set(r["sets"]["clean"]["breakdown"]["plane"]) == {"unlabelled"}
    assert generalisation.read_labels(tmp_path / "missing.csv", folder) == {}
    # rule v5's bound covers the labelled scans only: all three are t1, so nothing is cautioned
    bound = r["sets"]["val"]["contrast_bound"]
    assert bound["labelled"] == 3 and bound["kept_contrast"] == 1.0
    assert bound["confident_if_kept"]["n"] == bound["confident"]["n"]
    assert r["sets"]["clean"]["contrast_bound"] is None
    # rule v7's: the same three scans, one axial
    plane = r["sets"]["val"]["plane_bound"]
    assert plane["labelled"] == 3 and plane["kept_plane"] == pytest.approx(1 / 3)
    assert plane["confident_if_kept"]["n"] <= plane["confident"]["n"]
    assert r["sets"]["clean"]["plane_bound"] is None


def test_contrast_bound_cautions_every_scan_not_labelled_t1():
    contrast = np.array(["t1", "t2", "flair", "t1", generalisation.UNLABELLED])
    right = np.array([True, False, True, False, True])
    confident = np.array([True, True, True, True, False])
    b = generalisation.contrast_bound(contrast, right, confident)
    assert b["labelled"] == 4 and b["labelled_share"] == 0.8 and b["kept_contrast"] == 0.5
    assert b["confident"] == {"share": 1.0, "n": 4, "right": 0.5}
    assert b["confident_if_kept"] == {"share": 0.5, "n": 2, "right": 0.5}
    assert generalisation.contrast_bound(contrast[4:], right[4:], confident[4:]) is None


def test_plane_bound_cautions_no_tumour_answers_off_the_axial_plane():
    u = generalisation.UNLABELLED
    plane = np.array(["axial", "coronal", "sagittal", "coronal", "axial", u])
    contrast = np.array(["t1", "t1", "t2", "t1", "flair", u])
    no_tumour = np.array([True, True, True, False, False, True])
    right = np.array([True, False, True, True, False, False])
    confident = np.array([True, True, True, True, True, True])
    b = generalisation.plane_bound(plane, contrast, no_tumour, right, confident)
    assert b["labelled"] == 5 and b["kept_plane"] == 0.4 and b["no_tumour_answers_off_plane"] == 2
    assert b["confident"] == {"share": 1.0, "n": 5, "right": 0.6}
    # the coronal and sagittal "no tumour" answers go; a coronal tumour answer stays
    assert b["confident_if_kept"] == {"share": 0.6, "n": 3, "right": pytest.approx(2 / 3)}
    assert b["with_contrast"] == {"share": 0.4, "n": 2, "right": 1.0}
    assert generalisation.plane_bound(plane[5:], contrast[5:], no_tumour[5:], right[5:], confident[5:]) is None


def test_a_pair_is_scored_as_the_app_compares(folder, tmp_path, monkeypatch):
    """--pair: two checkpoints of one protocol; an answer stays confident in the comparison only
    where the other model agrees, so those counts never exceed either model's own."""
    monkeypatch.chdir(tmp_path)
    a = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    b_path = make_tiny_checkpoint(tmp_path / "other.safetensors", "baseline", seed=3)
    model, meta = load_checkpoint(b_path)
    meta.update(args=dict(load_checkpoint(a)[1]["args"]), name="other")
    b = save_checkpoint(b_path, model, meta)
    out = tmp_path / "out"
    generalisation.main(Namespace(checkpoints=[a, b], data=folder, out=out, batch_size=8, limit=0,
                                  threads=1, device="cpu", pair=True))
    # a run that held a source out is written under a name of its own (`result_name`)
    pair = json.loads((out / "pair-loso-sartaj-br35h-tiny-baseline-loso-sartaj-br35h-other.json").read_text())
    assert pair["models"] == ["loso-sartaj-br35h-tiny-baseline", "loso-sartaj-br35h-other"]
    assert set(pair["sets"]) == {"val", "loso", "loso_training"}
    for s in pair["sets"].values():
        for m in ("a", "b"):
            alone, kept = s[m]["confident"], s[m]["confident_in_comparison"]
            assert kept["n"] <= min(alone["n"], s["agree"]["n"])
        assert s["both_confident"]["n"] <= min(s["a"]["confident_in_comparison"]["n"],
                                               s["b"]["confident_in_comparison"]["n"])
    same = generalisation.pair_summary(*(generalisation.subset(
        {"path": np.array(["x", "y"]), "label": np.array([0, 1]),
         "probs": np.array([[0.9, 0.1], [0.2, 0.8]]), "is_mri": np.array([True, True]),
         "outcome": np.array(["", ""])}, np.array([True, True])),) * 2, min_top=(0.6, 0.6))
    assert same["agree"]["share"] == 1 and same["both_confident"] == {"share": 1.0, "n": 2, "right": 1.0}
    with pytest.raises(SystemExit, match="exactly two"):
        generalisation.main(Namespace(checkpoints=[a], data=folder, out=out, batch_size=8, limit=0,
                                      threads=1, device="cpu", pair=True))


def test_an_ensemble_is_confident_only_where_every_member_is_and_all_agree(folder, tmp_path, monkeypatch, capsys):
    """--ensemble (rule v10's condition U): by hand on four scans, then end to end on three
    tiny checkpoints of one protocol and split, the ensembles of the first 2 and 3 members."""
    def member(probs, label=(0, 0, 0, 0)):
        return {"path": np.array(["a", "b", "c", "d"]), "label": np.array(label),
                "probs": np.array(probs), "is_mri": np.ones(4, bool), "outcome": np.array([""] * 4)}
    sure, unsure = [0.9, 0.1], [0.4, 0.6]           # at min_top 0.6: "unsure" is class 1, confident
    low = [0.45, 0.55]                                # class 1, under the floor
    members = [member([sure, [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]]),
               member([sure, [0.2, 0.8], low, [0.1, 0.9]]),
               member([sure, sure, [0.1, 0.9], unsure])]
    e = generalisation.ensemble_summary(members, [0.6] * 3)
    assert e["n"] == 4 and e["members"] == 3
    # a: all right and sure; b: one member answers otherwise; c: one member under its floor;
    # d: all agree, all confident, all wrong
    assert e["unanimous"] == {"share": 0.5, "n": 2, "right": 0.5}
    # rule v13's A: the first member confident (all four) and the others agreeing (a, c, d)
    assert e["first_checked"] == {"share": 0.75, "n": 3, "right": pytest.approx(1 / 3)}
    assert e["every_wrong"] == [{"path": p, "answers": ["meningioma"] * 3} for p in "cd"]
    assert e["agree"] == {"share": 0.75, "n": 3, "right": pytest.approx(1 / 3)}
    assert e["own"][1] == {"share": 0.75, "n": 3, "right": pytest.approx(1 / 3)}
    assert e["own_mean"]["right"] == pytest.approx(np.mean([0.25, 1 / 3, 0.5]))
    assert e["mean_probability_accuracy"] == 0.25
    with pytest.raises(SystemExit, match="different scans"):
        generalisation.ensemble_summary([members[0], {**members[1], "path": np.array(list("wxyz"))}], [0.6] * 2)

    monkeypatch.chdir(tmp_path)
    a = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    paths = [a]
    for seed in (3, 4):
        path = make_tiny_checkpoint(tmp_path / f"m{seed}.safetensors", "baseline", seed=seed)
        model, meta = load_checkpoint(path)
        meta.update(args=dict(load_checkpoint(a)[1]["args"]), name=f"m{seed}")
        paths.append(save_checkpoint(path, model, meta))
    out = tmp_path / "out"
    generalisation.main(Namespace(checkpoints=paths, data=folder, out=out, batch_size=8, limit=0,
                                  threads=1, device="cpu", ensemble=True))
    result = json.loads((out / "ensemble-loso-sartaj-br35h-tiny-baseline-x3.json").read_text())
    assert list(result["by_size"]) == ["2", "3"]
    for k, sets in result["by_size"].items():
        assert set(sets) == {"val", "loso", "loso_training"}
        for s in sets.values():
            assert len(s["own"]) == int(k)
            assert s["unanimous"]["n"] <= min(min(o["n"] for o in s["own"]), s["agree"]["n"])
            assert s["unanimous"]["n"] <= s["first_checked"]["n"] <= min(s["own"][0]["n"], s["agree"]["n"])
    two, three = result["by_size"]["2"]["val"], result["by_size"]["3"]["val"]
    assert three["unanimous"]["n"] <= two["unanimous"]["n"]          # a member more only takes away
    assert "| 3 | loso |" in generalisation.ensemble_table(result)
    assert "Every one of the 3 members wrong on loso: " in generalisation.ensemble_table(result)
    capsys.readouterr()
    generalisation.main(Namespace(table=[out / "ensemble-loso-sartaj-br35h-tiny-baseline-x3.json",
                                         out / "loso-sartaj-br35h-m3.json"]))
    printed = capsys.readouterr().out
    assert "| 3 | loso |" in printed and "| loso-sartaj-br35h-m3 |" in printed   # both tables
    with pytest.raises(SystemExit, match="at least two"):
        generalisation.main(Namespace(checkpoints=[a], data=folder, out=out, batch_size=8, limit=0,
                                      threads=1, device="cpu", ensemble=True))


def test_prior_batch_norm_mixes_each_scans_statistics_with_the_training_ones():
    import torch
    from brainmri.models import build_model
    torch.manual_seed(0)
    model = build_model("baseline", widths=(4, 8, 8)).eval()
    for m in model.modules():                      # statistics unlike the scans' own
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.rand(3, 1, 64, 64)
    plain = model(x)
    with torch.no_grad():
        adapted = [build_model("baseline", widths=(4, 8, 8)) for _ in range(3)]
        for a, prior in zip(adapted, (1e9, 16, 0)):
            a.load_state_dict(model.state_dict())
            assert generalisation.prior_batch_norm(a.eval(), prior) == 3
        assert torch.allclose(adapted[0](x), plain, atol=1e-4)      # a huge prior: the layers back
        for a in adapted[1:]:
            out = a(x)
            assert not torch.allclose(out, plain, atol=1e-3)
            alone = torch.cat([a(x[i:i + 1]) for i in range(3)])
            assert torch.allclose(out, alone, atol=1e-5)            # no scan depends on its batch
        # prior 0 is instance normalisation: the first layer's output ignores a scan's contrast
        first = adapted[2].trunk[0][1]
        conv = adapted[2].trunk[0][0]
        y = first(conv(x))
        assert torch.allclose(y, first(conv(2 * x)), atol=2e-3)     # up to eps


def test_bn_prior_scores_under_its_own_name(folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma",
                           name="loso-T")
    model, meta = load_checkpoint(ckpt)
    meta["name"] = "loso-T"
    save_checkpoint(ckpt, model, meta)
    r = generalisation.main(Namespace(checkpoints=[ckpt], data=folder, out=tmp_path / "out",
                                      batch_size=8, limit=0, threads=1, device="cpu",
                                      bn_prior=16.0))[0]
    assert r["model"] == "loso-T-bn16" and (tmp_path / "out" / "loso-T-bn16.json").is_file()
    assert r["sets"]["loso"]["n"] > 0


def test_every_committed_ensemble_result_prints_its_table():
    """`--table` on the ensemble JSONs the docs name, those written before rule v13 added the
    first member's check included (their column reads '-')."""
    root = Path(__file__).resolve().parent.parent / "logs" / "eval" / "generalisation"
    results = sorted(root.glob("ensemble-*.json"))
    assert results
    for path in results:
        table = generalisation.ensemble_table(json.loads(path.read_text()))
        assert table.count("\n|") >= 3, path
    old = json.loads((root / "ensemble-loso-E4-s0-x4.json").read_text())
    assert "first_checked" not in old["by_size"]["4"]["val"]
    assert "| 4 | val |" in generalisation.ensemble_table(old)


def test_intervals_say_how_sure_each_confident_right_share_is(capsys):
    """--intervals: right k of n and the Wilson interval (the closed form), with where 90% lies;
    for a model's own answers, a comparison's and an ensemble's U and A, from committed JSONs."""
    n, k, z = 75, 67, 1.959963984540054
    p = k / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    got = generalisation.interval({"n": n, "right": p, "share": 0.5})
    assert got[0] == k and np.allclose(got[1:], [(centre - half) / (1 + z * z / n),
                                                 (centre + half) / (1 + z * z / n)])
    assert generalisation.interval({"n": 0, "right": float("nan"), "share": 0.0}) is None
    assert generalisation.sure_row("m", "loso", "own", {"n": n, "right": p, "share": 1}).endswith(
        "| 75 | 67 (89.3%) | 80.3% - 94.5% | inside |")
    assert generalisation.sure_row("m", "val", "own", {"n": 400, "right": 0.99, "share": 1}).endswith("above |")
    assert generalisation.sure_row("m", "loso", "own", {"n": 99, "right": 80 / 99, "share": 1}).endswith("below |")
    assert generalisation.sure_row("m", "loso", "own", {"n": 0, "right": float("nan"), "share": 0}).endswith(
        "| 0 | - | - | - |")
    root = Path(__file__).resolve().parent.parent / "logs" / "eval" / "generalisation"
    paths = [root / name for name in ("loso-R1-s0.json", "pair-loso-R1-loso-K1.json",
                                      "ensemble-loso-E4-s0-x4.json", "ensemble-loso-R1-s0-RI-x4.json")]
    results = generalisation.main(Namespace(table=paths, intervals=True))
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert "| loso-R1-s0 | loso_training | own | 99 | 80 (80.8%) | 72.0% - 87.4% | below |" in rows
    old, new = (sum(len(sets) for sets in r["by_size"].values()) for r in results[2:])
    assert len(rows) == len(results[0]["sets"]) + len(results[1]["sets"]) + old + 2 * new
    assert sum("| both, agreeing |" in r for r in rows) == len(results[1]["sets"])
    assert sum("| A, first checked |" in r for r in rows) == new      # E4-s0-x4 predates A


def test_checked_scores_the_apps_outcome_and_it_is_the_ensembles_a(folder, tmp_path, monkeypatch):
    """--checked loads the checkers installed beside a checkpoint (`train.checkers`) and scores
    the outcome the app gives; on the same checkpoints it is --ensemble's condition A."""
    import torch
    from brainmri.models import last_linear
    from train import checkers

    monkeypatch.chdir(tmp_path)
    split = {"train": {"sha256": "t"}, "val": {"sha256": "v"}}

    def tiny(name, seed, scale, lean=0.0):
        path = make_tiny_checkpoint(tmp_path / f"{name}.safetensors", "baseline", seed=seed)
        model, meta = load_checkpoint(path)
        with torch.no_grad():                       # sharper answers: some confident, some not
            last_linear(model).weight.mul_(scale)
            last_linear(model).bias.mul_(scale)
            last_linear(model).bias[-1] += lean     # leaning to the last class: flips the closer calls
        meta.update(args={"val_fraction": 0.34, "seed": 0}, name=name, data=split)
        return save_checkpoint(path, model, meta)

    # c1: main's answers (the same weights, less sharp); c2: main's, but where it is not sure
    main, c1, c2 = tiny("main", 0, 1000.0), tiny("c1", 0, 1.0), tiny("c2", 0, 1000.0, lean=5.0)
    out = tmp_path / "out"
    generalisation.main(Namespace(checkpoints=[main, c1, c2], data=folder, out=out, batch_size=8,
                                  limit=0, threads=1, device="cpu", ensemble=True))
    a = json.loads((out / "ensemble-main-x3.json").read_text())["by_size"]["3"]
    with pytest.raises(SystemExit, match="no checkers installed"):
        generalisation.main(Namespace(checkpoints=[main], data=folder, out=out, batch_size=8, limit=0,
                                      threads=1, device="cpu", checked=True))
    checkers.install(main, [c1, c2], "a test")
    r = generalisation.main(Namespace(checkpoints=[main], data=folder, out=out, batch_size=8, limit=0,
                                      threads=1, device="cpu", checked=True))[0]
    assert r["model"] == "main-checked" and r["checked"] and r["checkers"] == ["c1", "c2"]
    assert (out / "main-checked.json").is_file()
    for name in ("val", "clean"):
        assert r["sets"][name]["confident"] == pytest.approx(a[name]["first_checked"], nan_ok=True)
    alone = json.loads((out / "main.json").read_text())["sets"]
    assert any(0 < r["sets"][n]["confident"]["n"] < alone[n]["confident"]["n"] for n in ("val", "clean"))
