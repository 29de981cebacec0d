"""Distillation (train.distill): the loss, the teacher's view of the student's inputs, the
split check, and a run through the training CLI with a teacher."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from brainmri.checkpoint import load_checkpoint, update_metadata
from brainmri.classes import CLASSES
from brainmri.models import ARCHS
from train.distill import Teacher, distill_loss

from tests.conftest import make_tiny_checkpoint
from tests.test_train import ARGS, run, tiny_data  # noqa: F401  (tiny_data: a fixture)

ROOT = Path(__file__).resolve().parent.parent


def test_distill_loss_is_zero_for_identical_answers_and_grows_apart():
    torch.manual_seed(0)
    a = torch.randn(6, 4)
    assert float(distill_loss(a, a.clone(), 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distill_loss(a, a + 5.0, 2.0)) == pytest.approx(0.0, abs=1e-6)   # same softmax
    near, far = distill_loss(a, a + 0.1 * torch.randn(6, 4), 2.0), distill_loss(a, -a, 2.0)
    assert 0 < float(near) < float(far)
    # T = 1: the KL divergence itself, averaged over rows
    b = torch.randn(6, 4)
    p = F.softmax(b, 1)
    expected = (p * (F.log_softmax(b, 1) - F.log_softmax(a, 1))).sum(1).mean()
    assert float(distill_loss(a, b, 1.0)) == pytest.approx(float(expected), rel=1e-5)


def test_distill_loss_teaches_the_student_only():
    student, teacher = torch.randn(4, 4, requires_grad=True), torch.randn(4, 4, requires_grad=True)
    distill_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_teacher_answers_on_the_students_inputs_as_it_would_on_its_own(tmp_path):
    """A 1-channel 32 px student's normalised batch -> the teacher's logits on the same pictures
    resized to its 48 px and normalised its own (3-channel ImageNet) way."""
    path = make_tiny_checkpoint(tmp_path / "teacher.safetensors", "resnet50", size=48)
    student = ARCHS["baseline"].preset(32)
    teacher = Teacher(path, student)
    grey = torch.rand(3, 1, 32, 32)
    got = teacher(student.normalise(grey))
    model, meta = load_checkpoint(path)
    own = teacher.preset.normalise(F.interpolate(grey, size=(48, 48), mode="bilinear",
                                                 align_corners=False))
    with torch.no_grad():
        want = model(own)
    assert got.shape == (3, len(CLASSES)) and torch.allclose(got, want, atol=1e-4)
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_teacher_seeing_other_crops_is_refused(tmp_path):
    """A teacher answers on the student's crops: both must be standardised and blurred alike."""
    from dataclasses import replace
    path = make_tiny_checkpoint(tmp_path / "teacher.safetensors", "baseline", size=32)
    plain = ARCHS["baseline"].preset(32)
    Teacher(path, plain)
    for student in (replace(plain, blur=0.01), replace(plain, standardise=True)):
        with pytest.raises(SystemExit, match="would see different scans"):
            Teacher(path, student)


def test_teacher_from_another_split_is_refused(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "teacher.safetensors", "baseline", size=32)
    teacher = Teacher(path, ARCHS["baseline"].preset(32))
    counts = dict.fromkeys(CLASSES, 2)
    with pytest.raises(SystemExit, match="records no training split"):
        teacher.check({"seed": 0, "val_fraction": 0.25}, counts)
    update_metadata(path, args={"seed": 0, "val_fraction": 0.12},
                    data={"val": {"per_class": counts}})
    teacher = Teacher(path, ARCHS["baseline"].preset(32))
    teacher.check({"seed": 0, "val_fraction": 0.12}, counts)               # the same split
    with pytest.raises(SystemExit, match="val_fraction"):
        teacher.check({"seed": 0, "val_fraction": 0.25}, counts)
    with pytest.raises(SystemExit, match="holdout_source"):
        teacher.check({"seed": 0, "val_fraction": 0.12, "holdout_source": "figshare"}, counts)
    with pytest.raises(SystemExit, match="validation per class"):
        teacher.check({"seed": 0, "val_fraction": 0.12}, {**counts, "glioma": 3})


def test_a_rounded_teacher_travels_with_its_split_and_answers(tmp_path):
    """train.pack checkpoint / restore --out: 8-bit kernels, the metadata kept, so the restored
    teacher passes the split check the exact one passes and answers within the rounding."""
    path = make_tiny_checkpoint(tmp_path / "teacher.safetensors", "resnet50", size=48)
    counts = dict.fromkeys(CLASSES, 2)
    update_metadata(path, args={"seed": 0, "val_fraction": 0.12}, data={"val": {"per_class": counts}})
    packed, back = tmp_path / "teacher-int8.safetensors", tmp_path / "back.safetensors"
    for argv in (["checkpoint", str(path), "--out", str(packed), "--min-elements", "4096"],
                 ["restore", str(packed), "--out", str(back)]):
        result = subprocess.run([sys.executable, "-m", "train.pack", *argv], capture_output=True,
                                text=True, timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
    assert packed.stat().st_size < 0.7 * path.stat().st_size
    student = ARCHS["baseline"].preset(32)
    exact, rounded = Teacher(path, student), Teacher(back, student)
    rounded.check({"seed": 0, "val_fraction": 0.12}, counts)
    assert rounded.meta["rounded"]["from"] == "teacher.safetensors"
    x = student.normalise(torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1)))
    want, got = exact(x), rounded(x)
    assert not torch.equal(got, want)                             # rounded, not copied
    assert (got - want).abs().max() <= 0.05 * want.abs().max()
    not_rounded = subprocess.run([sys.executable, "-m", "train.pack", "restore", str(path), "--out",
                                  str(tmp_path / "x.safetensors")], capture_output=True, text=True,
                                 timeout=300, cwd=ROOT)
    assert not_rounded.returncode != 0 and "not a rounded checkpoint" in not_rounded.stderr
    as_imagenet = subprocess.run([sys.executable, "-m", "train.pack", "restore", str(packed)],
                                 capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert as_imagenet.returncode != 0 and "restore it with --out" in as_imagenet.stderr


def test_training_with_a_teacher_records_its_loss(tiny_data, tmp_path):
    """A baseline taught by a checkpoint trained on the same split: the run records the
    distillation term and its settings; a teacher from another split stops the run."""
    teacher = tmp_path / "teacher"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(teacher), *ARGS,
         "--epochs", "1"], tmp_path)
    out = tmp_path / "student"
    run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), *ARGS,
         "--teacher", str(teacher / "model.safetensors"), "--distill", "0.7",
         "--distill-temperature", "2", "--precision", "fp32"], tmp_path)
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all(math.isfinite(h["train_distill"]) and h["train_distill"] >= 0
                                     for h in history)
    args = json.loads((out / "args.json").read_text())
    assert args["distill"] == 0.7 and args["teacher"].endswith("model.safetensors")
    other = subprocess.run([sys.executable, "-m", "train", "--data", str(tiny_data), "--out",
                            str(tmp_path / "other"), *ARGS, "--val-fraction", "0.5", "--teacher",
                            str(teacher / "model.safetensors"), "--distill", "0.7"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert other.returncode != 0 and "another split" in other.stderr
