"""train.augment: each acquisition transform's shape, range, effect and determinism."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri.presets import EvalPreset, TrainPreset
from train.augment import TRANSFORMS, Acquisition, bias_field, monotone_curve, random_knots
from train.train import cpu_has_bf16, use_bf16

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402


def batch(n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(synthetic.scan(i, size=size))).float()[None] / 255
                        for i in range(n)])


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_keeps_shape_and_range_changes_the_image_and_is_seeded(name):
    x = batch()
    aug = Acquisition()
    a = aug(x, torch.Generator().manual_seed(3), only=name)
    b = aug(x, torch.Generator().manual_seed(3), only=name)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert (a - x).abs().mean() > 1e-3
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4), only=name)) or name == "invert"


def test_curves_are_monotone_and_keep_black_and_white():
    knots = random_knots(5, 6, torch.Generator().manual_seed(0))
    assert (knots[:, 0] == 0).all() and torch.allclose(knots[:, -1], torch.ones(5))
    assert (knots.diff(dim=1) >= 0).all()
    ramp = torch.linspace(0, 1, 101).view(1, 1, 1, 101).expand(5, 1, 1, 101)
    out = monotone_curve(ramp, knots)
    assert (out.diff(dim=-1) >= -1e-6).all()


def test_inversion_keeps_the_background_black_and_inverts_the_head():
    x = batch(1)
    out = Acquisition()(x, torch.Generator().manual_seed(0), only="invert")
    background = x < 0.01
    assert out[background].max() < 0.05
    head = x > 0.3
    assert (out[head] < 0.7).float().mean() > 0.9        # bright tissue becomes dark


def test_bias_field_is_smooth_and_positive():
    field = bias_field(2, 64, torch.tensor([0.4, 0.1]), torch.Generator().manual_seed(0))
    assert field.shape == (2, 1, 64, 64) and (field > 0).all()
    assert field[0].log().abs().max() <= 0.4 + 1e-5
    assert field.diff(dim=-1).abs().max() < 0.1         # no jumps between neighbours


def test_unknown_transform_is_refused():
    with pytest.raises(ValueError, match="unknown transform"):
        Acquisition()(batch(1), only="warp")


def test_the_full_augmentation_is_deterministic_under_a_seed():
    x = batch(4)
    a = Acquisition()(x, torch.Generator().manual_seed(9))
    assert torch.equal(a, Acquisition()(x, torch.Generator().manual_seed(9)))


def test_warp_moves_a_mask_with_the_image():
    preset = TrainPreset(eval=EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,)))
    x = torch.zeros(2, 1, 55, 55)
    x[:, :, 10:25, 30:45] = 1.0
    img, mask = preset.warp(x, torch.Generator().manual_seed(0), x.clone())
    assert img.shape == mask.shape == (2, 1, 48, 48)
    torch.testing.assert_close(img, mask)


def test_train_preset_is_warp_then_jitter_then_normalise():
    preset = TrainPreset(eval=EvalPreset(size=48, channels=1, mean=(0.5,), std=(0.25,)))
    x = (batch(2, 55) * 255).to(torch.uint8)
    whole = preset(x, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    parts = preset.eval.normalise(preset.jitter(preset.warp(x.float() / 255, g)[0], g))
    torch.testing.assert_close(whole, parts)


def test_bf16_rule_follows_the_cpu_flag_and_the_request():
    assert cpu_has_bf16("flags : fpu avx512f avx512_bf16") and not cpu_has_bf16("flags : fpu avx2")
    cpu = torch.device("cpu")
    assert use_bf16(cpu, "auto", "flags : avx512_bf16") and not use_bf16(cpu, "auto", "flags : avx2")
    assert use_bf16(torch.device("cuda"), "auto", "")
    assert not use_bf16(cpu, "fp32", "avx512_bf16") and use_bf16(cpu, "bf16", "")


def test_the_figure_shows_every_transform(tmp_path):
    from PIL import Image
    from train.augment import figure
    crops = [np.array(synthetic.scan(i, size=80)) for i in range(2)]
    out = figure(crops, tmp_path / "aug.png", size=48)
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > img.height      # one column per transform


def test_named_settings_keep_shape_range_and_seed():
    from train.augment import ACQUISITIONS
    x = batch(6)
    for name, aug in ACQUISITIONS.items():
        a = aug(x, torch.Generator().manual_seed(3))
        assert a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1, name
        assert torch.equal(a, aug(x, torch.Generator().manual_seed(3))), name
    wide, standard = ACQUISITIONS["wide"], ACQUISITIONS["standard"]
    for field in ("p_curve", "p_gamma", "p_invert", "p_resample", "p_jpeg", "p_noise"):
        assert getattr(wide, field) >= getattr(standard, field), field


def test_plain_batch_applies_the_acquisition_when_asked():
    import numpy as np
    from brainmri.presets import EvalPreset, TrainPreset
    from train.augment import ACQUISITIONS
    from train.train import plain_batch
    preset = TrainPreset(eval=EvalPreset(size=32))
    crops = np.stack([(np.random.default_rng(i).random((36, 36)) * 200 + 30).astype(np.uint8)
                      for i in range(4)])
    labels = np.arange(4)
    cfg = {"batch_size": 4}

    def first(acquisition):
        gen = torch.Generator().manual_seed(0)
        x, y, _, _ = plain_batch(crops, labels, preset, cfg, acquisition, None, np.arange(4), None, gen)
        return x, y
    plain, y = first(None)
    always = ACQUISITIONS["standard"].__class__(p_invert=1.0)
    inverted, _ = first(always)
    assert plain.shape == inverted.shape == (4, 3, 32, 32) and torch.equal(y, torch.arange(4))
    assert not torch.allclose(plain, inverted)


def two_looks(n: int = 6, size: int = 48):
    """n uint8 crops with a black border: the first half dim (one source), the rest bright."""
    import numpy as np
    crops = []
    for i in range(n):
        tissue = np.random.default_rng(i).random((size, size))
        gain, offset = (120, 30) if i < n // 2 else (200, 55)
        crop = (tissue * gain + offset).astype(np.uint8)
        crop[:4], crop[-4:], crop[:, :4], crop[:, -4:] = 0, 0, 0, 0
        crops.append(crop)
    return np.stack(crops), np.array(["a"] * (n // 2) + ["b"] * (n - n // 2))


def test_look_swap_renders_a_crop_in_another_sources_landmarks():
    import numpy as np
    from brainmri.intensity import landmarks
    from train.augment import LookSwap
    crops, sources = two_looks()
    look = LookSwap.fit(crops, sources, p=1.0)
    assert look.marks.shape == (6, 5) and np.isfinite(look.marks).all()
    for i in range(6):
        out = look(crops[i], i, np.random.default_rng(i))
        assert out.shape == crops[i].shape and out.dtype == np.uint8
        assert out[crops[i] == 0].max() == 0                      # the background stays black
        got = landmarks(out) / 255
        others = look.marks[sources != sources[i]]
        assert np.abs(others - got).max(1).min() < 0.02           # some other-source crop's landmarks
        assert np.abs(look.marks[i] - got).max() > 0.05           # not its own any more
        order = np.argsort(crops[i][4:-4, 4:-4], axis=None, kind="stable")
        assert np.all(np.diff(out[4:-4, 4:-4].flatten()[order].astype(int)) >= 0)   # order kept


def test_look_swap_rate_seed_and_force():
    import numpy as np
    from train.augment import LookSwap
    crops, sources = two_looks()
    never = LookSwap.fit(crops, sources, p=0.0)
    assert all(np.array_equal(never(c, i, np.random.default_rng(0)), c) for i, c in enumerate(crops))
    assert not np.array_equal(never(crops[0], 0, np.random.default_rng(0), force=True), crops[0])
    half = LookSwap.fit(crops, sources, p=0.5)
    a = [half(c, i, np.random.default_rng(7)) for i, c in enumerate(crops)]
    b = [half(c, i, np.random.default_rng(7)) for i, c in enumerate(crops)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    rng = np.random.default_rng(1)
    swapped = [not np.array_equal(half(crops[0], 0, rng), crops[0]) for _ in range(200)]
    assert 0.35 < np.mean(swapped) < 0.65
    one_source = LookSwap.fit(crops, ["a"] * 6, p=1.0)            # nowhere else to take a look from
    assert np.array_equal(one_source(crops[0], 0, np.random.default_rng(0)), crops[0])


def test_mixstyle_keeps_shape_mixes_statistics_between_scans_and_is_seeded():
    from train.augment import MixStyle
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(1, 3, 8, 8, generator=g) * 0.5 + 1.0,
                   torch.randn(1, 3, 8, 8, generator=g) * 2.0 - 3.0])
    mu = x.mean((2, 3))
    mixed = []
    for seed in range(20):
        out = MixStyle(p=1.0, alpha=0.5, seed=seed)(x)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        # each scan's channel means move on the segment between the two scans' means
        m = out.mean((2, 3))
        low, high = torch.minimum(mu[0], mu[1]), torch.maximum(mu[0], mu[1])
        assert bool(((m >= low - 1e-4) & (m <= high + 1e-4)).all())
        # the normalised pattern (what lies under the style) is kept
        norm = lambda t: (t - t.mean((2, 3), keepdim=True)) / t.std((2, 3), keepdim=True)
        assert torch.allclose(norm(out), norm(x), atol=1e-3)
        mixed.append(not torch.allclose(out, x, atol=1e-4))
    assert sum(mixed) >= 5                          # some draws pair the two scans
    a, b = MixStyle(p=1.0, seed=3)(x), MixStyle(p=1.0, seed=3)(x)
    assert torch.equal(a, b)
    assert torch.equal(MixStyle(p=0.0)(x), x)
    same = x[:1].repeat(4, 1, 1, 1)                 # one style only: nothing to mix
    assert torch.allclose(MixStyle(p=1.0)(same), same, atol=1e-4)
    assert torch.equal(MixStyle(p=1.0)(x[:1]), x[:1])
    half = MixStyle(p=0.5, seed=1)
    assert 0.35 < np.mean([not torch.equal(half(x), x) for _ in range(200)]) < 0.65
    bf = MixStyle(p=1.0, seed=2)(x.bfloat16())
    assert bf.dtype == torch.bfloat16


def test_mixstyle_fires_only_while_the_model_trains_and_after_early_stages():
    from brainmri.models import ARCHS, build_model
    from train.augment import MixStyle, mixstyle_blocks
    assert mixstyle_blocks(ARCHS["baseline"].stages) == [0, 1]
    assert mixstyle_blocks(ARCHS["resnet50"].stages) == [4, 5]    # after layer1 and layer2
    torch.manual_seed(0)
    model = build_model("baseline", widths=(4, 8, 8))
    x = torch.rand(4, 1, 64, 64)
    model.eval()
    plain = model(x)
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    handles = MixStyle(p=1.0, alpha=0.5, seed=0).attach(model, [0, 1])
    assert torch.equal(model(x), plain)              # evaluation: unchanged
    model.train()
    model.trunk[:1].eval()                           # a frozen first block still mixes
    seen = []
    probe = model.trunk[1].register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    model(x)
    probe.remove()
    model.trunk[:1].train()
    with torch.no_grad():
        before = model.trunk[0](x)
    assert not torch.allclose(seen[0], before)       # the second block saw mixed statistics
    for h in handles:
        h.remove()
    model.load_state_dict(kept)                      # the training pass moved batch-norm statistics
    model.eval()
    assert torch.equal(model(x), plain)
    assert not any(k for k in model.state_dict() if "mix" in k)   # no parameters, no buffers


def test_consistency_loss_is_zero_for_identical_answers_and_bounded():
    import math
    from train.augment import consistency_loss
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4, generator=g)
    assert float(consistency_loss(a, a.clone())) == pytest.approx(0.0, abs=1e-6)
    assert float(consistency_loss(a, a + 3.0)) == pytest.approx(0.0, abs=1e-6)   # same softmax
    b = torch.randn(5, 4, generator=g)
    d = float(consistency_loss(a, b))
    assert 0 < d < math.log(2) and d == pytest.approx(float(consistency_loss(b, a)), rel=1e-5)
    far = torch.tensor([[30.0, 0, 0, 0]]), torch.tensor([[0, 30.0, 0, 0]])
    assert float(consistency_loss(*far)) == pytest.approx(math.log(2), rel=1e-3)
    a.requires_grad_(True)
    consistency_loss(a, b).backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0


def test_plain_batch_appends_a_view_in_another_look_for_consistency():
    import numpy as np
    from brainmri.presets import EvalPreset, TrainPreset
    from train.augment import LookSwap
    from train.train import plain_batch
    crops, sources = two_looks(4, 40)
    labels = np.arange(4)
    preset = TrainPreset(eval=EvalPreset(size=32))
    look = LookSwap.fit(crops, sources, p=0.0)
    gen = torch.Generator().manual_seed(0)
    x, y, _, _ = plain_batch(crops, labels, preset, {"batch_size": 4, "consistency": 1.0}, None,
                             look, np.arange(4), np.random.default_rng(0), gen)
    assert x.shape == (8, 3, 32, 32) and torch.equal(y[:4], y[4:])     # row i + 4: row i's view
    assert sorted(y[:4].tolist()) == [0, 1, 2, 3]
    assert not torch.allclose(x[:4], x[4:])
