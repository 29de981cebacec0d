"""Checkers: models that check a checkpoint's confident answers (rule v18 of
logs/confident/rule.md), on tiny checkpoints whose heads answer one class whatever the scan."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri import outcomes, space
from brainmri.__main__ import main as cli
from brainmri.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from brainmri.classes import CLASSES
from brainmri.models import last_linear
from brainmri.outcomes import CHECKERS_DISAGREE, LOW_CONFIDENCE, Outcome, checker_reasons, decide
from brainmri.predictor import Predictor, checker_paths
from brainmri.service import Service
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import scan
from train import checkers as install

SPLIT = {"train": {"files": 8, "sha256": "aaaa"}, "val": {"files": 4, "sha256": "bbbb"}}


def answering(path: Path, label: str, margin: float = 8.0, seed: int = 0, data: dict | None = SPLIT) -> Path:
    """A tiny ResNet-50 checkpoint whose logits are `margin` for `label` and 0 for the others,
    whatever the scan (margin 8: top probability 0.999, confident; 0: every class 0.25)."""
    make_tiny_checkpoint(path, "resnet50", seed=seed)
    model, meta = load_checkpoint(path)
    head = last_linear(model)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[CLASSES.index(label)] = margin
    meta = {**meta, "name": path.stem, **({"data": data} if data else {})}
    return save_checkpoint(path, model, meta)


def folder_with(tmp: Path, label: str, checkers: list[str], margin: float = 8.0) -> Path:
    """`tmp/resnet50.safetensors` answering `label`, with checkers answering `checkers`."""
    tmp.mkdir(parents=True, exist_ok=True)
    answering(tmp / "resnet50.safetensors", label, margin)
    paths = [answering(tmp / f"made-{i}.safetensors", c, seed=i + 1) for i, c in enumerate(checkers)]
    install.install(tmp / "resnet50.safetensors", paths, "a test")
    for p in paths:
        p.unlink()
    return tmp


# --- the rule ------------------------------------------------------------------------------------
def test_a_confident_answer_stands_only_when_every_checker_gives_its_class():
    assert checker_reasons("glioma", ["glioma", "glioma"]) == ()
    assert checker_reasons("glioma", []) == ()
    (reason,) = checker_reasons("glioma", ["glioma", "notumor", "notumor", "pituitary"])
    assert reason == CHECKERS_DISAGREE and reason.outcome is Outcome.CAUTION
    assert "another class (no tumour, pituitary tumour)" in reason.text
    assert decide(checker_reasons("glioma", ["meningioma"])).outcome is Outcome.CAUTION


# --- the predictor ---------------------------------------------------------------------------------
def test_checkers_sit_beside_the_checkpoint_and_load_unless_told_not_to(tmp_path):
    """The Python API answers as the app does: `from_checkpoint` loads the checkers beside the
    checkpoint; `checked=False` (the studies, the fitting commands) measures it alone."""
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    paths = checker_paths(folder / "resnet50.safetensors")
    assert [p.relative_to(folder).as_posix() for p in paths] == [
        "checkers/resnet50/made-0.safetensors", "checkers/resnet50/made-1.safetensors"]
    assert checker_paths(tmp_path / "baseline.safetensors") == []
    assert Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu", checked=False).checkers == ()
    checked = Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu")
    assert [c.name for c in checked.checkers] == ["made-0", "made-1"]
    assert all(c.checkers == () for c in checked.checkers)
    assert read_metadata(paths[0])["checks"] == {"checkpoint": "resnet50.safetensors", "rule": "a test"}


def test_a_checker_that_disagrees_makes_the_answer_caution_and_changes_nothing_else(tmp_path):
    image = np.asarray(scan(seed=4, size=96))
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    alone = Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu", checked=False)
    checked = Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu")
    before, after = alone.predict(image), checked.predict(image)
    assert before.outcome is Outcome.CONFIDENT and before.reasons == ()
    assert after.outcome is Outcome.CAUTION and after.reasons == (CHECKERS_DISAGREE,)
    assert "another class (meningioma)" in after.reasons[0].text
    assert (after.label, after.probabilities, after.is_mri) == (before.label, before.probabilities, True)
    e0, e1 = alone.explain(image, method="gradcam"), checked.explain(image, method="gradcam")
    assert e1.prediction.outcome is Outcome.CAUTION and e1.prediction.reasons == (CHECKERS_DISAGREE,)
    np.testing.assert_array_equal(e0.heatmap, e1.heatmap)
    assert e1.target == e0.target == "glioma"


def test_alone_answers_as_the_checkpoint_without_its_checkers_on_the_same_model(tmp_path):
    image = np.asarray(scan(seed=4, size=96))
    folder = folder_with(tmp_path, "glioma", ["meningioma"])
    checked = Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu", checked=True)
    alone = checked.alone()
    assert alone.model is checked.model and alone.checkers == () and len(checked.checkers) == 1
    unloaded = Predictor.from_checkpoint(folder / "resnet50.safetensors", "cpu", checked=False).predict(image)
    answer = alone.predict(image)
    assert (answer.label, answer.probabilities, answer.outcome, answer.reasons) == (
        unloaded.label, unloaded.probabilities, Outcome.CONFIDENT, ())
    assert checked.predict(image).reasons == (CHECKERS_DISAGREE,)


def test_checkers_that_agree_leave_a_confident_answer_confident(tmp_path):
    checked = Predictor.from_checkpoint(folder_with(tmp_path, "pituitary", ["pituitary", "pituitary"])
                                        / "resnet50.safetensors", "cpu", checked=True)
    out = checked.predict_batch([np.asarray(scan(seed=s, size=80)) for s in range(3)])
    assert [(p.label, p.outcome, p.reasons) for p in out] == [("pituitary", Outcome.CONFIDENT, ())] * 3


def test_checkers_run_only_on_confident_answers(tmp_path):
    checked = Predictor.from_checkpoint(folder_with(tmp_path, "glioma", ["meningioma"], margin=0.0)
                                        / "resnet50.safetensors", "cpu", checked=True)
    asked = []
    checker = checked.checkers[0]
    checker.labels = lambda greys: asked.append(len(greys)) or ["meningioma"] * len(greys)
    p = checked.predict(np.asarray(scan(seed=1, size=80)))
    assert p.outcome is Outcome.CAUTION and p.reasons == (LOW_CONFIDENCE,)
    assert asked == []


def test_a_checker_of_other_classes_is_refused(tmp_path):
    main = Predictor.from_checkpoint(answering(tmp_path / "m.safetensors", "glioma"), "cpu")
    other = Predictor.from_checkpoint(answering(tmp_path / "c.safetensors", "glioma"), "cpu")
    other.classes = ("a", "b", "c", "d")
    with pytest.raises(ValueError, match="has classes"):
        Predictor(main.model, main.meta, "cpu", checkers=[other])


# --- installing them -------------------------------------------------------------------------------
def test_install_refuses_a_checker_of_another_split_before_copying(tmp_path):
    main = answering(tmp_path / "resnet50.safetensors", "glioma")
    other = answering(tmp_path / "other.safetensors", "glioma",
                      data={**SPLIT, "val": {"files": 4, "sha256": "cccc"}})
    none = answering(tmp_path / "none.safetensors", "glioma", data=None)
    for bad in (other, none):
        with pytest.raises(ValueError, match="split"):
            install.install(main, [bad], "")
    assert checker_paths(main) == []


def test_install_replaces_earlier_checkers(tmp_path):
    folder = folder_with(tmp_path, "glioma", ["glioma", "glioma"])
    new = answering(tmp_path / "fresh.safetensors", "glioma", seed=5)
    install.install(folder / "resnet50.safetensors", [new], "v2")
    assert [p.name for p in checker_paths(folder / "resnet50.safetensors")] == ["fresh.safetensors"]


def test_measured_figures_go_to_the_checkers_and_the_model_card(tmp_path):
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    ckpt = folder / "resnet50.safetensors"
    result = {"checkpoint": str(ckpt), "checked": True, "date": "2026-12-05 22:00 UTC", "machine": "x86_64",
              "sets": {"val": {"n": 411, "confident": {"share": 0.905, "n": 372, "right": 0.997}}}}
    (tmp_path / "r.json").write_text(json.dumps(result))
    figures = install.store_measured(ckpt, tmp_path / "r.json")
    assert figures["sets"] == {"val": {"confident": 0.905, "right": 0.997, "n": 411}}
    for path in checker_paths(ckpt):
        assert read_metadata(path)["checks"]["measured"] == figures
    card = Service.from_folder(folder, device="cpu", warmup=False).model_card()
    assert "Checked by 2 model(s) trained on the same split: `made-0` (test, 64 px), `made-1` (test, 64 px)" in card
    assert f"(reason `{CHECKERS_DISAGREE.code}`)" in card
    assert "val: 90.5% confident, accuracy of confident answers 99.7%" in card
    (tmp_path / "r.json").write_text(json.dumps({**result, "checked": False}))
    with pytest.raises(ValueError, match="not a --checked result"):
        install.store_measured(ckpt, tmp_path / "r.json")


# --- what users get --------------------------------------------------------------------------------
def test_the_service_and_the_batch_command_answer_checked(tmp_path):
    folder = folder_with(tmp_path / "ckpt", "glioma", ["meningioma"])
    image = scan(seed=2, size=96)
    r = Service.from_folder(folder, device="cpu", warmup=False).classify(np.asarray(image), "resnet50")
    d = r.as_dict()
    assert d["outcome"] == "caution" and d["label"] == "glioma"
    assert [x["code"] for x in d["reasons"]] == [CHECKERS_DISAGREE.code]
    image.save(tmp_path / "a.png")
    out = tmp_path / "out.csv"
    assert cli(["classify", str(tmp_path / "a.png"), "--model", "resnet50", "--checkpoints", str(folder),
                "--out", str(out), "--no-progress"]) == 0
    with out.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["label"], row["outcome"], row["reason_codes"]) == ("glioma", "caution", CHECKERS_DISAGREE.code)


def test_outcomes_module_names_the_checker_reason_once():
    assert outcomes.REASONS[CHECKERS_DISAGREE.code] is CHECKERS_DISAGREE
    with pytest.raises(ValueError, match="defined twice"):
        outcomes.define(CHECKERS_DISAGREE.code, Outcome.CAUTION, "again")


def test_a_checker_file_keeps_its_weights(tmp_path):
    src = answering(tmp_path / "src.safetensors", "glioma", seed=3)
    main = answering(tmp_path / "resnet50.safetensors", "glioma")
    (dest,) = install.install(main, [src], "r")
    a, _ = load_checkpoint(src)
    b, meta = load_checkpoint(dest)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert meta["name"] == "src"


def test_a_space_carries_the_checkers(tmp_path):
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    files = space.checkpoint_files(folder)
    assert sorted(p.as_posix() for p in files) == [
        "checkpoints/checkers/resnet50/made-0.safetensors", "checkpoints/checkers/resnet50/made-1.safetensors",
        "checkpoints/resnet50.safetensors"]
    assert all(src.is_file() for src in files.values())


def test_the_benchmark_times_a_click_with_and_without_the_checkers(tmp_path):
    from benchmarks import checkers as bench
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    text = bench.main(["--checkpoint", str(folder / "resnet50.safetensors"), "--count", "2", "--repeats", "2"])
    assert "| Click, with its 2 checkers (as the app answers) |" in text
    assert "2 of 2 answered confidently by the model alone" in text
    with pytest.raises(SystemExit):
        bench.main(["--checkpoint", str(answering(tmp_path / "alone.safetensors", "glioma")), "--count", "2"])


def test_the_service_warms_the_checkers_up(tmp_path):
    folder = folder_with(tmp_path, "glioma", ["meningioma"], margin=0.0)   # never confident
    svc = Service.from_folder(folder, device="cpu", warmup=False)
    asked = []
    checker = svc.engines["resnet50"].checkers[0]
    checker.labels = lambda greys: asked.append(len(greys)) or ["meningioma"] * len(greys)
    svc.warmup()
    assert asked == [1]


def test_the_scan_benchmark_times_scan_mode_as_the_app_answers(tmp_path):
    from benchmarks import scan as bench
    folder = folder_with(tmp_path, "glioma", ["glioma", "meningioma"])
    text = bench.main(["--checkpoints", str(folder), "--slices", "2", "--repeats", "1", "--devices", "cpu"])
    assert "| Scan mode as the app answers: with its 2 checkers (on the 2 of 2 slices" in text
    assert "checked: finding glioma" in text
