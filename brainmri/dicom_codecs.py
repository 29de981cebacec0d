"""A pydicom decoder plugin for the lossless compressions PACS exports use most: JPEG Lossless
(process 14, any predictor, and its first-order "SV1" form), decoded by libjpeg-turbo through
imagecodecs (both BSD-licensed); JPEG-LS, lossless and near-lossless, decoded by CharLS
through imagecodecs (BSD-licensed too); and RLE Lossless, its PackBits segments decoded by
imagecodecs.

    import brainmri.dicom_codecs   # once; then ds.pixel_array decodes these transfer syntaxes

pydicom's own plugins for JPEG Lossless need GDCM (it can abort the whole process on damaged
JPEG data, taking a server down with it) or pylibjpeg-libjpeg (GPL-3.0). Each frame is decoded
into an array of the size its DICOM header declares, so a stream whose own header claims more
rows or columns is refused before anything that size is allocated, and a JPEG or JPEG-LS
stream must end with its end-of-image marker: libjpeg-turbo fills in what a cut stream lacks,
and CharLS spends seconds on some streams without the marker (none of those with it held it a
second: `python scripts/fuzz_dicom_codecs.py --decoders jpegls --synthetic --eoi`). pydicom's
own RLE decoder walks each segment in Python with no bound on what it writes (two bytes of a
repeat run write 128) and a Python step for each no-op byte; here each segment is decoded in C
into at most twice its plane's size.

A plugin module, as pydicom defines one (pydicom.pixels.decoders): `DECODER_DEPENDENCIES`,
`is_available(uid)` and the decode functions, `_decode_frame(src, runner) -> bytes` (JPEG
Lossless), `_decode_jpeg_ls_frame` and `_decode_rle_frame` (RLE).
"""
from __future__ import annotations

import struct

import numpy as np
from pydicom import uid
from pydicom.pixels.decoders import base

try:
    import imagecodecs
except ImportError:  # pragma: no cover - requirements.txt installs it
    imagecodecs = None

_DEPENDS = ("numpy", "imagecodecs")
DECODERS = {uid.JPEGLossless: "_decode_frame", uid.JPEGLosslessSV1: "_decode_frame",
            uid.JPEGLSLossless: "_decode_jpeg_ls_frame", uid.JPEGLSNearLossless: "_decode_jpeg_ls_frame",
            uid.RLELossless: "_decode_rle_frame"}       # transfer syntax -> this module's function
DECODER_DEPENDENCIES = {syntax: _DEPENDS for syntax in DECODERS}
LABEL = "brainmri-imagecodecs"


def is_available(syntax: str) -> bool:
    return imagecodecs is not None and syntax in DECODER_DEPENDENCIES


def _decode_stream(src: bytes, runner, what: str, decode) -> bytes:
    """One JPEG or JPEG-LS frame (`what`) -> its pixels, decoded by `decode(src, out)` into an
    array of the header's size, (rows, columns[, samples]) interleaved, in 8 bits when the file
    stores at most 8, else 16 (pydicom then applies the pixel representation and photometric
    interpretation as for any other decoder). A stream must end with its end-of-image marker
    (an odd-length fragment may be padded by one zero byte); imagecodecs' errors are said in
    words for users."""
    if not bytes(src[-3:]).rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ValueError(f"the {what} stream ends before its end-of-image marker")
    samples = runner.samples_per_pixel
    shape = (runner.rows, runner.columns) + ((samples,) if samples > 1 else ())
    out = np.empty(shape, np.uint8 if runner.bits_stored <= 8 else np.uint16)
    try:
        decode(src, out)
    except (RuntimeError, ValueError):         # imagecodecs' words, e.g. its array's shapes
        raise ValueError(f"the {what} stream is damaged or not of the header's "
                         f"{runner.columns}x{runner.rows} pixels") from None
    runner.set_option("bits_allocated", out.itemsize * 8)
    if samples > 1:
        runner.set_option("planar_configuration", 0)
    return out.tobytes()


