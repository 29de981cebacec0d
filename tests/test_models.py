"""brainmri.models: the registry, forward shapes, the CAM target layer, ResNet v1 strides."""
from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models import resnet50 as tv_resnet50

from brainmri.classes import CLASSES
from brainmri.models import (ARCHS, Classifier, build_model, receptive_field, resnet50_trunk_keys,
                             target_layer)


@pytest.fixture(scope="module")
def models() -> dict[str, Classifier]:
    torch.manual_seed(0)
    return {name: build_model(name).eval() for name in ARCHS}


def test_registry_lists_both_archs():
    assert set(ARCHS) == {"baseline", "resnet50"}
    assert (ARCHS["baseline"].in_channels, ARCHS["resnet50"].in_channels) == (1, 3)
    for name, spec in ARCHS.items():
        assert spec.name == name and spec.size > 0 and spec.description


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_forward_shape_with_registered_channels(models, arch):
    spec = ARCHS[arch]
    x = torch.randn(2, spec.in_channels, 64, 64)         # (B, C, S, S)
    with torch.no_grad():
        logits = models[arch](x)
    assert logits.shape == (2, len(CLASSES))
    assert torch.isfinite(logits).all()


def test_baseline_takes_three_channels_resnet_only_three():
    assert build_model("baseline", in_channels=3)(torch.randn(1, 3, 48, 48)).shape == (1, 4)
    assert build_model("baseline", num_classes=7)(torch.randn(1, 1, 48, 48)).shape == (1, 7)
    with pytest.raises(ValueError, match="3 input channels"):
        build_model("resnet50", in_channels=1)


def test_dilated_baseline_sees_further_with_the_same_weights_and_map():
    """Kernels spread by `dilation` keep every weight's shape and the CAM map's size; the field
    one map cell sees grows as the layer arithmetic says (5x5 s2, pool, 3x3, pool, 3x3)."""
    plain, spread = build_model("baseline"), build_model("baseline", dilation=(1, 2, 2))
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in spread.state_dict().items()}
    x = torch.randn(1, 1, 160, 160)
    assert plain.trunk(x).shape == spread.trunk(x).shape == (1, 128, 20, 20)
    assert receptive_field(plain.trunk) == 5 + 2 + 2 * 4 + 4 + 2 * 8 == 35
    assert receptive_field(spread.trunk) == 5 + 2 + 2 * 2 * 4 + 4 + 2 * 2 * 8 == 59
    spread.load_state_dict(plain.state_dict())


def test_unknown_arch_is_named():
    with pytest.raises(KeyError, match="vgg16"):
        build_model("vgg16")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_target_layer_output_is_4d_and_drives_the_head(models, arch):
    model = models[arch]
    x = torch.randn(2, ARCHS[arch].in_channels, 64, 64)
    seen = []
    handle = target_layer(model).register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    (acts,) = seen
    assert acts.ndim == 4 and acts.shape[0] == 2 and min(acts.shape[2:]) >= 1   # (B, K, h, w)
    assert target_layer(model) is model.trunk[-1]
    with torch.no_grad():                     # the trunk ends at the target layer
        assert torch.equal(model.trunk(x), acts)
    assert logits.shape == (2, len(CLASSES))


def test_resnet50_head_sees_the_global_average_of_the_target_layer(models):
    """Why Grad-CAM needs no backward pass through the trunk: logits = head(mean_hw(acts))."""
    model = models["resnet50"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        acts = target_layer(model)(model.trunk[:-1](x))
        assert torch.allclose(model.head(acts.mean(dim=(2, 3))), model(x), atol=1e-5)


def test_resnet50_target_layer_is_layer4_with_2048_channels(models):
    with torch.no_grad():
        acts = models["resnet50"].trunk(torch.randn(1, 3, 224, 224))
    assert acts.shape == (1, 2048, 7, 7)


def test_v1_strides_move_the_stride_to_the_1x1_conv(models):
    v1, v15 = models["resnet50"], build_model("resnet50", v1_strides=False)   # v1 is the default
    for index in (5, 6, 7):                   # trunk.5..7 = layer2..layer4
        block_v1, block_v15 = v1.trunk[index][0], v15.trunk[index][0]
        assert (block_v1.conv1.stride, block_v1.conv2.stride) == ((2, 2), (1, 1))
        assert (block_v15.conv1.stride, block_v15.conv2.stride) == ((1, 1), (2, 2))
    # Strides are not in a state dict (why checkpoints record v1_strides), yet they change outputs.
    assert v1.state_dict().keys() == v15.state_dict().keys()
    v15.load_state_dict(v1.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert v1(x).shape == v15.eval()(x).shape
        assert not torch.allclose(v1.trunk(x), v15.trunk(x))


def test_torchvision_resnet50_weights_map_onto_the_trunk(models):
    tv = tv_resnet50(weights=None).state_dict()
    prefixes = resnet50_trunk_keys()
    renamed = {}
    for key, value in tv.items():
        head, rest = key.split(".", 1)
        if head != "fc":
            renamed[f"{prefixes[head]}.{rest}"] = value
    ours = models["resnet50"].state_dict()
    assert set(renamed) == {k for k in ours if not k.startswith("head.")}   # a strict load fits
    for key, value in renamed.items():
        assert ours[key].shape == value.shape, key


@pytest.mark.parametrize("arch", ["resnet50", "baseline"])
def test_fold_batch_norm_keeps_the_function_and_leaves_no_batch_norm(arch):
    from brainmri.models import fold_batch_norm
    torch.manual_seed(0)
    model = build_model(arch)
    for module in model.modules():            # non-trivial statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.rand(2, 3 if arch == "resnet50" else 1, 64, 64)
    with torch.no_grad():
        before, acts_before = model(x), model.trunk(x)
        folded = fold_batch_norm(copy.deepcopy(model))
        after, acts_after = folded(x), folded.trunk(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    for a, b in ((before, after), (acts_before, acts_after)):     # float rounding only
        assert float((a - b).abs().max()) <= 1e-5 * float(a.abs().max())
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(build_model(arch))


def test_last_inputs_are_recorded_only_inside_the_block():
    from brainmri.models import last_inputs_recorded, last_linear
    model = build_model("baseline").eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad(), last_inputs_recorded(model) as seen:
        logits = model(x)
    assert len(seen) == 1 and seen[0].shape == (2, last_linear(model).in_features)
    assert torch.allclose(last_linear(model)(seen[0]), logits, atol=1e-5)
    with torch.no_grad():
        model(x)                                       # the hook is gone after the block
    assert len(seen) == 1
