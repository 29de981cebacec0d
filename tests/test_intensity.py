"""brainmri.intensity: inversion inside the head, shared by training and inference."""
from __future__ import annotations

import torch

from brainmri.intensity import invert_head
from train.augment import Acquisition


def head_batch(seed: int = 0) -> torch.Tensor:
    """(2, 1, 48, 48): a black background and a textured disc 'head' in [0.2, 0.9]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 48), indexing="ij")
    head = (yy ** 2 + xx ** 2 < 0.6).float()
    tissue = 0.2 + 0.7 * torch.rand(2, 1, 48, 48, generator=g)
    return tissue * head


def test_invert_head_keeps_shape_range_and_black_background():
    x = head_batch()
    y = invert_head(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y[x == 0], x[x == 0])              # the background stays black
    centre = (slice(None), 0, slice(20, 28), slice(20, 28))
    assert torch.allclose(y[centre], 1 - x[centre])       # deep inside the head: 1 - x


def test_invert_head_is_deterministic_and_reverses_the_order_of_tissue():
    x = head_batch(1)
    assert torch.equal(invert_head(x), invert_head(x))
    inside = x[:, :, 20:28, 20:28].flatten()
    out = invert_head(x)[:, :, 20:28, 20:28].flatten()
    assert torch.equal(torch.argsort(inside), torch.argsort(out, descending=True)) or \
        (torch.corrcoef(torch.stack([inside, out]))[0, 1] < -0.99)


def test_training_inversion_is_the_library_one():
    x = head_batch(2)
    aug = Acquisition()(x, torch.Generator().manual_seed(0), only="invert")
    assert torch.allclose(aug, invert_head(x).clamp(0, 1))
