"""The training CLI end to end on a tiny synthetic Kaggle-layout folder, single process and DDP."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from brainmri import Predictor
from brainmri.checkpoint import load_checkpoint
from brainmri.classes import CLASSES
from brainmri.data import fingerprint

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--recipe", "baseline", "--size", "32", "--epochs", "2", "--batch-size", "8",
        "--workers", "1", "--threads", "1", "--val-fraction", "0.25"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kaggle")
    for split, n in (("Training", 8), ("Testing", 2)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                synthetic.scan(seed=1000 * c + 100 * (split == "Testing") + i, size=64,
                               lesion=name != "notumor").save(folder / f"{name}-{i}.png")
    return root


def run(cmd: list[str], cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    """`cmd` with the project on the path; it must succeed (`ok=False`: it must fail)."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert (result.returncode == 0) == ok, result.stderr[-3000:]
    return result


def test_train_writes_a_self_describing_checkpoint(tiny_data, tmp_path):
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS], tmp_path)
    args = json.loads((out / "args.json").read_text())
    assert args["recipe"] == "baseline" and args["size"] == 32 and args["epochs"] == 2
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    predictor = Predictor.from_checkpoint(out / "model.safetensors", device="cpu")
    meta = predictor.meta
    assert meta["arch"] == "baseline" and meta["classes"] == list(CLASSES)
    assert meta["preset"]["size"] == 32 and meta["data"]["train"]["files"] > 0
    assert meta["calibration"]["temperature"] > 0 and "threshold" in meta["ood"]
    p = predictor.predict(synthetic.scan(5, size=64))
    assert abs(sum(p.probabilities.values()) - 1) < 1e-5


def test_resume_continues_after_the_last_epoch(tiny_data, tmp_path):
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
         "--epochs", "1"], tmp_path)
    (out / "model.safetensors").unlink()
    result = run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out),
                  *ARGS], tmp_path)
    assert "resumed after epoch 1" in result.stderr
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_cpu_ranks_agree_on_final_weights(tiny_data, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp"
    run([str(torchrun) if torchrun.exists() else "torchrun", "--standalone", "--nproc_per_node=2",
         "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS, "--rank-weights",
         "--device", "cpu"],     # gloo ranks on the CPU, also where one GPU would be the default
        tmp_path)
    w0 = load_file(str(out / "final-rank0.safetensors"))
    w1 = load_file(str(out / "final-rank1.safetensors"))
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    meta = Predictor.from_checkpoint(out / "model.safetensors", device="cpu").meta
    assert meta["data"]["world_size"] == 2


def test_fit_ood_refits_on_the_inference_path(tiny_data, tmp_path):
    """train.fit_ood: features of the files as the app decodes them, threshold on validation
    only; --write replaces the detector and leaves the weights alone."""
    from train import fit_ood
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS], tmp_path)
    path = out / "model.safetensors"
    weights = {k: v for k, v in load_file(path).items() if not k.startswith("ood.")}
    args = fit_ood.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--dims", "8", "--quantile", "0.9", "--refused", "0",
         "--cache-dir", str(tmp_path / "cache"), "--write", "--device", "cpu"])
    report = fit_ood.main(args)
    assert report["train_scans"] + report["val_scans"] == 8 * len(CLASSES)
    assert 0 < report["val_refused_refit"] <= 0.1 + 1 / report["val_scans"]
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.meta["ood"]["fitted_by"] == "train.fit_ood"
    assert predictor.ood.threshold == pytest.approx(report["threshold"])
    assert predictor.ood.components.shape[1] == 8
    after = load_file(path)
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    assert 0 <= report["crossfit_refused"] <= 1 and 0 <= report["non_mri_accepted"] <= 1
    assert report["non_mri_scored"] >= 50 and 0 <= report["val_auroc"] <= 1
    # Another method from the cached features; the Mahalanobis tensors go.
    args = fit_ood.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--method", "knn-cosine", "--dims", "8", "--k", "3", "--refused", "0",
         "--cache-dir", str(tmp_path / "cache"), "--write", "--device", "cpu"])
    report = fit_ood.main(args)
    cached = sorted(f.name.split("-")[1] for f in (tmp_path / "cache").glob("features-*.npz"))
    assert cached == ["train", "val"]                                        # reused, not recomputed
    ood = Predictor.from_checkpoint(path, device="cpu").ood
    assert type(ood).__name__ == "KNNOOD" and ood.k == 3 and ood.bank.shape == (report["train_scans"], 8)
    assert "ood.precision" not in load_file(path)
    # The threshold from the pooled out-of-fold scans: refusing a share of them, stored in meta.
    args = fit_ood.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--dims", "8", "--quantile", "0.9", "--crossfit", "2",
         "--refused", "0.2", "--cache-dir", str(tmp_path / "cache"), "--write", "--device", "cpu"])
    report = fit_ood.main(args)
    n = report["train_scans"] + report["val_scans"]
    assert abs(report["pooled_refused"] - 0.2) <= 1 / n + 1e-9
    assert report["threshold"] == pytest.approx(report["threshold_scale"] * report["threshold_at_quantile"])
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.ood.threshold == pytest.approx(report["threshold"])
    meta = predictor.meta["ood"]
    assert meta["refused"] == 0.2 and meta["scale"] == pytest.approx(report["threshold_scale"])
    assert "cross-fitted" in meta["threshold_on"]
    with pytest.raises(SystemExit, match="--refused"):
        fit_ood.main(fit_ood.get_args_parser().parse_args(
            [str(path), "--data", str(tiny_data), "--crossfit", "0"]))


