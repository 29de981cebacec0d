"""brainmri.presets: the eval preset's contract, head cropping, and the training augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from brainmri.presets import IMAGENET_MEAN, IMAGENET_STD, EvalPreset, TrainPreset, head_box

from .synthetic import scan


def _unnormalise(x: torch.Tensor, preset: EvalPreset) -> torch.Tensor:
    c = x.shape[-3]
    mean = torch.tensor(preset.mean[:c]).view(-1, 1, 1)
    std = torch.tensor(preset.std[:c]).view(-1, 1, 1)
    return x * std + mean


def _canvas(h: int, w: int, box: tuple[int, int, int, int], marker: bool = True) -> np.ndarray:
    """Black (h, w) uint8 canvas with a textured elliptical 'head' filling `box` and, when
    `marker`, a small bright square in the top-left corner (like burnt-in text)."""
    x0, y0, x1, y1 = box
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, ry, rx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img = np.zeros((h, w), np.uint8)
    img[inside] = (100 + 40 * np.sin(xx[inside] / 5.0)).astype(np.uint8)
    if marker:
        img[4:4 + max(3, h // 40), 4:4 + max(3, w // 40)] = 255
    return img


@pytest.mark.parametrize("size, channels", [(224, 3), (64, 1), (96, 3)])
def test_eval_preset_shape_dtype_and_range(size, channels):
    preset = EvalPreset(size=size, channels=channels)
    x = preset(scan(0, size=200))
    assert x.shape == (channels, size, size)
    assert x.dtype == torch.float32
    raw = _unnormalise(x, preset)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert raw.max() > 0.3                                         # the head is in the crop
    if channels == 3:                                              # luminance replicated
        assert torch.allclose(raw[0], raw[1], atol=1e-5) and torch.allclose(raw[0], raw[2], atol=1e-5)


def test_eval_preset_defaults_are_imagenet():
    preset = EvalPreset()
    assert (preset.size, preset.channels) == (224, 3)
    assert preset.mean == IMAGENET_MEAN and preset.std == IMAGENET_STD
    assert EvalPreset(**preset.to_dict()) == preset                # round-trips through metadata


def test_normalise_works_on_the_batch_s_device():
    """A batch on another device (the GPU in training; the meta device here) is normalised
    there: the preset's constants follow it (train.distill's teacher normalises on the GPU)."""
    preset = EvalPreset(size=8)
    out = preset.normalise(torch.zeros(2, 1, 8, 8, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 3, 8, 8)
    cpu = preset.normalise(torch.zeros(2, 1, 8, 8))
    assert torch.allclose(cpu[:, 0], torch.full((2, 8, 8), -IMAGENET_MEAN[0] / IMAGENET_STD[0]))


def test_grey_and_rgb_of_one_picture_give_the_same_tensor():
    preset = EvalPreset(size=128)
    grey, rgb = scan(3, size=180), scan(3, size=180, rgb=True)
    assert grey.mode == "L" and rgb.mode == "RGB"
    assert torch.equal(preset(grey), preset(rgb))
    assert torch.equal(preset(np.asarray(grey)), preset(np.asarray(rgb)))


def test_prepare_keeps_the_whole_grey_image_and_the_crop_box():
    image = scan(1, size=150)
    prepared = EvalPreset(size=64).prepare(image)
    assert prepared.grey.shape == (150, 150) and prepared.grey.dtype == np.uint8
    assert np.array_equal(prepared.grey, np.asarray(image))
    assert prepared.box == head_box(prepared.grey)
    assert torch.equal(prepared.tensor, EvalPreset(size=64)(image))


@pytest.mark.parametrize("h, w, box", [
    (300, 400, (120, 60, 330, 270)),       # larger than the 256 px working size: downscaled path
    (180, 140, (30, 40, 120, 160)),        # smaller: used as is
])
def test_head_box_finds_head_and_ignores_corner_marker(h, w, box):
    x0, y0, x1, y1 = head_box(_canvas(h, w, box))
    tol = 0.06 * max(h, w)                 # margin added around the head, plus rounding
    assert abs(x0 - box[0]) <= tol and abs(y0 - box[1]) <= tol
    assert abs(x1 - box[2]) <= tol and abs(y1 - box[3]) <= tol
    assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]   # never cuts the head
    assert x0 > 10 and y0 > 10             # the corner marker is left out


def test_head_box_falls_back_to_whole_image():
    assert head_box(np.zeros((120, 90), np.uint8)) == (0, 0, 90, 120)
    speck = np.zeros((200, 200), np.uint8)
    speck[100:104, 100:104] = 255          # far below 5% of the image: not a head
    assert head_box(speck) == (0, 0, 200, 200)


def test_crop_to_head_off_uses_whole_image():
    grey = _canvas(100, 120, (30, 20, 90, 80))
    crop, box = EvalPreset(crop_to_head=False).crop(grey)
    assert box == (0, 0, 120, 100) and crop.shape == (100, 120)
    crop, box = EvalPreset().crop(grey)
    assert crop.shape == (box[3] - box[1], box[2] - box[0]) and crop.shape < (100, 120)


def _crop_batch(preset: TrainPreset, n: int = 4) -> torch.Tensor:
    s = preset.cache_size
    arr = np.stack([np.asarray(scan(i, size=s)) for i in range(n)])
    return torch.from_numpy(arr)[:, None]                          # (B, 1, s, s) uint8


@pytest.mark.parametrize("channels", [3, 1])
def test_train_preset_shape_dtype_and_range(channels):
    preset = TrainPreset(eval=EvalPreset(size=56, channels=channels,
                                         mean=IMAGENET_MEAN[:channels], std=IMAGENET_STD[:channels]))
    assert preset.cache_size == 64
    batch = _crop_batch(preset)
    x = preset(batch, torch.Generator().manual_seed(0))
    assert x.shape == (4, channels, 56, 56) and x.dtype == torch.float32
    raw = _unnormalise(x, preset.eval)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert batch.dtype == torch.uint8                              # input left untouched


def test_train_preset_is_deterministic_with_a_seeded_generator():
    preset = TrainPreset(eval=EvalPreset(size=48))
    batch = _crop_batch(preset)
    a = preset(batch, torch.Generator().manual_seed(123))
    b = preset(batch, torch.Generator().manual_seed(123))
    c = preset(batch, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_train_preset_augments_but_keeps_the_picture():
    preset = TrainPreset(eval=EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,)))
    batch = _crop_batch(preset, n=2)
    plain = EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,)).from_crop(batch[0, 0].numpy())
    augmented = preset(batch, torch.Generator().manual_seed(0))[0]
    assert not torch.allclose(augmented, plain)
    # still the same scan: strongly correlated with the unaugmented view (or its mirror)
    corr = max(np.corrcoef(augmented.flatten(), v.flatten())[0, 1]
               for v in (plain, plain.flip(-1)))
    assert corr > 0.5


def test_train_preset_scale_frames_the_head_looser_or_tighter():
    """`scale` is the crop's area: above 1 zooms out (a black border around the picture), below
    1 zooms in (the picture fills every corner); same seed, same draw otherwise."""
    eval_preset = EvalPreset(size=48, channels=1, mean=(0.0,), std=(1.0,))
    full = torch.full((2, 1, 55, 55), 200, dtype=torch.uint8)          # a picture with no border
    def corners(scale):
        preset = TrainPreset(eval=eval_preset, scale=(scale, scale), rotate_deg=0.0, brightness=0.0,
                             contrast=0.0, gamma=0.0, blur_p=0.0, noise_std=0.0)
        x = preset.warp(full.float() / 255, torch.Generator().manual_seed(0))[0]
        return torch.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, 0], x[..., -1, -1]])
    assert (corners(1.6) < 0.05).all()                                  # zoomed out: border
    assert (corners(0.45) > 0.7).all()                                  # zoomed in: filled
    with pytest.raises(ValueError, match="0 < LOW <= HIGH"):
        TrainPreset(eval=eval_preset, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="0 < LOW <= HIGH"):
        TrainPreset(eval=eval_preset, scale=(0.0, 1.0))
