"""train.group_head: the last layer refitted with each look counting the same inside a class."""
from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest
import torch

from brainmri.checkpoint import load_checkpoint
from brainmri.models import build_model, last_linear
from brainmri.predictor import Predictor
from brainmri.presets import EvalPreset
from train import group_head as gh
from train.augment import LookSwap
from train.core import class_group_weights
from tests.test_generalisation import folder, loso_checkpoint  # noqa: F401 (a fixture)


def test_weights_keep_each_class_share_and_split_it_evenly_over_looks():
    labels = np.array([0] * 6 + [1] * 4 + [0] * 6 + [1] * 4)
    looks = np.array(["a"] * 5 + ["b"] + ["a"] * 4 + ["b"] * 5 + ["a"] + ["b"] * 4)
    w = class_group_weights(labels, looks)
    assert w.mean() == pytest.approx(1.0)
    assert w[labels == 0].sum() / w.sum() == pytest.approx(0.6)       # the class's own share
    for c in (0, 1):
        a, b = (w[(labels == c) & (looks == g)].sum() for g in ("a", "b"))
        assert a == pytest.approx(b)
    # a class seen in one look only keeps its share on that look
    one = class_group_weights(np.array([0, 0, 1, 1]), np.array(["a", "b", "a", "a"]))
    assert one[2:].sum() / one.sum() == pytest.approx(0.5) and one[0] == pytest.approx(one[1])


def test_balanced_looks_take_the_weight_off_a_look_feature():
    """Feature 0 is the look, tied to the class in the scans as they come; feature 1 is the
    class, noisily. With each scan also seen in the other look, the refit layer leans on the
    class feature and (nearly) not on the look."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    look = np.where(rng.random(400) < 0.95, y, 1 - y)            # 95% of scans: look == class
    signal = y + rng.normal(0, 0.8, 400)
    plain = np.c_[look, signal]
    both = np.r_[plain, np.c_[1 - look, signal]]
    yy, looks = np.r_[y, y], np.r_[look, 1 - look].astype(str)
    w_plain, _ = gh.fit_layer(plain, y, np.ones(400), 1.0)
    w_bal, _ = gh.fit_layer(both, yy, class_group_weights(yy, looks), 1.0)
    lean = lambda w: abs(w[1, 0] - w[0, 0]) / abs(w[1, 1] - w[0, 1])  # noqa: E731
    assert lean(w_plain) > 1.0 and lean(w_bal) < 0.05


def test_fitted_layer_is_the_regression_in_the_features_own_units():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(1)
    x = rng.normal(3, [1, 10, 0.1], (90, 3))
    y = np.repeat([0, 1, 2], 30)
    x[:, 0] += y
    weight, bias = gh.fit_layer(x, y, np.ones(90), 0.3)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=0.3, max_iter=2000, random_state=0).fit(scaler.transform(x), y)
    assert np.allclose(x @ weight.T + bias, clf.decision_function(scaler.transform(x)), atol=1e-6)


@pytest.mark.parametrize("arch", ["baseline", "resnet50"])
def test_last_inputs_are_what_the_logits_are_made_from(arch):
    torch.manual_seed(0)
    model = build_model(arch).eval()
    preset = EvalPreset(size=64, channels=1 if arch == "baseline" else 3)
    crops = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)
    x = gh.last_inputs(model, crops, preset, batch=2)
    layer = last_linear(model)
    assert x.shape == (3, layer.in_features) and x.dtype == np.float32
    with torch.no_grad():
        expected = model(torch.stack([preset.from_crop(c) for c in crops]))
        assert torch.allclose(layer(torch.from_numpy(x)), expected, atol=1e-5)
    assert gh.layer_name(model) == ("head.3" if arch == "baseline" else "head")


def test_swapped_views_take_the_other_sources_look_and_are_seeded():
    rng = np.random.default_rng(0)
    crops = np.zeros((4, 32, 32), np.uint8)
    crops[:, 8:24, 8:24] = rng.integers(40, 120, (4, 16, 16))
    crops[2:, 8:24, 8:24] += 100                                    # the second source is brighter
    sources = np.array(["figshare", "figshare", "sartaj-br35h", "sartaj-br35h"])
    swap = LookSwap.fit(crops, sources)
    a, b = gh.swapped(crops, sources, swap, 0), gh.swapped(crops, sources, swap, 0)
    assert np.array_equal(a, b) and a.shape == crops.shape
    head = crops > 20
    assert a[0][head[0]].mean() > crops[0][head[0]].mean() + 50        # darker ones brightened
    assert a[2][head[2]].mean() < crops[2][head[2]].mean() - 50        # and the other way
    alone = LookSwap.fit(crops[:2], sources[:2])                       # no other source: unchanged
    assert np.array_equal(gh.swapped(crops[:2], sources[:2], alone, 0), crops[:2])


def test_group_accuracy_and_the_worst_group_ignore_tiny_groups():
    labels = np.array([0] * 12 + [1] * 12 + [1])
    looks = np.array(["a"] * 12 + ["b"] * 12 + ["a"])
    pred = np.array([0] * 9 + [1] * 3 + [1] * 12 + [0])
    groups = gh.group_accuracy(pred, labels, looks)
    assert groups["glioma/a"] == {"n": 12, "accuracy": 0.75}
    assert groups["meningioma/a"] == {"n": 1, "accuracy": 0.0}
    assert gh.worst(groups) == 0.75                                   # the group of 1 does not decide
    assert gh.worst({"x/a": {"n": 1, "accuracy": 0.5}, "x/b": {"n": 2, "accuracy": 1.0}}) == 0.5
    assert np.isnan(gh.worst({}))


def test_a_run_gets_a_new_last_layer_and_nothing_else(folder, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    ckpt = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    args = Namespace(checkpoint=ckpt, data=folder, out=tmp_path / "gh", c_grid=[0.1, 1.0], seed=0, name=None,
                     workers=1, limit=None)
    path = gh.main(args)
    before, _ = load_checkpoint(ckpt)
    after, meta = load_checkpoint(path)
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before.state_dict()[k])}
    assert changed <= {"head.3.weight", "head.3.bias"} and "head.3.weight" in changed
    record = meta["group_head"]
    assert record["C"] in (0.1, 1.0) and [t["C"] for t in record["tried"]] == [0.1, 1.0]
    assert set(record["train_groups"]) >= {"glioma/figshare", "glioma/sartaj-br35h"}
    assert meta["name"].endswith("-group-head") and meta["calibration"]["temperature"] > 0
    assert meta["args"]["holdout_source"] == "sartaj-br35h"            # the run's splits are kept
    p = Predictor.from_checkpoint(path, device="cpu")
    assert len(p.predict_batch(prepared=p.prepare([next((folder / "Testing" / "glioma").iterdir())]))) == 1
    again = gh.main(Namespace(**{**vars(args), "out": tmp_path / "gh2", "name": "loso-GH"}))
    model, meta2 = load_checkpoint(again)
    assert torch.equal(model.head[3].weight, after.head[3].weight)                     # deterministic
    assert meta2["name"] == "loso-GH"