def test_fit_familiarity_reports_the_apps_outcome(tiny_data, tmp_path):
    """train.fit_familiarity's confident share is the outcome the app gives the same validation
    scans (`outcomes.decide`), the not-an-MRI feature check included; --write stores the
    detector and thresholds and leaves the weights alone."""
    from brainmri import outcomes
    from brainmri.protocols import build_splits
    from train import fit_familiarity, fit_ood
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS], tmp_path)
    path, cache = out / "model.safetensors", tmp_path / "cache"
    # A strict not-an-MRI threshold (40% of validation refused), so that the check matters.
    fit_ood.main(fit_ood.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--dims", "8", "--quantile", "0.6", "--refused", "0",
         "--cache-dir", str(cache), "--write", "--device", "cpu"]))
    weights = {k: v for k, v in load_file(path).items() if not k.startswith("fam.")}
    report = fit_familiarity.main(fit_familiarity.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--dims", "4", "--quantile", "0.1", "--batch-size", "64",
         "--cache-dir", str(cache), "--write"]))
    assert 0 < report["val_not_mri"] < 1
    assert report["val_confident"] <= 1 - report["val_not_mri"]
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.meta["familiarity"]["min_confidence"] == pytest.approx(report["min_confidence"])
    after = load_file(path)
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    margs = predictor.meta["args"]
    val = build_splits(tiny_data, margs["val_fraction"], margs["seed"], cache_dir=cache).val
    said = [p.outcome for p in predictor.predict_batch([s.path for s in val])]
    assert len(said) == report["val_scans"]
    assert sum(o is outcomes.Outcome.NOT_MRI for o in said) / len(said) == pytest.approx(report["val_not_mri"])
    assert sum(o is outcomes.Outcome.CONFIDENT for o in said) / len(said) == pytest.approx(report["val_confident"])
    # A floor learnt on a held-out source (rule v6) raises min_confidence; the app follows it.
    tops = sorted(max(p.probabilities.values()) for p in predictor.predict_batch([s.path for s in val]))
    result = tmp_path / "loso-x.json"
    result.write_text(json.dumps({"sets": {"loso_training": {"floor_at_90": {"floor": tops[len(tops) // 2]}}}}))
    raised = fit_familiarity.main(fit_familiarity.get_args_parser().parse_args(
        [str(path), "--data", str(tiny_data), "--dims", "4", "--quantile", "0.1", "--batch-size", "64",
         "--cache-dir", str(cache), "--write", "--floor-from", str(result)]))
    assert raised["min_confidence_quantile"] == pytest.approx(report["min_confidence"])
    assert raised["min_confidence"] == pytest.approx(max(tops[len(tops) // 2], report["min_confidence"]))
    assert raised["val_confident"] <= report["val_confident"]
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert "loso-x.json (rule v6)" in predictor.meta["familiarity"]["threshold_on"]
    said = [p.outcome for p in predictor.predict_batch([s.path for s in val])]
    assert sum(o is outcomes.Outcome.CONFIDENT for o in said) / len(said) == pytest.approx(raised["val_confident"])
    result.write_text(json.dumps({"sets": {}}))
    with pytest.raises(SystemExit, match="--floor-from"):
        fit_familiarity.main(fit_familiarity.get_args_parser().parse_args(
            [str(path), "--data", str(tiny_data), "--floor-from", str(result)]))


def test_split_seed_keeps_one_validation_split_across_seeds(tiny_data, tmp_path):
    """--split-seed (rule v10): runs of other seeds validate on the split it names, recorded so
    that every reader of the run's split (run_splits) rebuilds that one."""
    from brainmri.protocols import run_splits
    metas = {}
    for name, extra in (("s0", ["--seed", "0"]), ("s1", ["--seed", "1", "--split-seed", "0"]),
                        ("own", ["--seed", "1"])):
        out = tmp_path / name
        run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
             "--epochs", "1", *extra], tmp_path)
        metas[name] = Predictor.from_checkpoint(out / "model.safetensors", device="cpu").meta
    assert metas["s1"]["args"]["split_seed"] == 0 and metas["own"]["args"].get("split_seed") is None
    assert metas["s1"]["data"]["val"] == metas["s0"]["data"]["val"]
    assert metas["own"]["data"]["val"] != metas["s0"]["data"]["val"]      # seed 1's own split
    val = run_splits(tiny_data, metas["s1"]["args"], cache_dir=tmp_path / "cache").val
    assert fingerprint(val) == metas["s1"]["data"]["val"]


def test_mirror_check_scores_the_checkpoints_own_validation_split(tiny_data, tmp_path):
    """studies.mirror_check: the validation split train.train held out, scan vs mirror vs mean."""
    from studies import mirror_check
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS], tmp_path)
    acc = mirror_check.accuracies(out / "model.safetensors", tiny_data, tmp_path / "cache")
    history = json.loads((out / "history.json").read_text())
    assert acc["n"] == 8                                             # a quarter of 32 training scans
    assert acc["scan"] == pytest.approx(max(h["val_acc"] for h in history if "val_acc" in h))
    assert all(0 <= acc[k] <= 1 for k in ("mirror", "mean of both"))


def test_lesion_signals_train_end_to_end(tmp_path):
    """Counterfactuals, balanced controls, box guidance and acquisition augmentation through
    the CLI on a tiny synthetic folder with a tumor_boxes.csv (the lesion's own bounding box)."""
    root = synthetic.boxed_kaggle(tmp_path / "kaggle", counts=(("Training", 10),),
                                  class_step=100, offset=5000)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(out), *ARGS,
         "--epochs", "1", "--counterfactual", "0.3", "--paint-share", "0.6", "--notumor-repeat", "2",
         "--guidance", "1", "--acquisition", "1", "--keep", "last", "--precision", "fp32"], tmp_path)
    history = json.loads((out / "history.json").read_text())
    row = history[-1]
    assert 0 <= row["train_outside_box"] <= 1 and row["train_loss"] >= row["train_ce"]
    log = (out / "log.txt").read_text()
    assert "epoch plan" in log and '"lesion out": {"glioma": 0' in log
    args = json.loads((out / "args.json").read_text())
    assert args["counterfactual"] == 0.3 and args["guidance"] == 1.0 and args["keep"] == "last"
    assert Predictor.from_checkpoint(out / "model.safetensors", device="cpu").predict(
        synthetic.scan(1, size=64)).label in CLASSES


def test_look_swap_and_consistency_train_end_to_end(tmp_path):
    """--look-swap and --consistency on a two-source folder: the run finishes, records both
    settings, and the look is swapped between the sources it holds (the held-out one is gone)."""
    from tests.test_protocols import SEEDS
    folder = synthetic.two_source_kaggle(tmp_path / "kaggle", SEEDS)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(folder), "--out", str(out), *ARGS,
         "--epochs", "1", "--val-fraction", "0.34", "--holdout-source", "sartaj-br35h",
         "--holdout-classes", "meningioma", "--look-swap", "0.5", "--consistency", "1.0",
         "--scale", "0.45", "1.3"], tmp_path)
    args = json.loads((out / "args.json").read_text())
    assert args["look_swap"] == 0.5 and args["consistency"] == 1.0 and args["scale"] == [0.45, 1.3]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    meta = Predictor.from_checkpoint(out / "model.safetensors", device="cpu").meta
    assert meta["args"]["look_swap"] == 0.5 and meta["args"]["holdout_source"] == "sartaj-br35h"


def test_mixstyle_trains_end_to_end_and_leaves_the_checkpoint_as_it_was(tiny_data, tmp_path):
    """--mixstyle: the run finishes, records the setting, and its checkpoint holds the same
    tensors as the architecture without it (MixStyle has no parameters) and loads in Predictor."""
    from safetensors import safe_open
    from brainmri.models import build_model
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
         "--epochs", "1", "--mixstyle", "0.5"], tmp_path)
    assert json.loads((out / "args.json").read_text())["mixstyle"] == 0.5
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        weights = {k for k in f.keys() if k.split(".")[0] in ("trunk", "pool", "head")}
        assert not [k for k in f.keys() if "mix" in k.lower()]
    assert weights == set(build_model("baseline").state_dict())
    p = Predictor.from_checkpoint(out / "model.safetensors", device="cpu")
    assert p.meta["args"]["mixstyle"] == 0.5 and p.predict(synthetic.scan(1, size=64)).label in CLASSES


