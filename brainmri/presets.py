"""Preprocessing presets shared by training, evaluation and inference.

Canonical input representation: every image becomes single-channel luminance, cropped to the
head. Why: the Kaggle set's colour mode, image size and black border follow the *source
collection* (greyscale figshare tumours, RGB Br35H/SARTAJ normals), not the anatomy. MRI is a
single-channel signal; any colour in these files is an export artefact. Converting to
luminance makes a greyscale and an RGB copy of one picture the same tensor, and cropping to
the head removes the border and most of the size cue. ImageNet models get the luminance
replicated to three channels and standard ImageNet normalisation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .intensity import standardise
from .io import WORK_SIDE, ImageSource, load_image, to_grey
from .localisation import MIN_HEAD_SHARE, largest_bright_blob
from .shifts import blur as gaussian_blur

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def head_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1), x1/y1 exclusive, of the largest bright blob: the head.

    Small separate blobs (burnt-in text, corner markers) are left out. Falls back to the
    whole image when no blob's bounding box covers `MIN_HEAD_SHARE` of it.
    """
    h, w = grey.shape
    blob, scale, (sh, sw) = largest_bright_blob(grey)
    if blob is None:
        return 0, 0, w, h
    x, y, bw, bh = cv2.boundingRect(blob)
    if bw * bh < MIN_HEAD_SHARE * sh * sw:
        return 0, 0, w, h
    s = 1.0 if scale >= 1 else 1.0 / scale
    margin = 0.02 * max(bw, bh) * s
    x0, y0 = max(0, int(x * s - margin)), max(0, int(y * s - margin))
    x1, y1 = min(w, int(np.ceil((x + bw) * s + margin))), min(h, int(np.ceil((y + bh) * s + margin)))
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Prepared:
    """One image ready for a model, and the geometry to map a heatmap back onto it."""
    tensor: torch.Tensor      # (C, S, S) float32, normalised
    grey: np.ndarray          # (H, W) uint8, the whole input image as luminance
    box: tuple[int, int, int, int]   # the crop (x0, y0, x1, y1) in input pixels


