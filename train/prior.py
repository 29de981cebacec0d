"""Post-hoc correction of a label prior that training changed on purpose.

The lesion recipes (`train.paint.plan_epoch`) add counterfactual no-tumour scans and show every
no-tumour scan more than once, so a model trained on that plan learns a no-tumour prior far
above the one of real scans. Adding log(natural prior) - log(trained prior) to the logits
undoes a pure label-prior shift exactly (Saerens et al. 2002; "post-hoc logit adjustment",
Menon et al. 2021). Both priors come from the training split: the distinct scans' label
counts and the epoch plan's. The shift goes into the last linear layer's bias, so a corrected
checkpoint is an ordinary checkpoint.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from brainmri.models import last_linear


def logit_shift(natural: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Per-class label counts (natural, as trained) -> log(natural share) - log(trained share),
    centred to mean 0 (a constant added to every logit changes nothing). Raises ValueError
    when a class is missing from either count."""
    natural, trained = np.asarray(natural, float), np.asarray(trained, float)
    if natural.shape != trained.shape or (natural <= 0).any() or (trained <= 0).any():
        raise ValueError(f"every class needs a positive count in both: {natural} vs {trained}")
    shift = np.log(natural / natural.sum()) - np.log(trained / trained.sum())
    return shift - shift.mean()


def correction(natural_labels: np.ndarray, trained_labels: np.ndarray, n_classes: int) -> dict:
    """Label arrays (the distinct training scans', an epoch plan's) -> the record a checkpoint
    stores: both count vectors and `logit_shift` (rounded to 4 decimals)."""
    natural = np.bincount(natural_labels, minlength=n_classes)
    trained = np.bincount(trained_labels, minlength=n_classes)
    return {"natural_counts": natural.tolist(), "trained_counts": trained.tolist(),
            "logit_shift": logit_shift(natural, trained).round(4).tolist()}


@torch.no_grad()
def shift_logits(model: nn.Module, shift: np.ndarray) -> None:
    """Add `shift` to every logit `model` produces, in place (its last layer's bias)."""
    bias = last_linear(model).bias
    if bias.shape[0] != len(shift):
        raise ValueError(f"{len(shift)} shifts for {bias.shape[0]} classes")
    bias += torch.as_tensor(shift, dtype=bias.dtype, device=bias.device)