def test_consistency_with_painting_and_guidance_trains(tmp_path):
    """The lesion signals with --look-swap and --consistency: every painted crop also goes in as
    a view in another source's look, with its label, mask and guidance; the run finishes."""
    root = synthetic.boxed_kaggle(tmp_path / "kaggle", counts=(("Training", 10),),
                                  class_step=100, offset=5000)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(out), *ARGS,
         "--epochs", "1", "--counterfactual", "0.3", "--paint-share", "0.6", "--notumor-repeat", "2",
         "--guidance", "1", "--acquisition", "1", "--look-swap", "0.5", "--consistency", "1.0",
         "--precision", "fp32"], tmp_path)
    row = json.loads((out / "history.json").read_text())[-1]
    assert 0 <= row["train_outside_box"] <= 1 and math.isfinite(row["train_loss"])
    assert json.loads((out / "args.json").read_text())["consistency"] == 1.0


def test_implant_alone_trains_with_its_plan_logged(tmp_path):
    """--implant without any other lesion signal: the run goes through the painting plan, logs
    how many implants and implant controls of each label an epoch holds, and finishes."""
    root = synthetic.boxed_kaggle(tmp_path / "kaggle", counts=(("Training", 10),),
                                  class_step=100, offset=5000)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(out), *ARGS,
         "--epochs", "1", "--implant", "0.5", "--look-swap", "0.5", "--precision", "fp32"], tmp_path)
    log = (out / "log.txt").read_text()
    plan = json.loads(log.split("epoch plan (kind: label counts): ")[1].splitlines()[0])
    assert sum(plan["implant"].values()) == plan["implant control"]["notumor"] > 0
    assert plan["implant"]["notumor"] == 0 and sum(plan["lesion out"].values()) == 0
    assert json.loads((out / "args.json").read_text())["implant"] == 0.5
    assert math.isfinite(json.loads((out / "history.json").read_text())[-1]["train_loss"])


