"""Reading an image from whatever a user hands us, validated at the boundary.

Every reader returns a PIL image; the format is decided by the file's content, never its
name (some `.jpg` files in the Kaggle set are PNGs). Problems raise `ImageLoadError` with a
message fit to show a user: it names what is wrong, not a server path or a stack trace.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 50 * 1024 * 1024          # uploads larger than this are refused unread
MAX_PIXELS = 64_000_000               # decoded size cap, e.g. 8000 x 8000; stops decompression bombs
MIN_SIDE = 16                         # smaller than this carries no anatomy

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An input that cannot be turned into an image; the message is safe to show a user."""


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageLoadError(
            f"image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels")
    if min(width, height) < MIN_SIDE:
        raise ImageLoadError(
            f"image is only {width}x{height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")


def _from_array(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(f"array of shape {array.shape} is not an HxW or HxWx3/4 image")
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        lo, hi = np.nanmin(array), np.nanmax(array)
        array = np.zeros_like(array) if hi <= lo else (array - lo) / (hi - lo) * 255.0
        array = np.nan_to_num(array).round().astype(np.uint8)
    return Image.fromarray(array)


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageLoadError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_size(image.width, image.height, max_pixels)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)      # animated GIF/WebP, multi-page TIFF: the first frame
            image.load()
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"not a readable image ({type(error).__name__})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"the image file is damaged or truncated ({error})") from None
    return ImageOps.exif_transpose(image)


def load_image(source: ImageSource, *, max_bytes: int = MAX_BYTES,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Return a decoded PIL image (any mode) from a path, raw bytes, a PIL image or an array.

    Arrays are HxW (greyscale) or HxWx3/4 (RGB/RGBA); non-uint8 arrays are min-max scaled.
    """
    if isinstance(source, Image.Image):
        _check_size(source.width, source.height, max_pixels)
        return source
    if isinstance(source, np.ndarray):
        image = _from_array(source)
        _check_size(image.width, image.height, max_pixels)
        return image
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"no such file: {path.name}")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageLoadError(f"file is {size / 2**20:.1f} MiB, over the limit of "
                                 f"{max_bytes / 2**20:.0f} MiB")
        data = path.read_bytes()
    else:
        raise ImageLoadError(f"cannot read an image from a {type(source).__name__}")
    if len(data) > max_bytes:
        raise ImageLoadError(f"file is {len(data) / 2**20:.1f} MiB, over the limit of "
                             f"{max_bytes / 2**20:.0f} MiB")
    return _decode(data, max_pixels)


def to_grey(image: Image.Image) -> np.ndarray:
    """Luminance of any PIL mode as an (H, W) uint8 array; 16-bit images are min-max scaled."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _from_array(np.asarray(image)).convert("L").__array__()
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("L"))
