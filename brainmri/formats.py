"""How far Pillow may parse a picture file in Python: each format's structure, checked before
Pillow opens the file (or, for two, once it has read the header alone), from lengths and
counts up to a cap.

    from brainmri.formats import check_structure, check_opened
    check_structure(data)     # PNG chunks, JPEG segments and scans, PGM/PPM header, TIFF tags, GIF blocks,
                              # JPEG 2000 tiles
    check_opened(image)       # run-length compressed BMP, EXIF size

Pillow's C decoders are bounded by the pixel cap (`inputs.MAX_PIXELS`), but much of a file is
read by Pillow's Python code, one chunk, segment, tag, block or value at a time, and libjpeg
decodes every scan of a progressive JPEG over the whole picture: a small upload built of
millions of such parts would hold a worker for seconds to hours; OpenJPEG, likewise, sets
up and decodes each tile of a JPEG 2000 on its own (and `jpeg2000_levels` tells `brainmri.io`
whether a large one can be decoded at a reduced scale). Each cap sits far above what an encoder
writes for an image, and over it the file is refused with an `ImageLoadError` that says what
it holds and how to save it again. `brainmri.io` applies them to uploads; `brainmri.volumes`
applies the JPEG and JPEG 2000 ones to DICOM files' frames. Timed by `python -m
benchmarks.reading`.
"""
from __future__ import annotations

import re
import struct

from PIL import Image

from .inputs import MAX_SLICES, ImageLoadError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_CHUNKS = 1024                 # chunks besides the pixels (text, colour, time, private ones)
MAX_PNG_DATA_CHUNKS = 200_000         # pixel chunks (IDAT; APNG's fdAT): a 50 MiB image in 256-byte parts
MAX_JPEG_SEGMENTS = 1024              # segments before a JPEG's first scan (tables, EXIF, ICC parts...)
MAX_JPEG_PADDING = 2**16              # bytes between those segments (fill bytes and stray ones)
MAX_JPEG_SCANS = 32                   # scans (libjpeg's progressive JPEGs have 6 in grey, 10 in colour)
MAX_PNM_HEADER = 4 * 1024             # bytes a PGM/PPM header may take (Pillow reads it a byte at a time)
MAX_PLAIN_PNM_VALUES = 512 * 512 * 3  # values of a plain (ASCII) PGM/PPM: Pillow parses each in Python
PLAIN_PNM = {b"P1": 1, b"P2": 1, b"P3": 3}          # the plain formats, values a pixel
_PNM_COMMENT = re.compile(rb"#[^\r\n]*")            # a PNM header's comment, to the end of its line
MAX_TIFF_TAGS = 16_384                # directory entries of a TIFF's pages together (a page has tens)
_TIFF = {b"II*\0": ("<", 42), b"MM\0*": (">", 42), b"II+\0": ("<", 43), b"MM\0+": (">", 43)}
GIF_FRAMES_SAID = 16                  # a GIF's frames counted up to this, then "more than"
MAX_GIF_SHORT_BLOCKS = 4096           # a GIF's sub-blocks under 128 bytes, the ends of lists of them
                                      # included (encoders write 255-byte ones, the last of a list shorter)
MAX_GIF_EXTENSION_BYTES = 256 * 1024  # a GIF's comments and other extensions together
MAX_RLE_BMP_PIXELS = 1024 * 1024      # Pillow decodes RLE BMP in Python: a step a run, and a padded pixel
BMP_RLE = {1: "RLE8", 2: "RLE4"}      # the BMP compressions decoded in Python
MAX_EXIF_BYTES = 2**16                # a picture's EXIF (a JPEG's APP1 segment cannot hold more)
MAX_JPEG2000_TILES = 4096             # a JPEG 2000's tiles (encoders write one; large pictures, hundreds)
JPEG2000_CODESTREAM = b"\xff\x4f\xff\x51"            # SOC, then SIZ: a bare JPEG 2000 codestream
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"   # the JP2 file format's first box
MAX_JP2_BOXES = 64                    # boxes walked to find a JP2 file's codestream (it has a handful)
MAX_JPEG2000_MARKERS = 256            # main-header segments walked to find its coding style (it has a few)


