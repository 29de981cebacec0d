"""What every reader of an input shares: its error, its limits and the description of a file.

`brainmri.io` (pictures, and the dispatch to the other readers) and `brainmri.volumes` (DICOM,
NIfTI) both build on this module, so neither needs the other to say why an input is refused.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAX_BYTES = 50 * 1024 * 1024          # uploads larger than this are refused unread
# Declared size cap, read from the header before any pixel is decoded: 4096 x 4096, over twice the
# longest side in the Kaggle collection (1920 px); larger files (and decompression bombs) are refused unread.
MAX_PIXELS = 4096 * 4096
MIN_SIDE = 16                         # smaller than this carries no anatomy
MAX_SLICES = 512                      # slices of a scan, pages of a multi-page TIFF
MAX_JPEG_SEGMENTS = 1024              # segments before a JPEG's first scan (tables, EXIF, ICC parts...)
MAX_JPEG_PADDING = 2**16              # bytes between those segments (fill bytes and stray ones)
MAX_JPEG_SCANS = 32                   # scans (libjpeg's progressive JPEGs have 6 in grey, 10 in colour)


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


def check_jpeg_segments(data: bytes, what: str = "this JPEG file",
                        advice: str = "save the image again as PNG or JPEG") -> None:
    """ImageLoadError when a JPEG holds more segments, or more bytes between them, before its
    first scan than an image has, or more scans. Pillow reads those segments one at a time in
    Python, and the bytes between them one at a time, so a file of millions of empty segments
    would hold a worker; here only their markers and lengths are read, up to the caps. Markers
    without a length (RSTn, TEM) count as segments. libjpeg decodes each scan over the whole
    picture, so a small progressive file of many scans takes time without bound (libjpeg-turbo's
    "LJT-01-003"); the scans are counted by their markers from the first on, which compressed
    data cannot hold (a 0xFF there is followed by 0x00 or a restart marker)."""
    first = _first_scan(data)
    if isinstance(first, str):
        raise ImageLoadError(f"{what} holds more than {first} before its picture, far more than "
                             f"an image has; {advice}")
    if first is not None and data.count(b"\xff\xda", first) > MAX_JPEG_SCANS:
        raise ImageLoadError(f"{what} holds more than {MAX_JPEG_SCANS} scans, far more than an image "
                             f"has (a progressive JPEG has about ten); {advice}")


def _first_scan(data: bytes) -> int | str | None:
    """Where a JPEG's first scan begins, walking its segments' markers and lengths up to the
    caps; what was over a cap ("1,024 segments"), or None where the walk ends without a scan
    (left to the decoder)."""
    at, segments, padding = 2, 0, 0
    while at < len(data) and segments <= MAX_JPEG_SEGMENTS and padding <= MAX_JPEG_PADDING:
        mark = data.find(b"\xff", at)
        if mark < 0:
            return None
        if data[mark + 1:mark + 2] == b"\xff":                    # fill bytes: the last 0xFF
            run = data[mark:mark + MAX_JPEG_PADDING + 2]         # is the marker's own
            mark += len(run) - len(run.lstrip(b"\xff")) - 1
        padding += mark - at
        if mark + 1 >= len(data):
            return None
        if data[mark + 1] == 0xDA:                                  # the first scan begins
            return mark
        segments += 1
        marker = data[mark + 1]
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD8:    # no length follows
            at = mark + 2
        elif mark + 4 <= len(data):
            at = mark + 2 + struct.unpack_from(">H", data, mark + 2)[0]
        else:
            return None
    if segments > MAX_JPEG_SEGMENTS:
        return f"{MAX_JPEG_SEGMENTS:,} segments"
    return f"{MAX_JPEG_PADDING // 1024} KiB of stray bytes" if padding > MAX_JPEG_PADDING else None