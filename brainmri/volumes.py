"""DICOM and NIfTI: medical files holding one or more pictures, read one 2-D picture at a time.

Used by `brainmri.io.load_image`, which decides the kind by content (`sniff`):
- DICOM: 'DICM' at byte 128, or a raw data set (no preamble) that pydicom parses. Monochrome
  pixels get RescaleSlope/Intercept, then the file's own WindowCenter/WindowWidth (first pair)
  or, without one, a robust 1st-99th percentile window; MONOCHROME1 is inverted. Colour
  (RGB, YBR, PALETTE COLOR) becomes 8-bit RGB. Pixels that are not square (PixelSpacing,
  `pixel_sides`) are made so (`square_pixels`). Multi-frame: the middle frame unless `frame`.
  The file's Modality travels along as `image.info[MODALITY]` (`with_modality`).
- NIfTI-1/2, `.nii` or `.nii.gz`: reoriented to RAS+, one slice along `axis` (default: the
  axis it was acquired along, `acquired_axis`; the middle slice unless `slice_index`), shown as
  radiology viewers do (superior or anterior at the top, patient's right on the left) with
  square pixels (`square_pixels`), 1st-99th percentile window. 4-D volumes (time series,
  diffusion) are refused: which volume is "the" scan is the user's call.
Every picture is an 8-bit PIL image; every problem an `ImageLoadError` a user can read.
"""
from __future__ import annotations

import io
import math
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

from .formats import check_jpeg2000_tiles, check_jpeg_segments
from .inputs import MAX_VOXELS, WORK_SIDE, ImageLoadError, SourceInfo, check_index, check_size

MAX_VOLUME_BYTES = 512 * 2**20     # a .nii.gz or deflated DICOM may not unpack to more (bomb)
MAX_DICOM_ELEMENTS = 400_000       # data elements and items in one DICOM file, nested ones too
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
AXES = ("sagittal", "coronal", "axial")
ACQUIRED = "acquired"                # a volume's slices in the plane it was acquired in
PLANE_CHOICES = (ACQUIRED, *AXES)


def sniff(data: bytes) -> str:
    """'dicom', 'nifti' or 'image' (anything else: Pillow decides, or names what it is)."""
    if data[128:132] == b"DICM" or (data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x08")
                                    and _is_raw_dicom(data)):
        return "dicom"
    if _nifti_version(_nifti_head(data)):
        return "nifti"
    return "image"