def test_check_builds_the_run_and_stops_before_the_first_step(tmp_path):
    """--check: the epoch plan is built (and refused where it cannot be balanced: here no
    meningioma has a box) without a step, a history or a checkpoint."""
    root = synthetic.boxed_kaggle(tmp_path / "kaggle", counts=(("Training", 10),),
                                  class_step=100, offset=5000)
    lesion = [*ARGS, "--counterfactual", "0.3", "--paint-share", "0.6", "--notumor-repeat", "2",
              "--guidance", "1", "--check"]
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(root), "--out", str(out), *lesion], tmp_path)
    assert "stopped before the first step" in (out / "log.txt").read_text()
    assert not (out / "history.json").exists() and not (out / "model.safetensors").exists()
    boxes = root / "tumor_boxes.csv"
    boxes.write_text("".join(line for line in boxes.read_text().splitlines(keepends=True)
                             if ",meningioma," not in line))
    refused = run([sys.executable, "-m", "train", "--data", str(root), "--out",
                   str(tmp_path / "refused"), *lesion], tmp_path, ok=False)
    assert "balancing needs" in refused.stderr


def test_a_wider_baseline_is_built_recorded_and_loaded(tiny_data, tmp_path):
    """--arch-kwargs: a model from scratch with other widths; the checkpoint records them and
    loads as that model. Beside --init it updates the start's arguments: a spread kernel keeps
    the weights (and is recorded with the start's own arguments); other widths do not fit."""
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
         "--epochs", "1", "--arch-kwargs", '{"widths": [4, 8, 12]}'], tmp_path)
    predictor = Predictor.from_checkpoint(out / "model.safetensors", device="cpu")
    assert predictor.meta["arch_kwargs"] == {"widths": [4, 8, 12]}
    assert predictor.model.head[0].in_features == 12 * 4 * 4
    assert predictor.predict(synthetic.scan(2, size=64)).label in CLASSES
    both = run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(tmp_path / "both"),
                *ARGS, "--init", str(out / "model.safetensors"), "--arch-kwargs", '{"widths": [4, 8, 16]}'],
               tmp_path, ok=False)
    assert "--arch-kwargs" in both.stderr and "must fit" in both.stderr
    wide = tmp_path / "wide"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(wide), *ARGS,
         "--epochs", "1", "--init", str(out / "model.safetensors"), "--arch-kwargs", '{"dilation": [1, 2, 2]}'],
        tmp_path)
    spread = Predictor.from_checkpoint(wide / "model.safetensors", device="cpu")
    assert spread.meta["arch_kwargs"] == {"widths": [4, 8, 12], "dilation": [1, 2, 2]}
    assert [c.dilation for c in spread.model.trunk.modules() if isinstance(c, torch.nn.Conv2d)] == \
        [(1, 1), (2, 2), (2, 2)]


