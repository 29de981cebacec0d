"""A pydicom decoder plugin for the lossless compression PACS exports use most: JPEG Lossless
(process 14, any predictor, and its first-order "SV1" form), decoded by libjpeg-turbo through
imagecodecs (both BSD-licensed).

    import brainmri.dicom_codecs   # once; then ds.pixel_array decodes these transfer syntaxes

pydicom's own plugins for it need GDCM (it can abort the whole process on damaged JPEG data,
taking a server down with it) or pylibjpeg-libjpeg (GPL-3.0). Each frame is decoded into an
array of the size its DICOM header declares, so a stream whose own header claims more rows or
columns is refused before anything that size is allocated. JPEG-LS is not decoded: CharLS
(imagecodecs' and pyjpegls' decoder) spends seconds on some small damaged streams before it
refuses them (`python scripts/fuzz_dicom_codecs.py --decoders jpegls`).

A plugin module, as pydicom defines one (pydicom.pixels.decoders): `DECODER_DEPENDENCIES`,
`is_available(uid)` and the decode function, `_decode_frame(src, runner) -> bytes`.
"""
from __future__ import annotations

import numpy as np
from pydicom import uid
from pydicom.pixels.decoders import base

try:
    import imagecodecs
except ImportError:  # pragma: no cover - requirements.txt installs it
    imagecodecs = None

_DEPENDS = ("numpy", "imagecodecs")
DECODER_DEPENDENCIES = {syntax: _DEPENDS for syntax in (uid.JPEGLossless, uid.JPEGLosslessSV1)}
LABEL = "brainmri-imagecodecs"


def is_available(syntax: str) -> bool:
    return imagecodecs is not None and syntax in DECODER_DEPENDENCIES


def _decode_frame(src: bytes, runner) -> bytes:
    """One frame's compressed bytes -> its pixels, (rows, columns[, samples]) interleaved, in
    8 bits when the file stores at most 8, else 16 (pydicom then applies the pixel
    representation and photometric interpretation as for any other decoder)."""
    samples = runner.samples_per_pixel
    shape = (runner.rows, runner.columns) + ((samples,) if samples > 1 else ())
    dtype = np.uint8 if runner.bits_stored <= 8 else np.uint16
    # libjpeg-turbo fills what a cut stream lacks and says so only in a warning, which
    # imagecodecs does not pass on: a stream must end with its end-of-image marker (an
    # odd-length fragment may be padded by one zero byte).
    if not bytes(src[-3:]).rstrip(b"\0").endswith(b"\xff\xd9"):
        raise ValueError("the JPEG stream ends before its end-of-image marker")
    out = np.empty(shape, dtype)
    # The colour space as stored: lossless JPEG has no YCbCr conversion to undo.
    colour = "RGB" if samples > 1 else None
    imagecodecs.jpeg8_decode(src, out=out, colorspace=colour, outcolorspace=colour)
    runner.set_option("bits_allocated", out.itemsize * 8)
    if samples > 1:
        runner.set_option("planar_configuration", 0)
    return out.tobytes()


def register() -> None:
    """Add this module's decoder to pydicom's for each of its transfer syntaxes, once.
    `brainmri.volumes` asks for it by `LABEL`, so an installed GDCM is not used even so."""
    for syntax in DECODER_DEPENDENCIES:
        try:
            base.get_decoder(syntax).add_plugin(LABEL, (__name__, "_decode_frame"))
        except ValueError:  # already added (the module reloaded)
            pass


register()