# ----------------------------------------------------------------------------- DICOM
def _is_raw_dicom(data: bytes) -> bool:
    """Whether `data` is a DICOM data set without the 128-byte preamble: one that pydicom
    parses, with an image's or a SOP instance's elements, or one holding more elements than
    a file may (not parsed: `dataset` refuses it)."""
    import pydicom
    if count_elements(data) > MAX_DICOM_ELEMENTS:
        return True
    try:
        ds = pydicom.dcmread(io.BytesIO(inflated(data)), force=True, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - anything pydicom chokes on is simply "not DICOM"
        return False
    return "SOPClassUID" in ds or "Rows" in ds


_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"))     # explicit VRs whose length takes 4 bytes after 2 reserved
_VRS = _LONG_VRS | frozenset((b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS",
                              b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL",
                              b"US"))
_UNDEFINED = 0xFFFFFFFF
_STRUCTS = {order: (struct.Struct(order + "HH"), struct.Struct(order + "L"), struct.Struct(order + "H"),
                    struct.pack(order + "HH", 0xFFFE, 0xE000)) for order in "<>"}


def count_elements(data: bytes, cap: int | None = None) -> int:
    """The data elements and items of a DICOM file (preamble and file meta, or a raw data
    set), nested ones included, counted from their headers alone (PS3.5 7.1, 7.5) up to
    `cap` + 1 (default MAX_DICOM_ELEMENTS): pydicom parses each element in Python, and a file
    of the upload limit's size can hold millions of empty ones. Sequences and items are walked
    into, the fragments of encapsulated pixel data skipped, an explicit UN of undefined length
    walked as implicit VR (PS3.5 6.2.2); a deflated data set is counted once inflated. The
    count stops where a header does not parse (pydicom then says what is wrong)."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian
    cap = MAX_DICOM_ELEMENTS if cap is None else cap
    preamble = data[128:132] == b"DICM"
    at, n, end = (132 if preamble else 0), 0, len(data)
    # Explicit VR unless the first element has no VR (as pydicom finds it, whatever the file
    # meta says); big endian if the transfer syntax, or a raw data set's first group, says so.
    implicit = False if preamble else data[4:6] not in _VRS
    tag, long, short, item = _STRUCTS[">" if not preamble and data[:1] == b"\0" else "<"]
    meta = preamble                          # walking the file meta (explicit VR little endian)
    stack: list[tuple[int | None, bool, bool]] = []  # (end or None, implicit, fragments) to restore
    fragments = False
    while at + 8 <= end and n <= cap:
        while stack and stack[-1][0] is not None and at >= stack[-1][0]:
            _, implicit, fragments = stack.pop()
        group, element = tag.unpack_from(data, at)
        if meta and group != 2:              # the file meta ends here
            syntax, meta = _meta_syntax(data, at), False
            if syntax == DeflatedExplicitVRLittleEndian:          # counted once inflated
                return n
            implicit = data[at + 4:at + 6] not in _VRS
            tag, long, short, item = _STRUCTS[">" if syntax == ExplicitVRBigEndian else "<"]
            group, element = tag.unpack_from(data, at)
        n += 1
        if group == 0xFFFE:                  # an item, or an item or sequence delimiter
            length = long.unpack_from(data, at + 4)[0]
            at += 8
            if element == 0xE0DD and stack and stack[-1][0] is None:
                _, implicit, fragments = stack.pop()
            elif element == 0xE000 and fragments and length != _UNDEFINED:
                at += length                 # a fragment of pixel data: bytes, not elements
            continue
        if implicit:
            vr, length, at = b"", long.unpack_from(data, at + 4)[0], at + 8
        else:
            vr = data[at + 4:at + 6]
            if vr not in _VRS:
                return n                     # not an element header: left to pydicom
            if vr in _LONG_VRS:
                if at + 12 > end:
                    return n
                length, at = long.unpack_from(data, at + 8)[0], at + 12
            else:
                length, at = short.unpack_from(data, at + 6)[0], at + 8
        if length == _UNDEFINED:             # a sequence, or encapsulated pixel data
            stack.append((None, implicit, fragments))
            implicit, fragments = implicit or vr == b"UN", (group, element) == (0x7FE0, 0x0010)
        elif (vr == b"SQ" or (vr in (b"", b"UN") and data[at:at + 4] == item)) \
                and (group, element) != (0x7FE0, 0x0010):
            stack.append((at + length, implicit, fragments))      # walked into, to its end
            implicit = implicit or vr == b"UN"
        else:
            at += length
    return n


def _meta_syntax(data: bytes, end: int) -> str:
    """The TransferSyntaxUID (0002,0010) in the file meta of `data`, before `end`."""
    at = data.find(b"\x02\x00\x10\x00UI", 132, end)
    if at < 0:
        return ""
    length = struct.unpack_from("<H", data, at + 6)[0]
    return data[at + 8:at + 8 + length].rstrip(b"\0 ").decode("ascii", "replace")


def check_elements(data: bytes) -> None:
    """ImageLoadError when a DICOM file holds more than MAX_DICOM_ELEMENTS data elements and
    items (`count_elements`), before pydicom parses them one at a time."""
    if count_elements(data) > MAX_DICOM_ELEMENTS:
        raise ImageLoadError(f"this DICOM file holds more than {MAX_DICOM_ELEMENTS:,} data elements, "
                             "far more than an image has; export the image again")


def inflated(data: bytes, limit: int | None = None) -> bytes:
    """A deflated DICOM file (PS3.5 A.5: its data set deflate-compressed) as the same file in
    explicit VR little endian, inflated here within `limit` bytes (default MAX_VOLUME_BYTES;
    pydicom inflates without a bound); any other bytes as they are."""
    import pydicom
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.filewriter import write_file_meta_info
    fp = io.BytesIO(data)
    try:                                    # the preamble and file meta only: pydicom's own
        read_preamble(fp, True)             # steps in read_file_meta_info, on bytes
        meta = _read_file_meta_info(fp)
    except Exception:  # noqa: BLE001 - pydicom says what is wrong when it reads the whole file
        return data
    if meta.get("TransferSyntaxUID") != pydicom.uid.DeflatedExplicitVRLittleEndian:
        return data
    body = inflate(data[fp.tell():], -zlib.MAX_WBITS, limit or MAX_VOLUME_BYTES,
                   "the deflated DICOM file", "the deflated DICOM file's data set")
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=False)
    return out.getvalue() + body


def dataset(data: bytes, header_only: bool = False, inflate_limit: int | None = None,
            counted: bool = False):
    """`data` read by pydicom; a deflated data set inflated within `inflate_limit` bytes
    (`inflated`); ImageLoadError when damaged, over MAX_DICOM_ELEMENTS (`check_elements`;
    not again when the caller has `counted` them) or, unless `header_only`, without pixels."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    if not counted:
        check_elements(data)
    plain = inflated(data, inflate_limit)
    if plain is not data:
        check_elements(plain)
    try:
        ds = pydicom.dcmread(io.BytesIO(plain), force=data[128:132] != b"DICM",
                             stop_before_pixels=header_only)
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        raise ImageLoadError(f"the DICOM file is damaged or truncated ({type(error).__name__})") from None
    if not any(tag in ds for tag in PIXEL_TAGS) and not header_only:
        raise ImageLoadError("this DICOM file holds no image (no pixel data: e.g. a report, "
                             "a treatment plan or a structure set)")
    if "TransferSyntaxUID" not in ds.file_meta:      # raw data set: say how it was encoded
        implicit = (ds.original_encoding or (True, True))[0]
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    if not header_only:
        check_frames(ds)
    return ds


def check_frames(ds) -> None:
    """ImageLoadError when a multi-frame data set's pixel data holds fewer frames than its
    NumberOfFrames declares (a truncated file, or a count that lies), before anything is
    built per frame."""
    frames = frame_count(ds)
    if frames == 1 or "PixelData" not in ds:
        return
    from pydicom.encaps import parse_basic_offsets, parse_fragments
    from pydicom.pixels.utils import get_expected_length
    try:
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:  # each frame takes one fragment or more
            items = io.BytesIO(ds.PixelData)
            parse_basic_offsets(items)
            held = parse_fragments(items)[0]
        else:
            declared = get_expected_length(ds)
            held = frames if len(ds.PixelData) >= declared else len(ds.PixelData) * frames // declared
    except Exception as error:  # noqa: BLE001 - a header too damaged to say what it holds
        raise ImageLoadError(f"the DICOM file is damaged or truncated ({type(error).__name__})") from None
    if held < frames:
        raise ImageLoadError(f"the DICOM file is damaged or truncated: its header declares {frames:,} "
                             f"frames, its pixel data holds {held:,}")


def frame_count(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def frame_attr(ds, index: int, sequence: str, name: str):
    """A per-frame attribute: top level, else the shared, else this frame's functional group."""
    if name in ds:
        return ds[name].value
    for groups, i in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", index)):
        try:
            return getattr(getattr(ds, groups)[i], sequence)[0][name].value
        except (AttributeError, IndexError, KeyError, TypeError):
            continue
    return None


def _first(value) -> float | None:
    """A DICOM number or the first of several (WindowCenter may hold one per preset)."""
    if not isinstance(value, (int, float)):
        try:
            value = value[0]
        except (TypeError, IndexError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def window(pixels: np.ndarray, centre: float | None = None, width: float | None = None) -> np.ndarray:
    """Float pixels -> uint8 through [centre - width/2, centre + width/2], or the 1-99th
    percentiles of the finite pixels when no window is given."""
    x = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if centre is not None and width is not None and width > 0:
        lo, hi = centre - width / 2, centre + width / 2
    else:
        lo, hi = np.percentile(x, (1, 99)) if x.size else (0.0, 0.0)
        if hi <= lo:
            lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return (np.clip((x - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def _decode_frame(ds, index: int) -> np.ndarray:
    from . import dicom_codecs                  # registers its decoders with pydicom's
    syntax = ds.file_meta.TransferSyntaxUID
    if not _decodable(syntax):
        raise ImageLoadError(f"this DICOM file's pixels are compressed as '{syntax.name}', "
                             "which this server cannot decode; export it uncompressed or as PNG")
    plugin = dicom_codecs.LABEL if syntax in dicom_codecs.DECODER_DEPENDENCIES else ""
    check_stream_size(ds, index)
    try:
        ds.pixel_array_options(index=index, decoding_plugin=plugin)
        return ds.pixel_array
    except Exception as error:  # noqa: BLE001 - truncated, damaged or inconsistent pixel data
        said = dicom_codecs.refusal(error)
        raise ImageLoadError("the DICOM pixel data is damaged or truncated"
                             + (f": {said}" if said else f" ({type(error).__name__})")) from None


def check_stream_size(ds, index: int) -> None:
    """ImageLoadError when frame `index` is a JPEG or JPEG 2000 stream whose own header
    declares another size than the DICOM header's Columns x Rows. pydicom decodes these
    through Pillow at the size the stream declares and compares the sizes only after, so a
    file of a few kilobytes could have a picture far larger than any scan decoded first.
    Pillow's lazy open reads the stream's header alone (a JPEG's segments counted first,
    `formats.check_jpeg_segments`; a JPEG 2000 of the right size has its tiles counted after,
    `formats.check_jpeg2000_tiles`); a stream it cannot parse is left to the decoder, which
    refuses it. A JPEG 2000 frame of more pixels than WORK_SIDE x WORK_SIDE is refused too:
    pydicom has OpenJPEG decode a frame whole, for seconds at that size (a picture file is
    decoded at a reduced scale instead, `brainmri.io`)."""
    from pydicom import uid
    from pydicom.encaps import get_frame
    jpeg2000 = ds.file_meta.TransferSyntaxUID in (uid.JPEG2000Lossless, uid.JPEG2000)
    if not jpeg2000 and ds.file_meta.TransferSyntaxUID not in (uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit):
        return
    tables = ("ExtendedOffsetTable", "ExtendedOffsetTableLengths")
    offsets = tuple(ds[name].value for name in tables) if all(name in ds for name in tables) else None
    declared = (int(ds.Columns), int(ds.Rows))
    try:
        stream = get_frame(ds.PixelData, index, number_of_frames=frame_count(ds), extended_offsets=offsets)
    except Exception:  # noqa: BLE001 - not parsed here: the decoder says what is wrong
        return
    if stream.startswith(b"\xff\xd8\xff"):
        check_jpeg_segments(stream, "this DICOM file's JPEG frame", "export the image again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            size = Image.open(io.BytesIO(stream), formats=("JPEG", "JPEG2000")).size
    except Image.DecompressionBombError:
        size = None                                 # over twice Pillow's own pixel limit
    except Exception:  # noqa: BLE001 - not parsed here: the decoder says what is wrong
        return
    if size != declared:
        said = "is {}x{} pixels".format(*size) if size else "declares far more pixels"
        raise ImageLoadError(f"the DICOM pixel data is damaged: its compressed picture {said}, but "
                             "the file's header declares {}x{}".format(*declared))
    check_jpeg2000_tiles(stream, "this DICOM file's JPEG 2000 frame", "export the image again")
    if jpeg2000 and declared[0] * declared[1] > WORK_SIDE ** 2:
        raise ImageLoadError(
            "this DICOM file's JPEG 2000 frame is {}x{} pixels, more than a brain MRI slice has; "
            "a frame in this compression is decoded whole, which takes seconds at that size (up "
            "to {}x{} are read): export the image uncompressed or as PNG".format(
                *declared, WORK_SIDE, WORK_SIDE))


def _decodable(syntax) -> bool:
    """Whether an installed pydicom plugin decodes pixel data of this transfer syntax."""
    from pydicom.pixels import get_decoder
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:                 # a syntax pydicom has no decoder for
        return False


def read_dicom(data: bytes, frame: int | None, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():      # pydicom's notes on padding or VR guesses: not for users
        warnings.simplefilter("ignore", UserWarning)
        return _read_dicom(data, frame, max_pixels)


def _read_dicom(data: bytes, frame: int | None, max_pixels: int) -> Image.Image:
    ds = dataset(data)
    check_shape(ds, max_pixels)
    frames = frame_count(ds)
    index = frames // 2 if frame is None else check_index("frame", frame, frames)
    return square_pixels(picture(ds, *frame_values(ds, index)), *pixel_sides(ds, index), max_pixels)


def pixel_sides(ds, index: int = 0) -> tuple[float, float]:
    """(height, width) of frame `index`'s pixels, in mm: PixelSpacing (row spacing first, as
    DICOM orders it; a multi-frame file's functional groups too), else PixelAspectRatio's
    vertical and horizontal sizes, else square (1, 1)."""
    for name, sequence in (("PixelSpacing", "PixelMeasuresSequence"), ("PixelAspectRatio", "")):
        value = frame_attr(ds, index, sequence, name) if sequence else ds.get(name)
        try:
            sides = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if len(sides) == 2 and all(np.isfinite(sides)) and min(sides) > 0:
            return sides
    return 1.0, 1.0


def check_shape(ds, max_pixels: int) -> None:
    """ImageLoadError unless the data set declares an image size within `max_pixels`."""
    if not ds.get("Rows") or not ds.get("Columns"):
        raise ImageLoadError("this DICOM file has pixel data but no image size (Rows/Columns)")
    check_size(int(ds.Columns), int(ds.Rows), max_pixels)


def frame_values(ds, index: int) -> tuple[np.ndarray, float | None, float | None]:
    """Frame `index` of a data set with pixels -> (values, window centre, window width).

    Colour: (H, W, 3) uint8 RGB and no window. Monochrome: (H, W) float32 after
    RescaleSlope/Intercept, with the file's own first window (None, None when it has none)."""
    pixels = _decode_frame(ds, index)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut
        try:
            pixels = apply_color_lut(pixels, ds)
        except Exception as error:  # noqa: BLE001 - a missing or malformed palette, said as such
            raise ImageLoadError("the DICOM file is damaged: its pixels are PALETTE COLOR but its "
                                 f"colour palette cannot be read ({error})") from None
    if pixels.ndim == 3:                               # (H, W, 3) RGB after pydicom's conversion
        bits = 8 * pixels.dtype.itemsize
        rgb = pixels if pixels.dtype == np.uint8 else (pixels.astype(np.float64) / (2**bits - 1) * 255)
        return np.clip(rgb, 0, 255).astype(np.uint8), None, None
    slope = _first(frame_attr(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
    intercept = _first(frame_attr(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
    values = pixels.astype(np.float32) * (1.0 if slope is None else slope) + (intercept or 0.0)
    centre = _first(frame_attr(ds, index, "FrameVOILUTSequence", "WindowCenter"))
    width = _first(frame_attr(ds, index, "FrameVOILUTSequence", "WindowWidth"))
    return values, centre, width


def picture(ds, values: np.ndarray, centre: float | None, width: float | None) -> Image.Image:
    """`frame_values`' output -> an 8-bit PIL image: RGB as it is, monochrome through the
    window (percentiles without one), MONOCHROME1 inverted; tagged with the Modality."""
    if values.ndim == 3:
        return _tagged(Image.fromarray(values, "RGB"), ds)
    grey = window(values, centre, width)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255 - grey                              # 0 is white in this interpretation
    return _tagged(Image.fromarray(grey, "L"), ds)


def _tagged(image: Image.Image, ds) -> Image.Image:
    """Keep the DICOM Modality (MR, CT, US...) with the picture, for `brainmri.mri_check`."""
    return with_modality(image, dicom_modality(ds))


def dicom_modality(ds) -> str:
    """A DICOM data set's Modality (MR, CT, US...), upper case; "" when it has none."""
    return str(ds.get("Modality", "") or "").upper()


MODALITY = "modality"   # image.info key of the DICOM Modality a reader found: a `Modality`


class Modality(str):
    """The DICOM Modality this library's readers found (MR, CT, US...), as `image.info[MODALITY]`.
    A str of its own type: an image file's own metadata of that name (Pillow reads a PNG text
    chunk into `image.info` as a plain str) is never taken for it, however the picture was
    opened (`declared_modality`)."""


def with_modality(image: Image.Image, modality: str) -> Image.Image:
    """`image`, carrying the DICOM Modality `modality` (upper case) in `image.info[MODALITY]`."""
    image.info[MODALITY] = Modality(modality.upper())
    return image


def declared_modality(image: Image.Image) -> str:
    """The DICOM Modality a reader of this library set on `image`; "" for any other picture."""
    found = image.info.get(MODALITY)
    return str(found) if isinstance(found, Modality) else ""


# ----------------------------------------------------------------------------- NIfTI
def _nifti_head(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 544)
        except zlib.error:
            return b""
    return data[:544]


def _nifti_version(head: bytes) -> int:
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1") and \
            348 in struct.unpack("<i", head[:4]) + struct.unpack(">i", head[:4]):
        return 1
    if len(head) >= 540 and head[4:7] in (b"n+2", b"ni2"):
        return 2
    return 0


def unpack_gzip(data: bytes, limit: int = MAX_VOLUME_BYTES, upto: int | None = None) -> bytes:
    """`data` gunzipped when it is gzip (else as it is); ImageLoadError when damaged,
    truncated or unpacking past `limit` bytes. `upto`: the bytes needed; unpacking stops
    there (what follows is never unpacked)."""
    if data[:2] != b"\x1f\x8b":
        return data
    return inflate(data, 16 + zlib.MAX_WBITS, limit, "the .nii.gz file", "the NIfTI volume", upto)


def inflate(data: bytes, wbits: int, limit: int, what: str, holds: str, upto: int | None = None) -> bytes:
    """zlib-decompressed `data` (`wbits` as zlib's: gzip, raw deflate...); ImageLoadError,
    naming `what` was sent and what it `holds`, when damaged, truncated or past `limit` bytes.
    `upto`: stop once that many bytes are out (at least; the rest is not needed)."""
    d, parts, size = zlib.decompressobj(wbits), [], 0
    upto = limit + 1 if upto is None else min(upto, limit + 1)
    try:                                # in parts: a bomb costs `limit` bytes, not twice that
        while not d.eof and size < upto:
            part = d.decompress(data, min(2**24, upto - size))
            if not part and d.unconsumed_tail == data:      # no progress: the input ended
                break
            parts.append(part)
            size, data = size + len(part), d.unconsumed_tail
    except zlib.error:
        raise ImageLoadError(f"{what} is damaged (its compressed data does not decompress)") from None
    if size > limit:
        raise ImageLoadError(f"{holds} unpacks to more than {limit / 2**20:.0f} MiB, over the limit")
    if not d.eof and size < upto:
        raise ImageLoadError(f"{what} is truncated")
    return b"".join(parts)


def _header(head: bytes):
    import nibabel as nib
    version = _nifti_version(head)
    if head[344:347] == b"ni1" or head[4:7] == b"ni2":
        raise ImageLoadError("this is a NIfTI header (.hdr) without its image data; upload a "
                             "single-file .nii or .nii.gz")
    try:
        # The fixed-size header only: extensions, if any, are not needed to read pixels.
        klass, size = (nib.Nifti1Header, 348) if version == 1 else (nib.Nifti2Header, 540)
        return klass.from_fileobj(io.BytesIO(head[:size]))
    except Exception as error:  # noqa: BLE001 - nibabel raises many kinds on damaged headers
        raise ImageLoadError(f"the NIfTI header is damaged ({type(error).__name__})") from None


def _shape3(header) -> tuple[int, int, int]:
    """The volume's 3-D shape; 2-D images get a third axis of 1; 4-D files, and voxels that are
    not one real number (complex, colour), are refused."""
    dtype = header.get_data_dtype()
    if dtype.names is not None:
        raise ImageLoadError("this NIfTI file holds colour (RGB) voxels; only greyscale volumes "
                             "can be read: save the MR volume itself and upload that")
    if dtype.kind == "c":
        raise ImageLoadError("this NIfTI file holds complex numbers (raw or phase data); only "
                             "real-valued volumes can be read: save the magnitude image and upload that")
    shape = tuple(int(n) for n in header.get_data_shape())
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise ImageLoadError(
            f"this NIfTI file is {len(shape)}-D ({'x'.join(map(str, shape))}: "
            f"{math.prod(shape[3:])} volumes, e.g. a time series); only 3-D volumes can be "
            "read: save the one volume you want (e.g. with fslroi) and upload that")
    return shape + (1,) * (3 - len(shape))


def nifti_format(data: bytes) -> str:
    """"NIfTI-1" or "NIfTI-2", from the header's magic alone (nothing parsed or refused)."""
    return "NIfTI-2" if _nifti_version(_nifti_head(data)) == 2 else "NIfTI-1"


def _nifti(data: bytes, limit: int = MAX_VOLUME_BYTES, max_voxels: int = MAX_VOXELS):
    """(nibabel image, 3-D shape), refusing header-only and 4-D files, and volumes of more
    than `max_voxels` voxels or `limit` bytes, from the header before anything else is
    unpacked; a .nii.gz is unpacked only as far as its voxels go. The image is built as
    nibabel's `from_file_map` builds it, from the fixed-size header alone: nibabel would parse
    the header extensions in Python, one at a time, and a small .nii.gz can hold millions."""
    import nibabel as nib
    header = _header(_nifti_head(data))
    shape = _shape3(header)
    if math.prod(shape) > max_voxels:                 # Python ints: no overflow
        raise ImageLoadError(f"the volume is {'x'.join(map(str, shape))} voxels, over the limit "
                             f"of {max_voxels:,} voxels")
    end = int(header.get_data_offset()) + math.prod(shape) * header.get_data_dtype().itemsize
    if end > limit:
        raise ImageLoadError(f"the NIfTI volume unpacks to more than {limit / 2**20:.0f} MiB, over the limit")
    raw = unpack_gzip(data, limit, upto=end)
    klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    try:
        image = klass(klass.ImageArrayProxy(io.BytesIO(raw), header.copy()), header.get_best_affine(), header)
    except Exception as error:  # noqa: BLE001 - nibabel raises many kinds on damaged files
        raise ImageLoadError(f"the NIfTI file is damaged ({type(error).__name__})") from None
    return image, shape


def nifti_volume(data: bytes, limit: int = MAX_VOLUME_BYTES,
                 max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI-1/2 file (gzipped or not) -> (volume (X, Y, Z) float32 in RAS+ voxel order,
    its 4x4 voxel-to-world affine after reorientation). Header-only and 4-D files are refused,
    as are volumes over `max_voxels` voxels or `limit` bytes (`_nifti`)."""
    volume, affine = _nifti_ras(data, limit, max_voxels)
    return np.ascontiguousarray(volume, dtype=np.float32), affine


def _nifti_ras(data: bytes, limit: int = MAX_VOLUME_BYTES,
               max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """`nifti_volume` with the volume as nibabel gives it (its own dtype, scaled) and in RAS+
    order as a view (`ras_view`): a slice of it is copied, not the whole volume."""
    image, shape = _nifti(data, limit, max_voxels)
    try:
        volume, affine = ras_view(np.asanyarray(image.dataobj).reshape(shape), image.affine)
    except Exception as error:  # noqa: BLE001 - truncated data, odd dtype, impossible affine
        raise ImageLoadError(f"the NIfTI image data is damaged or truncated "
                             f"({type(error).__name__})") from None
    if volume.size and volume.dtype.kind == "f" and not np.isfinite(volume).any():
        raise ImageLoadError("this NIfTI volume holds no values: every voxel is NaN or infinite "
                             "(e.g. a mask or a map that was never filled in); upload the MR volume itself")
    return volume, affine


def to_ras(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D array and its voxel-to-world (RAS+ mm) affine -> the array with its axes flipped
    and swapped into RAS+ order (the closest ones: an oblique volume is not resampled) and the
    affine that goes with it, as nibabel reorients."""
    volume, affine = ras_view(volume, affine)
    return np.ascontiguousarray(volume), affine


def ras_view(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`to_ras`, the array flipped and transposed as a view of `volume` (nothing copied)."""
    import nibabel as nib
    ornt = nib.orientations.io_orientation(affine)
    return (nib.orientations.apply_orientation(volume, ornt),
            affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape))


def display_plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Slice `index` along RAS+ `axis` of an (X, Y, Z) volume, as radiology viewers show it:
    superior (or anterior, on an axial slice) at the top, the patient's right on the left,
    anterior on the left of a sagittal slice. (rows, columns) of the two other axes."""
    plane = volume[(slice(None),) * axis + (index,)]   # (p, q): the two other RAS+ axes; a view
    return plane.T[::-1, ::-1]                         # rows: q high -> low; columns: p high -> low


THICKER = 1.25      # slices this much thicker than any other voxel side tell the acquired axis
FEWER = 0.5         # else: at most this share of the next fewest voxels does
SQUARE = 1.02       # pixel sides closer than this ratio are square: the picture is not stretched
OBLIQUE = 10.0      # degrees: a volume tilted more than this from the patient's axes is said so


def tilt(affine: np.ndarray) -> float:
    """Degrees by which a volume's voxel axes are rotated from the patient's axes at most
    (nibabel's `obliquity`, after AFNI): 0 for a scan squared to the head, 15-20 for an axial
    series tilted along the AC-PC line."""
    import nibabel as nib
    return float(np.degrees(np.max(nib.affines.obliquity(np.asarray(affine, float)))))


def spacing(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel side in mm along each voxel axis of `affine` (for a volume reoriented by
    `nifti_volume`: along each RAS+ axis), as nibabel measures it."""
    import nibabel as nib
    return nib.affines.voxel_sizes(np.asarray(affine, float))


def acquired_axis(sides: np.ndarray, shape: tuple[int, int, int]) -> int:
    """The RAS+ axis a volume's slices were most likely acquired along, for radiology viewers'
    default plane: the one whose voxels are the thickest (by `THICKER`), else the one with far
    the fewest voxels (a stack whose header gives every side the same size), else axial (2),
    as for an isotropic 3-D acquisition."""
    sides, order = np.asarray(sides, float), np.argsort(shape)
    thick = np.argsort(sides)
    if sides[thick[2]] >= THICKER * sides[thick[1]]:
        return int(thick[2])
    if shape[order[0]] <= FEWER * shape[order[1]]:
        return int(order[0])
    return 2


def check_axis(axis: int | None) -> int | None:
    """`axis` if it names one (None: the acquired one, chosen once the volume is read)."""
    if axis is not None and axis not in (0, 1, 2):
        raise ImageLoadError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), not {axis!r}")
    return axis


def axis_of(plane: str | None) -> int | None:
    """The axis of a plane named in `PLANE_CHOICES` (None, "" or ACQUIRED: None, the acquired
    one, chosen once the volume is read)."""
    if plane in (None, "", ACQUIRED):
        return None
    if plane not in AXES:
        raise ImageLoadError(f"plane must be one of {', '.join(PLANE_CHOICES)}, not {plane!r}")
    return AXES.index(plane)


def plane_sides(sides: np.ndarray, axis: int) -> tuple[float, float]:
    """(row height, column width) in mm of a `display_plane` along `axis`."""
    p, q = (a for a in range(3) if a != axis)
    return float(sides[q]), float(sides[p])


def stretch(row_mm: float, col_mm: float) -> float:
    """How many times a pixel of these sides is drawn out along its coarser side to be square
    (`square_size`): coarser / finer, 1.0 when square within `SQUARE` or a side is not positive."""
    finest = min(row_mm, col_mm)
    ratio = max(row_mm, col_mm) / finest if finest > 0 else 1.0
    return ratio if ratio > SQUARE else 1.0


CUT = "cut_across"   # image.info key of a slice cut across thicker ones: `cut_across`'s tuple


def cut_across(plane: str, acquired: str, drawn_out: float) -> tuple[str, str, float] | None:
    """What a slice in `plane` of a volume acquired in `acquired` says about itself when it was
    cut across the acquired slices, each pixel drawn out `drawn_out` times (`stretch`):
    (plane, acquired, drawn_out), a kind of picture the models were never trained or checked on
    (rule v21 of logs/confident/rule.md); None when it is not (read as acquired, or square). It
    travels with the picture as `image.info[CUT]`, as the DICOM Modality does, so every answer
    on it carries the caution (`outcomes.input_reasons`)."""
    return (plane, acquired, float(drawn_out)) if plane != acquired and drawn_out > 1.0 else None


def with_cut(image: Image.Image, cut: tuple[str, str, float] | None) -> Image.Image:
    """`image`, carrying `cut` (`cut_across`'s tuple) in `image.info[CUT]` when there is one."""
    if cut:
        image.info[CUT] = cut
    return image


def declared_cut(image: Image.Image) -> tuple[str, str, float] | None:
    """`cut_across`'s tuple when a reader of this library cut `image` across thicker slices;
    None otherwise, whatever a file's own metadata says (a PNG text chunk of that name is a
    string, never this tuple)."""
    cut = image.info.get(CUT)
    ok = (isinstance(cut, tuple) and len(cut) == 3 and all(isinstance(v, str) for v in cut[:2])
          and isinstance(cut[2], float))
    return cut if ok else None


def square_size(size: tuple[int, int], row_mm: float, col_mm: float) -> tuple[int, int]:
    """(width, height) of a picture of `size` stretched along its coarser side so that a pixel
    is as high as it is wide (`stretch`); `size` when the sides are square."""
    if stretch(row_mm, col_mm) == 1.0:
        return size
    finest = min(row_mm, col_mm)
    return max(1, round(size[0] * col_mm / finest)), max(1, round(size[1] * row_mm / finest))


def square_pixels(image: Image.Image, row_mm: float, col_mm: float, max_pixels: int) -> Image.Image:
    """`image` with square pixels (`square_size`: a slice across thick slices would look
    squashed), its size checked (`check_size`) before any pixel is made."""
    size = square_size(image.size, row_mm, col_mm)
    check_size(*size, max_pixels)
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def read_nifti(data: bytes, axis: int | None = None, slice_index: int | None = None,
               max_pixels: int = 64_000_000) -> Image.Image:
    volume, affine = _nifti_ras(data)
    sides = spacing(affine)
    acquired = acquired_axis(sides, volume.shape)
    axis = acquired if check_axis(axis) is None else axis
    count = volume.shape[axis]
    index = count // 2 if slice_index is None else check_index("slice", slice_index, count)
    plane_mm = plane_sides(sides, axis)
    plane = Image.fromarray(window(display_plane(volume, axis, index).astype(np.float32)), "L")
    return with_cut(square_pixels(plane, *plane_mm, max_pixels),
                    cut_across(AXES[axis], AXES[acquired], stretch(*plane_mm)))


def describe(kind: str, data: bytes) -> SourceInfo:
    if kind == "dicom":
        ds = dataset(data, header_only=True)
        frames = frame_count(ds)
        if frames > 1:                          # the count is only believed once the pixels hold it
            check_frames(dataset(data, counted=True))
        shape = (frames, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
        return SourceInfo("dicom", f"DICOM {ds.get('Modality', '')}".strip(), shape, frames, frames // 2)
    import nibabel as nib
    header = _header(_nifti_head(data))
    shape = _shape3(header)
    affine = header.get_best_affine()
    ornt = nib.orientations.io_orientation(affine)
    ras = np.argsort(ornt[:, 0])                                         # voxel -> RAS+ order
    shape = tuple(int(shape[int(i)]) for i in ras)
    axis = acquired_axis(spacing(affine)[ras], shape)
    name = "NIfTI-2" if isinstance(header, nib.Nifti2Header) else "NIfTI-1"
    return SourceInfo("nifti", name, shape, shape[axis], shape[axis] // 2)
