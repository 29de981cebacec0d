"""train.guidance: the box penalty on the true class's last-block Layer-CAM."""
from __future__ import annotations

import torch
from torch import nn

from brainmri.models import Classifier, build_model
from train.guidance import box_penalty, inside_cells, layercam, outside_share


def test_outside_share_is_zero_inside_and_grows_outside():
    cam = torch.zeros(2, 8, 8)
    cam[:, 2:4, 2:4] = 1.0
    inside = torch.zeros(2, 8, 8)
    inside[0, 1:5, 1:5] = 1            # sample 0: the box holds all the mass
    inside[1, 5:8, 5:8] = 1            # sample 1: the box holds none of it
    share = outside_share(cam, inside)
    assert share[0] == 0 and share[1] == 1
    cam[0, 7, 7] = 1.0                 # some mass moves outside the box
    assert 0 < outside_share(cam, inside)[0] < 1
    assert outside_share(torch.zeros(1, 8, 8), inside[:1])[0] == 0     # empty map: no penalty


def test_inside_cells_are_box_coverage_per_cell():
    masks = torch.zeros(1, 1, 16, 16)
    masks[..., :8, :8] = 1
    cells = inside_cells(masks, (4, 4))
    assert cells.shape == (1, 4, 4) and cells[0, :2, :2].eq(1).all() and cells[0, 2:, 2:].eq(0).all()
    masks[..., :8, :10] = 1
    assert 0 < inside_cells(masks, (4, 4))[0, 0, 2] < 1


def gap_linear_model(channels: int = 6) -> Classifier:
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU())
    return Classifier(trunk, nn.Linear(channels, 4))


def test_layercam_for_a_pooled_linear_head_is_the_positive_weights_map():
    model = gap_linear_model()
    acts = model.trunk(torch.rand(2, 1, 8, 8))
    labels = torch.tensor([1, 3])
    _, cam = layercam(model, acts, labels)
    w = model.head.weight[labels].clamp(min=0) / 64                   # dy/dA = w / (h w)
    expected = torch.einsum("bk,bkhw->bhw", w, acts)
    torch.testing.assert_close(cam, expected)


def test_penalty_gradients_reach_the_trunk_and_the_head():
    for model in (gap_linear_model(), build_model("baseline", widths=(4, 8, 8))):
        model.train()
        x = torch.rand(3, 1, 64, 64)
        labels = torch.tensor([0, 1, 3])
        masks = torch.zeros(3, 1, 64, 64)
        masks[..., 10:30, 10:30] = 1
        guided = torch.tensor([True, True, False])
        _, penalty = box_penalty(model, model.trunk(x), labels, masks, guided)
        assert 0 < float(penalty.detach()) <= 1
        penalty.backward()
        first_conv = next(m for m in model.trunk.modules() if isinstance(m, nn.Conv2d))
        assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
        head_weights = [p for p in model.head.parameters() if p.ndim > 1]
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head_weights)


def test_no_guided_sample_gives_a_zero_penalty():
    model = gap_linear_model()
    acts = model.trunk(torch.rand(2, 1, 8, 8))
    logits, penalty = box_penalty(model, acts, torch.tensor([0, 1]), torch.zeros(2, 1, 8, 8),
                                  torch.tensor([False, False]))
    assert logits.shape == (2, 4) and float(penalty.detach()) == 0
