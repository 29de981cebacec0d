"""train.prior: undoing the no-tumour prior that the painting plan adds."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri import Predictor
from brainmri.checkpoint import load_checkpoint
from brainmri.classes import CLASSES
from brainmri.models import build_baseline
from brainmri.models import last_linear
from train.prior import correction, logit_shift, shift_logits

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402
from test_train import ARGS, run, tiny_data  # noqa: E402,F401  (tiny_data: a fixture)


def test_equal_priors_need_no_shift():
    assert np.allclose(logit_shift([10, 20, 30, 40], [1, 2, 3, 4]), 0)


def test_an_oversampled_class_is_shifted_down_by_its_log_ratio():
    # glioma, meningioma, notumor, pituitary; notumor trained 3x as often as it occurs
    shift = logit_shift([100, 100, 100, 100], [100, 100, 300, 100])
    assert shift.mean() == pytest.approx(0)
    assert shift[2] - shift[0] == pytest.approx(-np.log(3))
    assert shift[0] == pytest.approx(shift[1]) == pytest.approx(shift[3])


def test_softmax_with_the_shift_recovers_the_natural_posterior():
    """Bayes: p_nat(y|x) is proportional to p_train(y|x) x p_nat(y) / p_train(y)."""
    natural, trained = np.array([5., 3., 1., 1.]), np.array([2., 2., 4., 2.])
    logits = np.log(np.array([0.1, 0.2, 0.6, 0.1]))          # a posterior under the trained prior
    p = np.exp(logits + logit_shift(natural, trained))
    expected = np.array([0.1, 0.2, 0.6, 0.1]) * (natural / natural.sum()) / (trained / trained.sum())
    assert np.allclose(p / p.sum(), expected / expected.sum())


@pytest.mark.parametrize("natural, trained", [([1, 0, 1, 1], [1, 1, 1, 1]), ([1, 1, 1], [1, 1, 1, 1])])
def test_missing_or_mismatched_counts_are_refused(natural, trained):
    with pytest.raises(ValueError):
        logit_shift(natural, trained)


def test_correction_records_the_counts_and_their_shift():
    record = correction(np.array([0, 1, 2, 3, 3]), np.array([0, 1, 2, 2, 2, 3, 3]), 4)
    assert record["natural_counts"] == [1, 1, 1, 2] and record["trained_counts"] == [1, 1, 3, 2]
    assert np.allclose(record["logit_shift"], logit_shift([1, 1, 1, 2], [1, 1, 3, 2]), atol=1e-4)
    with pytest.raises(ValueError):                   # a class the plan never shows
        correction(np.array([0, 1, 2, 3]), np.array([0, 1, 2]), 4)


def test_shift_goes_into_the_last_layer_and_moves_every_logit_by_it():
    torch.manual_seed(0)
    model = build_baseline().eval()
    x = torch.randn(3, 1, 64, 64)
    before = model(x)
    shift = np.array([0.5, -0.25, -1.0, 0.75])
    shift_logits(model, shift)
    assert torch.allclose(model(x) - before, torch.tensor(shift, dtype=torch.float32).expand(3, 4), atol=1e-5)
    assert last_linear(model) is model.head[-1]
    with pytest.raises(ValueError):
        shift_logits(model, np.zeros(3))


def test_prior_correction_through_the_cli_trains_and_recalibrates(tmp_path):
    """A painted run with --prior-correct 1 stores the counts and the shift; --epochs 0 then
    corrects an existing checkpoint: the only weight that moves is the last bias."""
    root = synthetic.boxed_kaggle(tmp_path / "kaggle", counts=(("Training", 10),),
                                  class_step=100, offset=5000)
    paint = ["--counterfactual", "0.3", "--paint-share", "0.6", "--notumor-repeat", "2",
             "--keep", "last", "--precision", "fp32"]
    plain = tmp_path / "plain"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(plain), *ARGS,
         "--epochs", "1", *paint], tmp_path)
    fixed = tmp_path / "fixed"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(fixed), *ARGS, *paint,
         "--epochs", "0", "--init", str(plain / "model.safetensors"), "--prior-correct", "1"], tmp_path)
    a, meta_a = load_checkpoint(plain / "model.safetensors")
    b, meta = load_checkpoint(fixed / "model.safetensors")
    correction = meta["prior_correction"]
    natural, trained = correction["natural_counts"], correction["trained_counts"]
    notumor = CLASSES.index("notumor")
    assert trained[notumor] > natural[notumor] and sum(trained) > sum(natural)
    assert np.allclose(correction["logit_shift"], logit_shift(natural, trained), atol=1e-4)
    sa, sb = a.state_dict(), b.state_dict()
    bias = next(k for k, v in b.named_parameters() if v is last_linear(b).bias)
    moved = [k for k in sa if not torch.allclose(sa[k], sb[k], atol=1e-3)]
    assert moved == [bias]
    assert torch.allclose(sb[bias] - sa[bias], torch.tensor(correction["logit_shift"]), atol=2e-3)
    assert 0 <= meta["metrics"]["val"]["accuracy"] <= 1
    assert json.loads((fixed / "args.json").read_text())["prior_correct"] == 1
    assert Predictor.from_checkpoint(fixed / "model.safetensors", device="cpu").predict(
        synthetic.scan(1, size=64)).label in CLASSES


def test_prior_correction_without_a_painting_plan_is_refused(tiny_data, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Exception) as err:
        run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
             "--prior-correct", "1"], tmp_path)
    assert "needs --counterfactual" in str(err.value)