@dataclass(frozen=True)
class EvalPreset:
    """Deterministic preprocessing: luminance -> head crop -> resize to `size` -> normalise.

    The one preset used by evaluation and inference alike. Output: (channels, size, size)
    float32. Stored in every checkpoint and rebuilt from it with `EvalPreset.from_dict`.
    """
    size: int = 224
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_to_head: bool = True
    standardise: bool = False       # in-head intensity landmarks onto fixed ones (brainmri.intensity)
    blur: float = 0.0               # Gaussian blur of the crop, sigma this share of its longer side

    def crop(self, grey: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
        """(H, W) uint8 -> (the head crop as uint8, standardised and blurred when the preset says
        so, its box)."""
        box = head_box(grey) if self.crop_to_head else (0, 0, grey.shape[1], grey.shape[0])
        x0, y0, x1, y1 = box
        crop = standardise(grey[y0:y1, x0:x1]) if self.standardise else grey[y0:y1, x0:x1]
        return (gaussian_blur(crop, None, self.blur) if self.blur else crop), box

    @property
    def cache_tag(self) -> str:
        """What sets this preset's crops apart from plain ones, for cache file names."""
        return ("-std" if self.standardise else "") + (f"-blur{self.blur:g}" if self.blur else "")

    def resize(self, grey: np.ndarray, size: int | None = None) -> np.ndarray:
        size = size or self.size
        h, w = grey.shape
        interp = cv2.INTER_AREA if max(h, w) > size else cv2.INTER_LINEAR
        return cv2.resize(grey, (size, size), interpolation=interp)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 1, S, S) float in [0, 1] -> (..., channels, S, S) normalised."""
        x = x.expand(*x.shape[:-3], self.channels, *x.shape[-2:])
        mean = torch.tensor(self.mean[: self.channels], dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std[: self.channels], dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std

    def from_crop(self, crop: np.ndarray) -> torch.Tensor:
        """A head crop (h, w) uint8 -> (channels, size, size) float32."""
        x = torch.from_numpy(np.ascontiguousarray(self.resize(crop))).float().div_(255.0)
        return self.normalise(x[None]).contiguous()

    def prepare(self, source: ImageSource) -> Prepared:
        grey = to_grey(load_image(source, max_side=WORK_SIDE))
        crop, box = self.crop(grey)
        return Prepared(self.from_crop(crop), grey, box)

    def __call__(self, source: ImageSource) -> torch.Tensor:
        return self.prepare(source).tensor

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalPreset":
        """A checkpoint's stored preset (`to_dict`, through JSON: tuples come back as lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class TrainPreset:
    """Augmentation for training, applied to cached head crops of `eval.size * 8/7` pixels.

    It models how scans differ between hospitals and exports rather than inventing anatomy:
    scale and aspect jitter of the crop, left-right mirroring (the Kaggle set holds mirrored
    copies already), small rotations, and intensity changes (brightness, contrast, gamma,
    blur, noise). Input (B, 1, s, s) uint8 -> (B, channels, size, size) float32.
    """
    eval: EvalPreset = field(default_factory=EvalPreset)
    scale: tuple[float, float] = (0.75, 1.0)
    rotate_deg: float = 10.0
    brightness: float = 0.2
    contrast: float = 0.25
    gamma: float = 0.3
    blur_p: float = 0.2
    noise_std: float = 0.03

    def __post_init__(self):
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale (the crop's area, LOW HIGH) needs 0 < LOW <= HIGH, not {low} {high}")

    @property
    def cache_size(self) -> int:
        return round(self.eval.size * 8 / 7)

    def warp(self, x: torch.Tensor, generator: torch.Generator | None = None,
             masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Random affine crop of (B, 1, s, s) float images: scale, aspect, shift, rotation and
        mirror in one sampling grid, output (B, 1, size, size). `masks` (B, M, s, s), if given,
        go through the same grid (so a box drawn on the crop follows the scan)."""
        b, g = x.shape[0], generator
        rand = lambda *shape: torch.rand(*shape, generator=g)           # noqa: E731
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * rand(b)
        aspect = torch.exp((rand(b) - 0.5) * 0.2)
        sx, sy = (area * aspect).sqrt(), (area / aspect).sqrt()
        tx, ty = (1 - sx) * (2 * rand(b) - 1), (1 - sy) * (2 * rand(b) - 1)
        angle = (2 * rand(b) - 1) * np.deg2rad(self.rotate_deg)
        flip = torch.where(rand(b) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * sx * flip, -sin * sy, tx], 1),
                             torch.stack([sin * sx * flip, cos * sy, ty], 1)], 1)
        size = self.eval.size
        grid = F.affine_grid(theta, (b, 1, size, size), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if masks is not None:
            masks = F.grid_sample(masks.float(), grid, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)
        return x, masks

    def jitter(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Intensity changes of (B, 1, S, S) images in [0, 1]: contrast and brightness around
        the image mean, gamma, occasional blur, noise; output in [0, 1]."""
        b, g = x.shape[0], generator
        rand = lambda *shape: torch.rand(*shape, generator=g)           # noqa: E731
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = 1 + (2 * rand(b, 1, 1, 1) - 1) * self.contrast
        br = (2 * rand(b, 1, 1, 1) - 1) * self.brightness
        x = ((x - mean) * c + mean + br * mean).clamp(0, 1)
        gam = torch.exp((2 * rand(b, 1, 1, 1) - 1) * self.gamma)
        x = x.clamp_min(1e-6) ** gam
        blur = rand(b) < self.blur_p
        if blur.any():
            k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
            kernel = (k[:, None] * k[None, :]).view(1, 1, 5, 5)
            x[blur] = F.conv2d(F.pad(x[blur], (2, 2, 2, 2), mode="replicate"), kernel)
        return (x + torch.randn(x.shape, generator=g) * self.noise_std * rand(b, 1, 1, 1)).clamp(0, 1)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x, _ = self.warp(batch.float().div(255.0), generator)             # (B, 1, size, size)
        return self.eval.normalise(self.jitter(x, generator)).contiguous()
