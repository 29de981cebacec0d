"""Knowledge distillation: a trained checkpoint (the teacher) answers on every training row as
the student sees it, and the student learns its soft answers beside the labels (Hinton et al.,
"Distilling the knowledge in a neural network", 2015).

The teacher must come from the same split: one that was trained on a validation scan would
carry it into the student, and validation would no longer choose honestly. `Teacher.check`
compares what both runs record of their split (seed, validation share, held-out source and
classes, per-class counts of the validation scans) and refuses a mismatch.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from brainmri.checkpoint import load_checkpoint
from brainmri.presets import EvalPreset

from .pack import protocol_of

log = logging.getLogger("train")

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", type=Path,
                   help="distil from this checkpoint (train.distill): it answers on every training "
                        "row as the student sees it; it must come from the same split")
    p.add_argument("--distill", type=float,
                   help="with --teacher: weight of the teacher's soft answers; the labels' "
                        "cross-entropy gets 1 minus it")
    p.add_argument("--distill-temperature", type=float, help="with --teacher: softening temperature")


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x KL(teacher || student) between the softened answers of (B, K) logits, averaged
    over the batch; zero when both give the same answers. The T^2 keeps its gradients on the
    scale of the cross-entropy's whatever T."""
    t = float(temperature)
    target = F.log_softmax(teacher.detach().float() / t, dim=1)
    return F.kl_div(F.log_softmax(student.float() / t, dim=1), target, reduction="batchmean",
                    log_target=True) * t * t


class Teacher:
    """A checkpoint's logits on the student's normalised inputs: each row is taken back to
    [0, 1] with the student's preset, resized to the teacher's input size and normalised as the
    teacher was. Frozen and in eval mode."""

    def __init__(self, path: str | Path, student: EvalPreset, device: torch.device | str = "cpu"):
        model, self.meta = load_checkpoint(path, device)
        self.model = model.float().eval().to(memory_format=torch.channels_last)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.path, self.student = Path(path), student
        self.preset = EvalPreset.from_dict(self.meta["preset"])
        if self.preset.cache_tag != student.cache_tag:
            raise SystemExit(f"--teacher {path}: its crops are {self.preset.cache_tag or 'plain'} and the "
                             f"student's {student.cache_tag or 'plain'} (standardised, blurred): they "
                             "would see different scans")

    def check(self, cfg: dict, val_counts: dict) -> None:
        """Refuse a teacher whose split is not the student's (see the module's docstring)."""
        args, data = self.meta.get("args") or {}, self.meta.get("data") or {}
        if "val" not in data or "seed" not in args or "val_fraction" not in args:
            raise SystemExit(f"--teacher {self.path}: the checkpoint records no training split, "
                             "so it may have seen the validation scans")
        want, have = protocol_of(cfg), protocol_of(args)       # the split's identity (train.pack)
        differ = [k for k in want if want[k] != have[k]]
        if data["val"].get("per_class") != val_counts:
            differ.append(f"validation per class {data['val'].get('per_class')} vs {val_counts}")
        if differ:
            raise SystemExit(f"--teacher {self.path} was trained on another split ({', '.join(differ)}): "
                             "its answers could carry validation scans into the student")
        log.info("teacher %s: same split (seed %s, validation %s)", self.path.name, cfg.get("seed"),
                 val_counts)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, s, s) inputs normalised by the student's preset -> (B, K) teacher logits."""
        mean, std = self.student.mean[0], self.student.std[0]
        grey = (x[:, :1].float() * std + mean).clamp(0, 1)
        size = self.preset.size
        if grey.shape[-1] != size:
            grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
        x = self.preset.normalise(grey).contiguous(memory_format=torch.channels_last)
        return self.model(x).float()
