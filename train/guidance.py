"""Box guidance: a penalty on the true class's map mass outside the grown tumour box.

The "energy" idea of attention-prior training (Ross et al. 2017, "right for the right reasons",
with the box-energy measure of Score-CAM's evaluation, Wang et al. 2020): on a boxed tumour scan, the share of the
true class's class activation map that lies outside the tumour box is added to the loss.

The map is Layer-CAM of the trunk's last block, `sum_k relu(dy/dA_k) * A_k`: the last-block map
of the apps' default "Layer-CAM, 2 layers", and for a global-average-pool + linear head exactly
`sum_k relu(w_yk) A_k / (h w)`. The gradient dy/dA comes from the head alone (`Classifier.classify`)
and is kept in the graph, so the penalty trains both the trunk (through A) and the head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def inside_cells(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, S, S) box masks in [0, 1] at the input size -> (B, h, w): the share of each map
    cell covered by the box."""
    return F.adaptive_avg_pool2d(masks.float(), size)[:, 0]


def layercam(model, acts: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K), Layer-CAM (B, h, w) of each sample's label) from the trunk's output
    `acts` (B, C, h, w); both differentiable in the head's weights and in `acts`."""
    acts = acts.float()
    if not acts.requires_grad:          # frozen trunk: the map still trains the head
        acts = acts.detach().requires_grad_(True)
    with torch.autocast(acts.device.type, enabled=False):        # the head in float32
        logits = model.classify(acts)
    grads, = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), acts, create_graph=True)
    return logits, (grads.clamp(min=0) * acts.clamp(min=0)).sum(1)


def outside_share(cam: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """(B, h, w) non-negative maps, (B, h, w) box coverage in [0, 1] -> (B,) the share of each
    map's mass outside the box (0 for an all-zero map)."""
    total = cam.sum((1, 2))
    return (cam * (1 - inside)).sum((1, 2)) / total.clamp(min=1e-8)


def box_penalty(model, acts: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                guided: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K), the mean outside-box share over the `guided` (B,) bool samples, a
    scalar, 0 when none is guided). `masks` (B, 1, S, S): each sample's grown tumour box."""
    logits, cam = layercam(model, acts, labels)
    if not bool(guided.any()):
        return logits, cam.sum() * 0.0
    share = outside_share(cam[guided], inside_cells(masks[guided], cam.shape[-2:]))
    return logits, share.mean()