def test_average_from_keeps_the_mean_of_the_epochs_weights(tiny_data, tmp_path):
    """--average-from 1 over two epochs (constant rate): the kept weights are the mean of the
    weights after epoch 1 (a one-epoch run of the same command) and after epoch 2 (the state it
    resumes from), and the batch-norm statistics are recomputed, not averaged."""
    common = [*ARGS, "--schedule", "constant", "--warmup-epochs", "0", "--keep", "last",
              "--precision", "fp32"]
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(one), *common,
         "--epochs", "1"], tmp_path)
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(two), *common,
         "--epochs", "2", "--average-from", "1"], tmp_path)
    w1 = torch.load(one / "last_state.pt", weights_only=True)["model"]
    state = torch.load(two / "last_state.pt", weights_only=True)
    w2 = state["model"]
    assert state["averaged"] == 2
    model, meta = load_checkpoint(two / "model.safetensors")
    got = model.state_dict()
    assert meta["args"]["average_from"] == 1
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    params = [k for k in w2 if w2[k].is_floating_point() and not k.endswith(statistics)]
    assert not torch.allclose(w1[params[0]], w2[params[0]])
    for k in params:
        assert torch.allclose(got[k].float(), (w1[k] + w2[k]) / 2, atol=2e-3), k
    k = next(k for k in w2 if k.endswith("running_mean"))
    assert not torch.allclose(got[k].float(), (w1[k] + w2[k]) / 2, atol=1e-4)
    assert "kept the mean of 2 epochs' weights" in (two / "log.txt").read_text()
    # an --average-from no epoch reaches is refused before anything is written
    bad = run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(tmp_path / "bad"),
               *common, "--epochs", "1", "--average-from", "3"], tmp_path, ok=False)
    assert "--average-from 3" in bad.stderr


