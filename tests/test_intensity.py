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


def synthetic_grey(seed: int = 0):
    import numpy as np
    from tests.synthetic import scan
    return np.asarray(scan(seed, size=128))


def test_standardise_puts_the_landmarks_on_the_reference():
    import numpy as np
    from brainmri.intensity import HEAD_LEVEL_U8, LANDMARKS, REFERENCE, standardise
    grey = synthetic_grey()
    out = standardise(grey)
    assert out.shape == grey.shape and out.dtype == np.uint8
    marks = np.percentile(grey[grey > HEAD_LEVEL_U8], LANDMARKS)
    got = np.interp(marks, np.sort(grey[grey > HEAD_LEVEL_U8]), np.sort(out[grey > HEAD_LEVEL_U8])) / 255
    assert np.allclose(got, REFERENCE, atol=0.02)
    assert out[grey == 0].max() == 0                          # the background stays black


def test_standardise_removes_brightness_and_contrast_keeps_order():
    import numpy as np
    from brainmri.intensity import standardise
    grey = synthetic_grey(3)
    brighter = np.clip(grey.astype(float) * 1.5 + 10 * (grey > 0), 0, 255).astype(np.uint8)
    a, b = standardise(grey).astype(int), standardise(brighter).astype(int)
    head = grey > 20
    assert np.abs(a[head] - b[head]).mean() < 4               # same scan, other exposure: same input
    order = np.argsort(grey[head], kind="stable")
    assert (np.diff(a[head][order]) >= 0).all()               # monotone: tissue order kept


def test_standardise_leaves_a_picture_without_head_alone():
    import numpy as np
    from brainmri.intensity import standardise
    blank = np.zeros((32, 32), np.uint8)
    blank[0, :10] = 200
    assert np.array_equal(standardise(blank), blank)


def test_preset_standardises_its_crops_and_old_presets_do_not():
    import numpy as np
    from brainmri.intensity import standardise
    from brainmri.presets import EvalPreset
    grey = synthetic_grey(5)
    on = EvalPreset(size=64, standardise=True)
    plain_dict = {k: v for k, v in EvalPreset(size=64).to_dict().items() if k != "standardise"}
    off = EvalPreset(**plain_dict)                            # a checkpoint written before the field
    assert not off.standardise and EvalPreset(**on.to_dict()).standardise
    crop_on, box = on.crop(grey)
    crop_off, box_off = off.crop(grey)
    assert box == box_off and np.array_equal(crop_on, standardise(crop_off))


def test_preset_blurs_its_crops_and_old_presets_do_not():
    import numpy as np
    from brainmri.presets import EvalPreset
    from brainmri.shifts import blur
    grey = synthetic_grey(5)
    plain_dict = {k: v for k, v in EvalPreset(size=64).to_dict().items() if k != "blur"}
    off = EvalPreset(**plain_dict)                            # a checkpoint written before the field
    on = EvalPreset(size=64, blur=0.02)
    assert off.blur == 0.0 and EvalPreset(**on.to_dict()).blur == 0.02
    (crop_on, box), (crop_off, box_off) = on.crop(grey), off.crop(grey)
    assert box == box_off and crop_on.shape == crop_off.shape and crop_on.dtype == np.uint8
    assert np.array_equal(crop_on, blur(crop_off, None, 0.02))     # the probe's blur, on the crop
    # fine texture goes: the mean absolute difference between neighbours falls
    assert np.abs(np.diff(crop_on.astype(int), axis=1)).mean() < np.abs(np.diff(crop_off.astype(int), axis=1)).mean()
    assert np.array_equal(on.crop(grey)[0], crop_on)                # deterministic
    assert off.cache_tag == "" and on.cache_tag == "-blur0.02"
    assert EvalPreset(size=64, standardise=True, blur=0.01).cache_tag == "-std-blur0.01"
