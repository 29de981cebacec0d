"""The model registry. Every model is `trunk -> parameter-free pool -> head`.

That shape is what makes explanations cheap: the trunk ends at the Grad-CAM target layer,
and the gradient of any class score with respect to that layer's activations comes from the
pool and the small head alone (for global average pooling it is even constant over space);
the trunk runs once, without autograd.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models import resnet50 as tv_resnet50

from .classes import CLASSES
from .presets import IMAGENET_MEAN, IMAGENET_STD, EvalPreset


def grid_pool(cells: int) -> nn.Sequential:
    """(B, K, h, w) -> (B, K * cells * cells): average over a cells x cells grid, then flatten.
    cells=1 is global average pooling."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(cells), nn.Flatten())


class Classifier(nn.Module):
    """`logits = head(pool(trunk(x)))`; `trunk(x)` is the CAM target layer's output.

    `pool` has no parameters, so the gradient of a class score with respect to the trunk's
    output needs only `pool` and `head`: the trunk runs once, without autograd.
    """

    def __init__(self, trunk: nn.Module, head: nn.Module, pool: nn.Module | None = None):
        super().__init__()
        self.trunk, self.head = trunk, head
        self.pool = pool if pool is not None else grid_pool(1)

    def classify(self, acts: torch.Tensor) -> torch.Tensor:   # (B, K, h, w) -> (B, classes)
        return self.head(self.pool(acts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:       # (B, C, S, S) -> (B, classes)
        return self.classify(self.trunk(x))


def last_linear(model: nn.Module) -> nn.Linear:
    """The layer that produces the logits (the last `nn.Linear` of `model.head`)."""
    layers = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    if not layers or layers[-1].bias is None:
        raise ValueError("the model's head has no final linear layer with a bias")
    return layers[-1]


@contextmanager
def last_inputs_recorded(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of `model` appends what its last linear layer was
    given ((B, F) float32, detached, on the CPU) to the list it yields."""
    seen: list[torch.Tensor] = []
    hook = last_linear(model).register_forward_hook(
        lambda _m, inputs, _out: seen.append(inputs[0].detach().float().cpu()))
    try:
        yield seen
    finally:
        hook.remove()


def build_baseline(num_classes: int = len(CLASSES), in_channels: int = 1,
                   widths: tuple[int, int, int] = (32, 64, 128), dropout: float = 0.3,
                   grid: int = 4, dilation: tuple[int, int, int] = (1, 1, 1)) -> Classifier:
    """The study's small CNN: three convolutional layers, then fully connected layers.

    The fully connected layers see a `grid` x `grid` average of the last conv layer, so they
    can use where things are (three conv layers alone see too little of the slice for
    global average pooling to work). `dilation` spreads each conv layer's kernel: the layer
    sees further with the same weights (`receptive_field`).
    """
    c1, c2, c3 = widths
    d1, d2, d3 = dilation

    def block(cin: int, cout: int, k: int, stride: int, pool: bool, d: int) -> nn.Sequential:
        layers = [nn.Conv2d(cin, cout, k, stride, d * (k // 2), dilation=d, bias=False),
                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

    trunk = nn.Sequential(block(in_channels, c1, 5, 2, True, d1), block(c1, c2, 3, 1, True, d2),
                          block(c2, c3, 3, 1, False, d3))
    head = nn.Sequential(nn.Linear(c3 * grid * grid, 256), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(256, num_classes))
    return Classifier(trunk, head, grid_pool(grid))


def receptive_field(trunk: nn.Module) -> int:
    """Side, in input pixels, of the square one unit of `trunk`'s output sees (its conv and
    pooling layers in order; for a chain of layers, not for ResNet's branches)."""
    field, jump = 1, 1
    for m in trunk.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, d = (m.kernel_size, m.stride, m.dilation)
            k, s, d = (v if isinstance(v, int) else v[0] for v in (k, s, d))
            field += (k - 1) * d * jump
            jump *= s
    return field


def build_resnet50(num_classes: int = len(CLASSES), in_channels: int = 3,
                   v1_strides: bool = True, dilate_layer4: bool = False) -> Classifier:
    """torchvision ResNet-50 as trunk (conv1..layer4) + a new linear head.

    `v1_strides` puts the stride of layer2..4's first block in its 1x1 conv (the original
    ResNet v1, which the Keras ImageNet weights were trained with); torchvision's v1.5
    strides in the 3x3 conv. `dilate_layer4` trades layer4's stride for dilation (as
    torchvision's `replace_stride_with_dilation`): the last map has output stride 16, 12x12
    at 192 px instead of 6x6, for finer heatmaps. Neither is in a state dict, so a
    checkpoint records both.
    """
    if in_channels != 3:
        raise ValueError(f"resnet50 takes 3 input channels, got {in_channels}")
    net = tv_resnet50(weights=None)
    if v1_strides:
        for layer in (net.layer2, net.layer3, net.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    if dilate_layer4:
        first = net.layer4[0]
        first.conv1.stride = first.conv2.stride = first.downsample[0].stride = (1, 1)
        for block in list(net.layer4)[1:]:
            block.conv2.dilation, block.conv2.padding = (2, 2), (2, 2)
    trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                          net.layer1, net.layer2, net.layer3, net.layer4)
    return Classifier(trunk, nn.Linear(2048, num_classes))


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d into the Conv2d registered just before it, in place.

    In our architectures (torchvision's Bottleneck, the stem, `downsample`, the baseline's
    blocks) each batch-norm directly follows its convolution, in registration order and in
    the forward. The folded model computes the same function (to float rounding) with one
    memory pass less per convolution: for inference only; the batch-norm becomes Identity.
    """
    if model.training:
        raise ValueError("fold_batch_norm needs a model in eval mode")
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return model


def resnet50_trunk_keys() -> dict[str, str]:
    """torchvision resnet50 state-dict prefixes -> our `trunk.N` prefixes."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    return {name: f"trunk.{i}" for i, name in enumerate(names)}


def resnet50_pretrained(source: str = "auto") -> tuple[dict[str, torch.Tensor], dict]:
    """ImageNet weights from `source` (`brainmri.imagenet.resnet50_imagenet`: keras-npm,
    torchvision or auto) -> (our trunk's state dict, the build kwargs those weights need)."""
    from .imagenet import resnet50_imagenet
    state, v1 = resnet50_imagenet(source)
    prefixes = resnet50_trunk_keys()
    trunk = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in prefixes:
            trunk[f"{prefixes[head]}.{rest}"] = value
    return trunk, {"v1_strides": v1}


@dataclass(frozen=True)
class Arch:
    """Everything the library, the trainer, the app and the tests need to know about one
    architecture; adding a model is one `register(Arch(...))`.

    The CAM target layer is the trunk's last block (the `Classifier` contract); the fused
    Layer-CAM's finer layer is the last block with twice that map's side (`cam.fusion_index`).
    """
    name: str                          # registry key, `--model` value, checkpoints/<name>.safetensors
    label: str                         # display name ("ResNet-50")
    build: Callable[..., Classifier]
    in_channels: int
    size: int                          # default input side, pixels
    description: str
    stages: tuple[str, ...]            # one stage name per trunk block, in order (freezing by name)
    mean: tuple[float, ...]            # input normalisation, one value per channel
    std: tuple[float, ...]
    # source -> (state dict over part of the model, build kwargs); None: trained from scratch.
    pretrained: Callable[[str], tuple[dict[str, torch.Tensor], dict]] | None = None
    small: dict = field(default_factory=dict)   # build kwargs of a small instance (tests)
    default: bool = False              # the model offered first where several are loaded
    dilation: str | None = None        # build kwarg trading the last stage's stride for dilation

    def blocks_through(self, freeze: str) -> int:
        """How many leading trunk blocks `freeze` keeps fixed: "none", "all-but-head", or stage
        names joined by "+", everything up to the end of the last one named ("stem+layer2":
        the stem, layer1 and layer2)."""
        if freeze == "none":
            return 0
        if freeze == "all-but-head":
            return len(self.stages)
        names = freeze.split("+")
        unknown = [n for n in names if n not in self.stages]
        if unknown:
            raise ValueError(f"{self.name} has no stage {unknown[0]!r}; stages: "
                             + ", ".join(dict.fromkeys(self.stages)))
        return 1 + max(i for i, s in enumerate(self.stages) if s in names)

    def blocks_before(self, stage: str) -> int:
        """Index of the first trunk block of `stage` (the blocks before it stay frozen)."""
        if stage not in self.stages:
            raise ValueError(f"{self.name} has no stage {stage!r}")
        return self.stages.index(stage)

    def preset(self, size: int | None = None) -> EvalPreset:
        """The evaluation preset for this architecture at `size` (default: its own)."""
        return EvalPreset(size=size or self.size, channels=self.in_channels,
                          mean=tuple(self.mean), std=tuple(self.std))


ARCHS: dict[str, Arch] = {}


def register(arch: Arch) -> Arch:
    """Add `arch` to the registry (replacing one of the same name) and return it."""
    ARCHS[arch.name] = arch
    return arch


register(Arch("baseline", "Baseline CNN", build_baseline, 1, 160,
              "3 conv layers (5x5 s2, 3x3, 3x3; BN, ReLU) + 2 fully connected on a 4x4 grid, from scratch",
              stages=("block1", "block2", "block3"), mean=(0.5,), std=(0.25,),
              small={"widths": [8, 16, 32]}))
register(Arch("resnet50", "ResNet-50", build_resnet50, 3, 224,
              "ResNet-50 (v1 strides) from ImageNet weights, new linear head",
              stages=("stem",) * 4 + ("layer1", "layer2", "layer3", "layer4"),
              mean=IMAGENET_MEAN, std=IMAGENET_STD, pretrained=resnet50_pretrained,
              small={"v1_strides": True}, default=True, dilation="dilate_layer4"))


class ArchField(Mapping[str, str]):
    """One field of every registered architecture by name (`brainmri.models.ARCHS`), read live,
    so an architecture registered after import is named too."""

    def __init__(self, field: str):
        self.field = field

    def __getitem__(self, name: str) -> str:
        return getattr(ARCHS[name], self.field)

    def __iter__(self) -> Iterator[str]:
        return iter(ARCHS)

    def __len__(self) -> int:
        return len(ARCHS)


MODEL_LABELS = ArchField("label")                      # "resnet50" -> "ResNet-50"


def default_model(names: Iterable[str] | None = None) -> str:
    """The model to offer first among `names` (default: every registered one): the one whose
    record declares `default`, else the first of `names`. Raises ValueError when empty."""
    names = list(ARCHS if names is None else names)
    if not names:
        raise ValueError("no models to choose a default from")
    return next((n for n in names if n in ARCHS and ARCHS[n].default), names[0])


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHS)}")
    return ARCHS[name]


def build_model(arch: str, **kwargs) -> Classifier:
    spec = get_arch(arch)
    kwargs.setdefault("in_channels", spec.in_channels)
    return spec.build(**kwargs)


def pretrained_model(arch: str, source: str = "auto") -> tuple[Classifier, dict]:
    """A new `arch` model with its pretrained weights (if it has any) -> (model, build kwargs).
    Only the head may be left at its initialisation."""
    spec = get_arch(arch)
    if spec.pretrained is None:
        return build_model(arch), {}
    state, kwargs = spec.pretrained(source)
    model = build_model(arch, **kwargs)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or not all(k.startswith("head.") for k in missing):
        raise ValueError(f"{arch} pretrained weights do not fit: missing {missing}, "
                         f"unexpected {unexpected}")
    return model, kwargs


def target_layer(model: Classifier) -> nn.Module:
    """The Grad-CAM target layer: the last block of the trunk."""
    return model.trunk[-1]