def check_structure(data: bytes) -> None:
    """The check of `data`'s format among those below (PNG, JPEG, PGM/PPM, TIFF, GIF, JPEG
    2000), before Pillow opens it; nothing for other formats."""
    if data.startswith(PNG_SIGNATURE):
        check_png_chunks(data)
    elif data.startswith(b"\xff\xd8\xff"):
        check_jpeg_segments(data)
    elif data[:1] == b"P" and data[1:2] and data[1] in b"0123456fy":    # what Pillow opens as PPM
        check_pnm_header(data)
    elif data[:4] in _TIFF:
        check_tiff_tags(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        check_gif_blocks(data)
    elif data.startswith((JPEG2000_CODESTREAM, JP2_SIGNATURE)):
        check_jpeg2000_tiles(data)


def check_png_chunks(data: bytes) -> None:
    """ImageLoadError when a PNG lists more chunks than an image has. Pillow reads a PNG's
    chunks one at a time in Python, so a file of millions of empty chunks would hold a worker
    for as long as it reads them; here only their headers are walked, up to the caps."""
    at, other, pixels = len(PNG_SIGNATURE), 0, 0
    while at + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        if kind == b"IEND":
            return
        pixels, other = (pixels + 1, other) if kind in (b"IDAT", b"fdAT") else (pixels, other + 1)
        if other > MAX_PNG_CHUNKS or pixels > MAX_PNG_DATA_CHUNKS:
            what = (f"{MAX_PNG_CHUNKS:,} chunks besides its pixels" if other > MAX_PNG_CHUNKS
                    else f"{MAX_PNG_DATA_CHUNKS:,} pixel chunks")
            raise ImageLoadError(f"this PNG file holds more than {what}, far more than an image "
                                 "has; save the image again as PNG or JPEG")
        at += 12 + length


def check_pnm_header(data: bytes) -> None:
    """ImageLoadError when a PGM/PPM (PNM) header runs past MAX_PNM_HEADER bytes, or a plain
    (ASCII) one declares more than MAX_PLAIN_PNM_VALUES values. Pillow reads a PNM header, its
    comments included, one byte at a time in Python, and a plain PNM's values one at a time,
    so a file of millions of comment lines, or a large plain picture, would hold a worker;
    here the header's first bytes are split into fields, its comments blanked out, and the
    last field must end in them."""
    magic = data[:2]
    needed = 3 if magic in (b"P1", b"P4") else 4        # the magic, width, height[, maxval]
    head = _PNM_COMMENT.sub(b"", data[:MAX_PNM_HEADER])
    fields = head.split(None, needed)
    ended = len(fields) > needed or (len(fields) == needed and head[-1:].isspace())
    if not ended and len(data) > MAX_PNM_HEADER:     # (a shorter file is Pillow's to judge)
        raise ImageLoadError(f"this PGM/PPM file's header runs past {MAX_PNM_HEADER // 1024} KiB, far "
                             "longer than an image's (comments?); save the image again as PNG")
    if magic in PLAIN_PNM and len(fields) > 2 and fields[1].isdigit() and fields[2].isdigit():
        width, height = int(fields[1]), int(fields[2])
        if width * height * PLAIN_PNM[magic] > MAX_PLAIN_PNM_VALUES:
            raise ImageLoadError(f"this is a plain (ASCII) PGM/PPM file of {width}x{height} pixels, whose "
                                 f"values are read slowly, up to {MAX_PLAIN_PNM_VALUES:,} of them; save "
                                 "the image again as PNG (or binary PGM)")


def check_tiff_tags(data: bytes) -> None:
    """ImageLoadError when the directories of a TIFF's pages (up to MAX_SLICES + 1 of them)
    list more than MAX_TIFF_TAGS entries together. Pillow parses each entry in Python, on
    opening a page and on walking the pages to count them, so a file of pages of tens of
    thousands of tags would hold a worker; here only each directory's count and link to the
    next are read (classic TIFF and BigTIFF)."""
    order, version = _TIFF[data[:4]]
    count, width, link = ("H", 12, "I") if version == 42 else ("Q", 20, "Q")
    count, link = struct.Struct(order + count), struct.Struct(order + link)
    at = link.unpack_from(data, 4 if version == 42 else 8)[0] if len(data) >= 16 else 0
    tags, seen = 0, set()
    while at and at not in seen and len(seen) <= MAX_SLICES and at + count.size <= len(data):
        seen.add(at)
        entries = count.unpack_from(data, at)[0]
        tags += entries
        if tags > MAX_TIFF_TAGS:
            raise ImageLoadError(f"this TIFF file's directories list more than {MAX_TIFF_TAGS:,} tags, far "
                                 "more than an image's; save the image again as PNG or TIFF")
        at += count.size + entries * width
        at = link.unpack_from(data, at)[0] if at + link.size <= len(data) else 0


def _colour_table(flags: int) -> int:
    """The bytes of a GIF colour table that `flags` (a screen's or an image's) declares."""
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def check_gif_blocks(data: bytes) -> None:
    """ImageLoadError when a GIF holds more than MAX_GIF_SHORT_BLOCKS sub-blocks under 128 bytes
    (each list of them ends with an empty one), or more than MAX_GIF_EXTENSION_BYTES of
    comments and other extensions. Pillow reads a GIF's extensions, and a picture's sub-blocks
    when it walks past a frame, one sub-block at a time in Python, and joins comments by
    copying what it has each time, so a small file of tiny blocks or empty extensions would
    hold a worker. Here only the blocks' lengths are read, up to the caps, over the first
    GIF_FRAMES_SAID + 1 pictures (more is an animation, refused once Pillow has counted them);
    a file that does not parse is left to Pillow."""
    at = 13 + _colour_table(data[10]) if len(data) > 13 else len(data)
    short = extensions = pictures = 0
    while at < len(data) and data[at] != 0x3B and pictures <= GIF_FRAMES_SAID:   # to the trailer
        if data[at] == 0x21:                                # an extension: its label, then blocks
            at, extension = at + 2, True
        elif data[at] == 0x2C and at + 10 <= len(data):     # a picture: its descriptor, colour
            at, extension = at + 11 + _colour_table(data[at + 9]), False   # table, LZW code size
            pictures += 1
        else:
            return
        while at < len(data):
            size = data[at]
            at, short = at + 1 + size, short + (size < 128)
            extensions += size if extension else 0
            if short > MAX_GIF_SHORT_BLOCKS or extensions > MAX_GIF_EXTENSION_BYTES:
                what = (f"more than {MAX_GIF_SHORT_BLOCKS:,} short blocks" if short > MAX_GIF_SHORT_BLOCKS else
                        f"more than {MAX_GIF_EXTENSION_BYTES // 1024} KiB of comments and other extensions")
                raise ImageLoadError(f"this GIF file holds {what}, far more than an image needs; "
                                     "save the image again as PNG")
            if size == 0:
                break


def check_opened(image: Image.Image) -> None:
    """ImageLoadError when a picture Pillow has opened (its header parsed, no pixel decoded)
    would be read by Python code of Pillow's at a cost its caps do not bound: a run-length
    compressed BMP over MAX_RLE_BMP_PIXELS (Pillow decodes RLE in Python, a step for each run
    and each pixel it pads a line with), or EXIF over MAX_EXIF_BYTES (the app reads the
    orientation, and Pillow parses every EXIF entry in Python; a JPEG's cannot be larger)."""
    if len(image.info.get("exif") or b"") > MAX_EXIF_BYTES:
        raise ImageLoadError(f"this image's EXIF metadata takes more than {MAX_EXIF_BYTES // 1024} KiB, far "
                             "more than a picture's; save the image again as PNG")
    rle = BMP_RLE.get(image.info.get("compression")) if image.format == "BMP" else None
    if rle and image.width * image.height > MAX_RLE_BMP_PIXELS:
        raise ImageLoadError(f"this BMP file is run-length compressed ({rle}) and {image.width}x"
                             f"{image.height} pixels; such files are read up to {MAX_RLE_BMP_PIXELS:,} pixels "
                             "(their decoder is slow); save the image again as PNG")


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


def check_jpeg2000_tiles(data: bytes, what: str = "this JPEG 2000 file",
                         advice: str = "save the image again as PNG") -> None:
    """ImageLoadError when a JPEG 2000 (a bare codestream, or a JP2 file's first codestream
    box, as OpenJPEG reads it) is cut into more than MAX_JPEG2000_TILES tiles, counted from
    its SIZ marker's picture and tile sizes. OpenJPEG sets up and decodes each tile on its own,
    so a small file of tens of thousands of tiles holds a worker for seconds. A codestream not
    found or not parsed here is left to the decoder."""
    at = _jp2_codestream(data) if data.startswith(JP2_SIGNATURE) else 0
    if at is None or data[at:at + 4] != JPEG2000_CODESTREAM or len(data) < at + 40:
        return
    width, height, _, _, tile_w, tile_h, tile_x, tile_y = struct.unpack_from(">8I", data, at + 8)
    if not tile_w or not tile_h or tile_x > width or tile_y > height:
        return                                          # invalid: OpenJPEG refuses it
    tiles = -(-(width - tile_x) // tile_w) * -(-(height - tile_y) // tile_h)
    if tiles > MAX_JPEG2000_TILES:
        raise ImageLoadError(f"{what} is cut into {tiles:,} tiles of {tile_w}x{tile_h} pixels, far "
                             f"more than an image has (up to {MAX_JPEG2000_TILES:,} are read); {advice}")


def jpeg2000_levels(data: bytes) -> int | None:
    """The fewest wavelet levels a JPEG 2000 (a bare codestream, or a JP2 file's first
    codestream box) gives any of its components, from its main header's COD marker and the COC
    markers that override it: the picture is held at 1/2, 1/4 ... down to 1/2**levels of its
    size, and OpenJPEG can decode it at those scales alone. None where that header is not
    found or not parsed (left to the decoder)."""
    at = _jp2_codestream(data) if data.startswith(JP2_SIGNATURE) else 0
    if at is None or data[at:at + 4] != JPEG2000_CODESTREAM or len(data) < at + 42:
        return None
    component = 2 if struct.unpack_from(">H", data, at + 40)[0] > 256 else 1   # Csiz: COC's index size
    levels, at = [], at + 2                             # SIZ, then the other main-header segments
    for _ in range(MAX_JPEG2000_MARKERS):
        if at + 4 > len(data):
            return None
        marker, length = struct.unpack_from(">HH", data, at)
        if marker in (0xFF90, 0xFF93) or length < 2:    # a tile-part begins: the main header ends
            break
        where = {0xFF52: at + 9, 0xFF53: at + 5 + component}.get(marker)   # COD; COC
        if where is not None and where < min(at + 2 + length, len(data)):
            levels.append(data[where])
        at += 2 + length
    return min(levels) if levels else None


def _jp2_codestream(data: bytes) -> int | None:
    """Where a JP2 file's first contiguous-codestream box ("jp2c") begins its contents,
    walking the top-level boxes by their lengths; None where the walk ends without one."""
    at = 0
    for _ in range(MAX_JP2_BOXES):
        if at + 8 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, at)
        head = 8
        if length == 1 and at + 16 <= len(data):        # a 64-bit length follows
            length, head = struct.unpack_from(">Q", data, at + 8)[0], 16
        if kind == b"jp2c":
            return at + head
        if length < head:                               # 0: to the end of the file; or invalid
            return None
        at += length
    return None
