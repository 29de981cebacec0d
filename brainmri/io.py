"""Reading an image from whatever a user hands us, validated at the boundary.

    from brainmri.io import load_image, describe
    load_image("scan.jpg")                         # PIL image, any mode
    load_image("series.dcm", frame=3)              # DICOM: one frame, windowed to 8-bit "L"
    load_image("head.nii.gz", axis=2, slice_index=40)   # NIfTI: one slice, 8-bit "L"
    describe("head.nii.gz")                        # SourceInfo(kind="nifti", shape=(X, Y, Z), ...)

Formats: JPEG, PNG (8/16-bit), BMP, TIFF (multi-page: `frame`), WebP, GIF (still only), PPM,
JPEG 2000; DICOM and NIfTI-1/2 (`.nii`, `.nii.gz`) via `brainmri.volumes`. The format is
decided by the file's content, never its name (some `.jpg` files in the Kaggle set are PNGs).
Problems raise `ImageLoadError` with a message fit to show a user: it names what is wrong,
not a server path or a stack trace.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .formats import GIF_FRAMES_SAID, check_opened, check_structure, jpeg2000_levels
from .inputs import (MAX_BYTES, MAX_PIXELS, MAX_SLICES, MIN_SIDE, WORK_SIDE,  # noqa: F401
                     ImageLoadError, SourceInfo, check_index, check_size)

# Only these Pillow decoders run on uploads: no EPS (Ghostscript), no exotic plugins.
# (JPEG covers MPO, the multi-picture JPEG of phone cameras: its frame 0 is the photo.)
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "PPM", "JPEG2000")
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")     # several frames there means an animation
DAMAGED = (OSError, SyntaxError, ValueError, EOFError)   # what Pillow raises for a damaged file
ACCEPTED = "JPEG, PNG, BMP, TIFF, WebP, DICOM or NIfTI"
NOT_IMAGES = ((b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive or Office document"),
              (b"PK\x05\x06", "an empty ZIP archive"), (b"\x1f\x8b", "a gzip archive"),
              (b"Rar!", "a RAR archive"), (b"7z\xbc\xaf", "a 7-Zip archive"),
              (b"\x7fELF", "a program"), (b"MZ", "a Windows program"),
              (b"%!PS", "a PostScript document"), (b"\xd0\xcf\x11\xe0", "an Office document"))

ImageSource = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]


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


def what_is(data: bytes) -> str | None:
    """A name for common non-image content ("a PDF document", "a text file"), else None."""
    for magic, name in NOT_IMAGES:
        if data.startswith(magic):
            return name
    head = data[:4096]
    if b"\0" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return "an SVG/HTML/XML document" if text.lstrip().startswith("<") else "a text file"
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Pillow's lazy open: the header only, with the size checked before any pixel is decoded."""
    check_structure(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(f"image is too large: its declared size is over the limit of "
                             f"{max_pixels:,} pixels (a decompression-bomb guard)") from None
    except UnidentifiedImageError:
        what = what_is(data)
        whole = ("; a .zip of one DICOM series is a whole scan: brainmri.scans.read_scan reads it "
                 "(the app's Classify tab and the batch command do)" if data.startswith(b"PK") else "")
        raise ImageLoadError(f"this is {what}, not an image; upload a {ACCEPTED} file{whole}" if what
                             else f"not a readable image; upload a {ACCEPTED} file") from None
    except DAMAGED as error:
        raise ImageLoadError(f"the image file is damaged or truncated ({error})") from None
    check_size(image.width, image.height, max_pixels)
    check_opened(image)
    return image


def reduce_to(image: Image.Image, max_side: int | None) -> Image.Image:
    """`image` shrunk by the smallest whole factor that brings its longer side to at most
    `max_side` (so over `max_side / 2`; Pillow's box `reduce`: cheap, no resampling
    artefacts); unchanged if it fits."""
    factor = -(-max(image.size) // max_side) if max_side else 1
    if factor <= 1:
        return image
    if image.mode in ("1", "P") or image.mode.startswith("I;16"):     # modes `reduce` lacks
        image = image.convert({"1": "L", "P": "RGBA"}.get(image.mode, "I"))
    return image.reduce(factor)


def _decode(data: bytes, max_pixels: int, frame: int | None = None,
            max_side: int | None = None) -> Image.Image:
    image = _open(data, max_pixels)
    factor = -(-max(image.size) // max_side) if max_side else 1
    if factor > 1 and image.format == "JPEG":
        # JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale, at least the size asked for.
        image.draft(image.mode, (image.width // factor, image.height // factor))
    elif factor > 1 and image.format == "JPEG2000":
        # A JPEG 2000 codestream holds its picture at 1/2, 1/4 ... scale (its wavelet levels):
        # OpenJPEG decodes only those needed, at least the size asked for. Without them it
        # could decode the picture only whole, for seconds: refused.
        needed, levels = factor.bit_length() - 1, jpeg2000_levels(data)
        if levels is not None and levels < needed:
            raise ImageLoadError(
                f"this JPEG 2000 file is {image.width}x{image.height} pixels and was saved with "
                f"{levels} wavelet level{'s' * (levels != 1)}, too few to read it at {max_side} pixels "
                f"or less without decoding it whole; save the image again as PNG, or at most "
                f"{max_side} pixels across")
        try:
            image.reduce = needed
            image.load()
        except DAMAGED as error:    # fewer levels in a tile than the header says, or damaged
            raise ImageLoadError(f"the image file is damaged or truncated ({error})") from None
    frames = _frames(image)
    if frames > 1 and image.format in ANIMATED_FORMATS:
        many = image.format == "GIF" and frames > GIF_FRAMES_SAID
        said = f"more than {GIF_FRAMES_SAID}" if many else frames
        raise ImageLoadError(f"this is an animated {image.format} ({said} frames); a single "
                             "MRI slice is needed: save one frame as PNG or JPEG")
    try:
        if frame is not None and image.format != "MPO":   # MPO: frame 0 is the photo itself
            image.seek(check_index("frame", frame, frames))
        image.load()
    except ImageLoadError:
        raise
    except (*DAMAGED, Image.DecompressionBombError) as error:
        raise ImageLoadError(f"the image file is damaged or truncated ({error})") from None
    return reduce_to(ImageOps.exif_transpose(image), max_side)


def read_bytes(source: ImageSource, max_bytes: int = MAX_BYTES) -> bytes:
    """The raw bytes of a path or bytes source, refusing missing, empty and oversized files."""
    if isinstance(source, (bytes, bytearray, memoryview)):
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
    if not data:
        raise ImageLoadError("the file is empty")
    return data


def load_image(source: ImageSource, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               frame: int | None = None, axis: int | None = None, slice_index: int | None = None,
               max_side: int | None = None) -> Image.Image:
    """Return a decoded PIL image from a path, raw bytes, a PIL image or an array.

    Ordinary images come back in their own mode (L, RGB, RGBA, P, CMYK, I;16, ...), EXIF
    orientation applied. DICOM and NIfTI come back as 8-bit "L" (or RGB for colour DICOM):
    `frame` picks a DICOM frame or TIFF page (default: DICOM's middle frame, TIFF's first);
    `axis` (0 sagittal, 1 coronal, 2 axial, in RAS+ order; default: the axis the volume was
    acquired along) and `slice_index` (default: the middle) pick a NIfTI slice. Arrays are HxW or HxWx3/4; non-uint8 arrays are min-max scaled.
    `max_side`: a larger image is reduced early by whole factors (a JPEG decoded at 1/2, 1/4
    or 1/8 scale in draft mode, a JPEG 2000 at the wavelet level needed, then `reduce_to`), to
    a longer side in (max_side / 2, max_side].
    """
    if isinstance(source, Image.Image):
        check_size(source.width, source.height, max_pixels)
        return reduce_to(source, max_side)
    if isinstance(source, np.ndarray):
        image = _from_array(source)
        check_size(image.width, image.height, max_pixels)
        return reduce_to(image, max_side)
    data = read_bytes(source, max_bytes)
    from . import volumes            # pydicom/nibabel load only when needed
    kind = volumes.sniff(data)
    if kind == "dicom":
        return reduce_to(volumes.read_dicom(data, frame, max_pixels), max_side)
    if kind == "nifti":
        return reduce_to(volumes.read_nifti(data, axis, slice_index, max_pixels), max_side)
    return _decode(data, max_pixels, frame, max_side)


def describe(source: ImageSource, *, max_bytes: int = MAX_BYTES,
             max_pixels: int = MAX_PIXELS) -> SourceInfo:
    """Kind, shape and number of frames/slices of a file, reading headers only where possible."""
    if isinstance(source, (Image.Image, np.ndarray)):
        image = load_image(source, max_pixels=max_pixels)
        return SourceInfo("image", "array", (1, image.height, image.width), 1, 0)
    data = read_bytes(source, max_bytes)
    from . import volumes
    kind = volumes.sniff(data)
    if kind != "image":
        return volumes.describe(kind, data)
    image = _open(data, max_pixels)
    frames = _frames(image) if image.format == "TIFF" else 1
    return SourceInfo("image", image.format, (frames, image.height, image.width), frames, 0)


def _frames(image: Image.Image) -> int:
    """Frames of an opened picture; a TIFF's pages and a GIF's frames counted by walking them,
    up to MAX_SLICES + 1 pages and GIF_FRAMES_SAID + 1 frames (Pillow's n_frames walks every
    one in Python, for a TIFF in time that grows faster than their number, so a large upload of
    tiny frames would hold a worker). A TIFF of more pages is refused; a GIF, an animation, is
    refused whatever its count."""
    if image.format not in ("TIFF", "GIF"):
        return getattr(image, "n_frames", 1)
    count, cap = 1, MAX_SLICES if image.format == "TIFF" else GIF_FRAMES_SAID
    try:
        while count <= cap:
            image.seek(count)
            count += 1
    except EOFError:
        pass
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"the {image.format} file is damaged or truncated "
                             f"({'page' if image.format == 'TIFF' else 'frame'} {count + 1}: {error})") from None
    image.seek(0)
    if count > MAX_SLICES and image.format == "TIFF":
        raise ImageLoadError(f"this TIFF has more than {MAX_SLICES} pages, over the limit; save the "
                             "slices wanted as a smaller TIFF or as PNG files")
    return count


def to_grey(image: Image.Image) -> np.ndarray:
    """Luminance of any PIL mode as an (H, W) uint8 array; 16-bit images are min-max scaled.

    Transparent pixels count as black (the background of a scan).
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.asarray(_from_array(np.asarray(image)).convert("L"))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode == "LAB":
        return np.asarray(image.getchannel("L"))
    return np.asarray(image.convert("L"))
