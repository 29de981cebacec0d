"""What every reader of an input shares: its error, its limits and the description of a file.

`brainmri.io` (pictures, and the dispatch to the other readers) and `brainmri.volumes` (DICOM,
NIfTI) both build on this module, so neither needs the other to say why an input is refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BYTES = 50 * 1024 * 1024          # uploads larger than this are refused unread
# Declared size cap, read from the header before any pixel is decoded: 4096 x 4096, over twice the
# longest side in the Kaggle collection (1920 px); larger files (and decompression bombs) are refused unread.
MAX_PIXELS = 4096 * 4096
# Pictures longer than this are reduced by whole factors as they are decoded, for every answer
# (the app, the batch command, the studies read alike); the Kaggle collection's longest is 1920.
WORK_SIDE = 2048
MIN_SIDE = 16                         # smaller than this carries no anatomy
MAX_SLICES = 512                      # slices of a scan, pages of a multi-page TIFF
MAX_VOXELS = 2**27                    # voxels of a volume or scan: slices x rows x columns


class ImageLoadError(ValueError):
    """An input that cannot be turned into an image; the message is safe to show a user."""


@dataclass(frozen=True)
class SourceInfo:
    """What a file holds, for a UI to offer a frame or slice chooser before loading.

    kind: "image", "dicom" or "nifti". shape: image/DICOM (frames, H, W); NIfTI (X, Y, Z) in
    RAS+ order, so slices along `axis` a number shape[a]. frames: choices for `frame`
    (DICOM, multi-page TIFF) or slices along the acquired axis (NIfTI,
    `volumes.acquired_axis`); default: the index used when none is given.
    """
    kind: str
    format: str
    shape: tuple[int, ...]
    frames: int
    default: int


def check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageLoadError(
            f"image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels; "
            "a brain MRI slice is far smaller: export it at its own resolution")
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(
            f"image is only {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")


def check_index(name: str, index: int, count: int) -> int:
    if not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ImageLoadError(f"{name} {index!r} is out of range: this file has {count} "
                             f"(0 to {count - 1})")
    return int(index)