def _decode_frame(src: bytes, runner) -> bytes:
    """One JPEG Lossless frame. libjpeg-turbo fills what a cut stream lacks and says so only in
    a warning, which imagecodecs does not pass on, hence the end-of-image check. The colour
    space as stored: lossless JPEG has no YCbCr conversion to undo."""
    colour = "RGB" if runner.samples_per_pixel > 1 else None
    return _decode_stream(src, runner, "JPEG", lambda data, out: imagecodecs.jpeg8_decode(
        data, out=out, colorspace=colour, outcolorspace=colour))


def _decode_jpeg_ls_frame(src: bytes, runner) -> bytes:
    """One JPEG-LS frame, interleaved whatever the stream's interleave mode. A stream without
    its end-of-image marker is refused before CharLS reads it (on such streams it was seen to
    work for seconds)."""
    return _decode_stream(src, runner, "JPEG-LS", lambda data, out: imagecodecs.jpegls_decode(data, out=out))


def refusal(error: Exception) -> str | None:
    """What this module's decoder said of a frame it refused, from the error pydicom raised
    (it names each plugin's failure as "<label>: <message>"); None when it was not this
    module's. Its messages are written to be shown to a user."""
    text = str(error)
    at = text.find(f"{LABEL}: ")
    return text[at + len(LABEL) + 2:].partition("\n")[0].strip() or None if at >= 0 else None


def _decode_rle_frame(src: bytes, runner) -> bytes:
    """One RLE frame (DICOM PS3.5 annex G: a 64-byte header of segment offsets, then one
    PackBits segment per byte of each sample, most significant first) -> its pixels as
    pydicom's RLE decoder gives them: planar configuration 1, each sample little-endian. A
    segment may decode to more than its plane (some encoders pad), up to twice; beyond that,
    or short of it, the frame is damaged."""
    rows, columns, samples = runner.rows, runner.columns, runner.samples_per_pixel
    if runner.bits_allocated % 8:
        raise NotImplementedError(f"RLE of {runner.bits_allocated} bits allocated is not read")
    width, plane = runner.bits_allocated // 8, rows * columns
    if len(src) < 64:
        raise ValueError("the RLE frame is shorter than its header")
    count, *offsets = struct.unpack("<16L", bytes(src[:64]))
    if count != samples * width:
        raise ValueError(f"the RLE frame holds {count} segments, not {samples * width}")
    bounds = [*offsets[:count], len(src)]
    if bounds[0] != 64 or any(later < earlier for earlier, later in zip(bounds, bounds[1:])):
        raise ValueError("the RLE segment offsets are out of order or out of the frame")
    out, buffer = np.empty((samples, plane, width), np.uint8), np.empty(2 * plane, np.uint8)
    most_first = runner.get_option("rle_segment_order", ">") == ">"
    for i in range(count):             # each segment decoded into `buffer`, then copied out
        try:
            decoded = imagecodecs.packbits_decode(memoryview(src)[bounds[i]:bounds[i + 1]], out=buffer)
        except RuntimeError:           # imagecodecs': the buffer is full
            raise ValueError(f"an RLE segment decodes to more than twice its {plane:,} bytes") from None
        if len(decoded) < plane:
            raise ValueError(f"an RLE segment decodes to {len(decoded):,} bytes, not {plane:,}")
        sample, byte = divmod(i, width)
        out[sample, :, width - 1 - byte if most_first else byte] = decoded[:plane]
    runner.set_option("planar_configuration", 1)
    return out.tobytes()


def register() -> None:
    """Add this module's decoder to pydicom's for each of its transfer syntaxes, once.
    `brainmri.volumes` asks for it by `LABEL`, so an installed GDCM is not used even so."""
    for syntax, function in DECODERS.items():
        try:
            base.get_decoder(syntax).add_plugin(LABEL, (__name__, function))
        except ValueError:  # already added (the module reloaded)
            pass


register()