def test_blur_is_trained_on_stored_and_applied_at_inference(tiny_data, tmp_path):
    """--blur: the crops are blurred in training (cached apart from plain ones), the checkpoint's
    preset records it, and the app's path blurs the same way."""
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
         "--epochs", "1", "--blur", "0.02"], tmp_path)
    predictor = Predictor.from_checkpoint(out / "model.safetensors", device="cpu")
    assert predictor.meta["preset"]["blur"] == 0.02 and predictor.preset.blur == 0.02
    assert any("-blur0.02" in p.name for p in (tmp_path / ".cache").glob("crops-*.npy"))
    scan = synthetic.scan(3, size=64)
    plain = type(predictor.preset)(**{**predictor.preset.to_dict(), "blur": 0.0})
    assert not torch.equal(predictor.preset(scan), plain(scan))
    assert predictor.predict(scan).label in CLASSES


def test_source_balanced_weights_split_each_class_evenly_between_its_sources():
    from train.core import class_group_weights
    from train.train import balanced_draws, batches
    labels = np.array([0] * 130 + [1] * 55 + [2] * 40)
    sources = np.array(["a"] * 100 + ["b"] * 30 + ["a"] * 50 + ["b"] * 5 + ["b"] * 40)
    w = class_group_weights(labels, sources, min_group=20) / 225
    assert w.shape == (225,) and w.sum() == pytest.approx(1.0) and (w > 0).all()
    for c, n in ((0, 130), (1, 55), (2, 40)):
        assert w[labels == c].sum() == pytest.approx(n / 225)       # each class keeps its share
    a, b = (labels == 0) & (sources == "a"), (labels == 0) & (sources == "b")
    assert w[a].sum() == pytest.approx(w[b].sum())                  # split evenly between sources
    assert np.allclose(w[labels == 1], 1 / 225)                     # 5 scans: too few to balance
    assert np.allclose(w[labels == 2], 1 / 225)                     # one source only
    rng = np.random.default_rng(0)
    drawn = np.concatenate(list(batches(225, 32, rng, 0, 1, w)))
    again = np.concatenate(list(batches(225, 32, np.random.default_rng(0), 0, 1, w)))
    assert len(drawn) == 225 and np.array_equal(drawn, again)
    many = np.concatenate([np.concatenate(list(batches(225, 32, rng, 0, 1, w))) for _ in range(40)])
    assert np.isin(many, np.flatnonzero(b)).mean() == pytest.approx(65 / 225, abs=0.03)
    assert np.allclose(balanced_draws(labels, sources, None), w)      # MIN_SOURCE_GROUP is 20
    with pytest.raises(SystemExit, match="painting plan"):
        balanced_draws(labels, sources, painter=object())


def test_source_balance_trains_end_to_end(tmp_path):
    """--source-balance 1 on a two-source folder: the run finishes, logs each class's draws by
    source and records the setting."""
    from tests.test_protocols import SEEDS
    folder = synthetic.two_source_kaggle(tmp_path / "kaggle", SEEDS)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(folder), "--out", str(out), *ARGS,
         "--epochs", "1", "--val-fraction", "0.34", "--source-balance", "1"], tmp_path)
    assert json.loads((out / "args.json").read_text())["source_balance"] == 1
    assert "source balance (expected draws an epoch)" in (out / "log.txt").read_text()
    assert math.isfinite(json.loads((out / "history.json").read_text())[0]["train_loss"])
