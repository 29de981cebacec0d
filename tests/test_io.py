"""brainmri.io / brainmri.volumes: every format, and a clear ImageLoadError for every bad input.

Real medical files come from the sample data shipped inside pydicom and nibabel.
"""
from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIB_DATA
from PIL import Image, ImageFile
from pydicom.data import get_testdata_file

from brainmri import volumes
from brainmri.inputs import MAX_SLICES
from brainmri.formats import GIF_FRAMES_SAID
from brainmri.io import ImageLoadError, describe, load_image, to_grey
from brainmri.presets import EvalPreset
from brainmri.scans import Limits, dicom_series_key, read_scan
from brainmri.volumes import sniff, window, unpack_gzip

from .synthetic import scan, zipped


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def dicom_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def nifti_bytes(volume: np.ndarray, affine=None, version: int = 1, gz: bool = True) -> bytes:
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    raw = cls(volume, np.eye(4) if affine is None else affine).to_bytes()
    return gzip.compress(raw) if gz else raw


def refused(source, match: str, **kwargs) -> None:
    with pytest.raises(ImageLoadError, match=match):
        load_image(source, **kwargs)


# ----------------------------------------------------------------------------- ordinary images
GREY = np.asarray(scan(3, size=64))


@pytest.mark.parametrize("fmt, mode, lossless", [
    ("PNG", "L", True), ("PNG", "RGB", True), ("PNG", "RGBA", True), ("PNG", "P", True),
    ("BMP", "RGB", True), ("TIFF", "L", True), ("TIFF", "CMYK", True), ("WEBP", "RGB", False),
    ("JPEG", "L", False), ("JPEG", "RGB", False), ("JPEG", "CMYK", False), ("GIF", "L", True)])
def test_formats_and_modes_decode_to_the_same_grey(fmt, mode, lossless):
    image = Image.fromarray(GREY, "L").convert(mode)
    loaded = load_image(encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    grey = to_grey(loaded)
    assert grey.shape == GREY.shape and grey.dtype == np.uint8
    error = np.abs(grey.astype(int) - GREY).mean()
    assert error < (1.5 if lossless else 6), (fmt, mode, error)


def test_sixteen_bit_png_is_scaled_to_the_full_range():
    ramp = np.tile(np.linspace(1000, 60000, 64), (32, 1)).astype(np.uint16)
    loaded = load_image(encode(Image.fromarray(ramp), "PNG"))
    grey = to_grey(loaded)
    assert grey.min() == 0 and grey.max() == 255 and (np.diff(grey[0].astype(int)) >= 0).all()


def test_format_is_decided_by_content_not_name(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    path.write_bytes(encode(Image.fromarray(GREY), "PNG"))
    assert np.array_equal(to_grey(load_image(path)), GREY)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6                                     # stored sideways: rotate 90 degrees
    loaded = load_image(encode(Image.new("L", (40, 20)), "JPEG", exif=exif))
    assert loaded.size == (20, 40)


def test_multipage_tiff_frame_choice():
    pages = [Image.new("L", (32, 32), v) for v in (10, 200)]
    data = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert describe(data).frames == 2
    assert to_grey(load_image(data)).mean() == 10
    assert to_grey(load_image(data, frame=1)).mean() == 200
    refused(data, "frame 2 is out of range", frame=2)


def test_a_tiff_of_more_pages_than_a_scan_may_hold_is_refused_before_walking_them_all():
    """Pillow's n_frames walks every page, in time that grows faster than their number; pages
    are counted up to the cap. The last page allowed still reads."""
    page = Image.new("L", (16, 16), 7)
    at_cap = encode(page, "TIFF", save_all=True, append_images=[page] * (MAX_SLICES - 1))
    assert describe(at_cap).frames == MAX_SLICES
    assert load_image(at_cap, frame=MAX_SLICES - 1).size == (16, 16)
    over = encode(page, "TIFF", save_all=True, append_images=[page] * MAX_SLICES)
    for read in (describe, load_image):
        with pytest.raises(ImageLoadError, match=f"more than {MAX_SLICES} pages, over the limit"):
            read(over)


def test_plain_callers_are_unchanged():
    pil = Image.fromarray(GREY)
    assert load_image(pil) is pil
    assert load_image(GREY).size == (64, 64)
    assert EvalPreset(size=32).prepare(encode(pil, "PNG")).tensor.shape == (3, 32, 32)


# ----------------------------------------------------------------------------- bad input
def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    refused(tmp_path / "empty.jpg", "empty")
    refused(b"", "empty")


def test_missing_file_names_no_directory(tmp_path):
    with pytest.raises(ImageLoadError) as info:
        load_image(tmp_path / "nothing.png")
    assert str(tmp_path) not in str(info.value)


def test_truncated_jpeg():
    data = encode(Image.fromarray(GREY), "JPEG")
    refused(data[: len(data) // 2], "damaged or truncated")


@pytest.mark.parametrize("content, name", [
    (b"patient notes, not a scan\n" * 10, "a text file"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "a PDF document"),
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(100), "a ZIP archive"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
    (bytes(range(256)) * 4, "not a readable image")])
def test_non_images_renamed_jpg_are_named(tmp_path, content, name):
    path = tmp_path / "scan.jpg"
    path.write_bytes(content)
    refused(path, name)


def test_a_zip_points_to_reading_it_whole(tmp_path):
    from .synthetic import dicom_series, head_volume, zipped
    series = tmp_path / "series.zip"
    series.write_bytes(zipped({f"IM{k}": f for k, f in enumerate(dicom_series(head_volume(4)))}))
    refused(series, "a .zip of one DICOM series is a whole scan: brainmri.scans.read_scan")


def _with_segments(jpeg: bytes, extra: bytes) -> bytes:
    return jpeg[:2] + extra + jpeg[2:]


def test_a_jpeg_of_more_segments_or_stray_bytes_than_an_image_has_is_refused_unparsed(monkeypatch):
    """Pillow reads the segments before a JPEG's first scan one at a time in Python, and any
    bytes between them one at a time: a 15 MiB JPEG of four million empty comments took
    seconds a read (`python -m benchmarks.reading`). Counted from their markers and lengths,
    such files are refused before Pillow opens them."""
    from PIL import JpegImagePlugin
    jpeg = encode(Image.fromarray(GREY), "JPEG")
    plain = np.asarray(load_image(jpeg))
    padded = _with_segments(jpeg, b"\xff\xfe\x00\x06note" * 50 + b"\xff" * 30)   # comments, fill bytes
    assert np.array_equal(np.asarray(load_image(padded)), plain)
    opened = []
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "_open", lambda image: opened.append(image))
    refused(_with_segments(jpeg, b"\xff\xfe\x00\x02" * 2000), "this JPEG file holds more than 1,024 "
            "segments before its picture, far more than an image has; save the image again")
    for stray in (b"\x07" * 70_000, b"\xff" * 70_000):             # junk, or fill bytes
        refused(_with_segments(jpeg, b"\xff\xfe\x00\x02" + stray), "more than 64 KiB of stray bytes")
    assert not opened


def _scans(jpeg: bytes, count: int) -> bytes:
    """A progressive `jpeg` with its last scan repeated until it has `count` scans."""
    last = jpeg.rindex(b"\xff\xda")
    return jpeg[:-2] + jpeg[last:-2] * (count - jpeg.count(b"\xff\xda")) + jpeg[-2:]


def test_a_progressive_jpeg_of_more_scans_than_an_image_has_is_refused_undecoded(monkeypatch):
    """libjpeg decodes each scan over the whole picture: a 96 KiB progressive JPEG of 1,000
    scans took seconds a read (`python -m benchmarks.reading`). Counted by their markers,
    more than MAX_JPEG_SCANS are refused before anything is decoded; an EXIF thumbnail's own
    scans, before the picture's, are not counted."""
    from brainmri.formats import MAX_JPEG_SCANS
    out = io.BytesIO()
    Image.fromarray(GREY).save(out, "JPEG", progressive=True)
    jpeg = out.getvalue()
    thumbnail = _with_segments(jpeg, b"\xff\xe1" + struct.pack(">H", 2 + 40 * 4) + b"\xff\xda\x00\x02" * 40)
    for most in (_scans(jpeg, MAX_JPEG_SCANS), _scans(thumbnail, MAX_JPEG_SCANS)):
        assert load_image(most).size == (64, 64)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    refused(_scans(jpeg, MAX_JPEG_SCANS + 1), f"this JPEG file holds more than {MAX_JPEG_SCANS} scans, "
            "far more than an image has \\(a progressive JPEG has about ten\\); save the image again")
    assert not decoded


def _jp2_boxes(jp2: bytes, before_codestream: bytes = b"", long_length: bool = False) -> bytes:
    """A JP2 file with `before_codestream` (boxes) put before its codestream box, whose
    length is written in the 64-bit form if `long_length`."""
    at = jp2.index(b"jp2c") - 4
    box = jp2[at:]
    if long_length:
        box = b"\x00\x00\x00\x01jp2c" + struct.pack(">Q", len(box) + 8) + box[8:]
    return jp2[:at] + before_codestream + box


def test_a_jpeg2000_of_more_tiles_than_an_image_has_is_refused_unopened(monkeypatch):
    """OpenJPEG sets up and decodes each tile of a JPEG 2000 on its own: a 1.8 MiB file of
    65,280 tiles took seconds a read (`python -m benchmarks.reading`). Counted from the SIZ
    marker (of a bare codestream, or of a JP2 file's codestream box, found past other boxes
    and a 64-bit box length), over MAX_JPEG2000_TILES are refused before Pillow opens them."""
    from PIL import Jpeg2KImagePlugin

    from brainmri.formats import MAX_JPEG2000_TILES
    ramp = Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (256, 1)))
    whole = np.asarray(load_image(encode(ramp, "JPEG2000")))
    xml = struct.pack(">I", 8 + 6) + b"xml <a/>\n "
    for bare in (True, False):                      # 16 tiles: read, bare or in a JP2 file
        tiled = encode(ramp, "JPEG2000", no_jp2=bare, tile_size=(64, 64), num_resolutions=1)
        assert np.array_equal(np.asarray(load_image(tiled)), whole)
    assert np.array_equal(np.asarray(load_image(_jp2_boxes(tiled, xml))), whole)
    opened = []
    monkeypatch.setattr(Jpeg2KImagePlugin.Jpeg2KImageFile, "_open", lambda image: opened.append(image))
    said = (f"this JPEG 2000 file is cut into 16,384 tiles of 2x2 pixels, far more than an image has "
            f"\\(up to {MAX_JPEG2000_TILES:,} are read\\); save the image again as PNG")
    for bare in (False, True):
        refused(encode(ramp, "JPEG2000", no_jp2=bare, tile_size=(2, 2), num_resolutions=1), said)
    many = encode(ramp, "JPEG2000", tile_size=(2, 2), num_resolutions=1)
    refused(_jp2_boxes(many, xml * 3, long_length=True), said)
    assert not opened


def _rle_bmp(width: int, height: int, bits: int = 8) -> bytes:
    """A BMP compressed with RLE8 (or RLE4), each line one run of its row's value."""
    colours = 1 << bits
    palette = b"".join(bytes([i * 255 // (colours - 1)] * 3) + b"\0" for i in range(colours))
    body = b"".join(bytes([min(width, 255), (y % colours) * (0x11 if bits == 4 else 1)])
                    + b"\x00\x00" for y in range(height)) + b"\x00\x01"
    start = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 1 if bits == 8 else 2, len(body),
                       2835, 2835, colours, 0)
    return b"BM" + struct.pack("<IHHI", start + len(body), 0, 0, start) + info + palette + body


def test_a_large_run_length_compressed_bmp_is_refused_undecoded(monkeypatch):
    """Pillow decodes RLE BMP in Python, a step for each run and for each pixel it pads a line
    with: a 17 KiB 4096x4096 file took seconds a read (`python -m benchmarks.reading`). Up to
    MAX_RLE_BMP_PIXELS they are read (here, bottom-up, each row its own value)."""
    from brainmri.formats import MAX_RLE_BMP_PIXELS
    small = np.asarray(load_image(_rle_bmp(64, 48)))
    assert small.shape == (48, 64) and (small[::-1, :1] == np.arange(48)[:, None]).all()
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    for bits, name in ((8, "RLE8"), (4, "RLE4")):
        refused(_rle_bmp(1025, 1024, bits), f"this BMP file is run-length compressed \\({name}\\) and "
                f"1025x1024 pixels; such files are read up to {MAX_RLE_BMP_PIXELS:,} pixels")
    assert not decoded


def test_a_pgm_of_a_long_header_or_many_plain_values_is_refused_unparsed(monkeypatch):
    """Pillow reads a PGM/PPM header a byte at a time and a plain (ASCII) one's values one at a
    time, in Python: a 2048x2048 plain PGM, or a 64x64 one after a million comment lines, took
    seconds a read (`python -m benchmarks.reading`). Their headers' fields are found first."""
    from PIL import PpmImagePlugin

    from brainmri.formats import MAX_PLAIN_PNM_VALUES
    values = np.arange(48 * 64).reshape(48, 64) % 256
    plain = b"P2\n# made by hand\n64 48\n255\n" + " ".join(map(str, values.ravel())).encode()
    binary = b"P5 # a comment\n64 48 255\n" + values.astype(np.uint8).tobytes()
    spaces = b"P5\n64 48\n255\n" + b" " * (64 * 48)              # pixels that are all whitespace
    assert np.asarray(load_image(spaces)).shape == (48, 64)
    for pgm in (plain, binary):
        assert np.array_equal(np.asarray(load_image(pgm)), values)
    opened = []
    monkeypatch.setattr(PpmImagePlugin.PpmImageFile, "_open", lambda image: opened.append(image))
    refused(b"P5\n" + b"#\n" * 3_000 + b"64 48 255\n" + bytes(64 * 48), "this PGM/PPM file's header runs "
            "past 4 KiB, far longer than an image's \\(comments\\?\\); save the image again as PNG")
    refused(b"P5\n#" + b"x" * 5_000 + b"\n64 48 255\n" + bytes(64 * 48), "header runs past 4 KiB")
    refused(b"P5\n64 48 255#" + b"x" * 5_000 + b"\n" + bytes(64 * 48), "header runs past 4 KiB")
    refused(b"P3\n512 513\n255\n" + b"7 " * 100, "this is a plain \\(ASCII\\) PGM/PPM file of 512x513 "
            f"pixels, whose values are read slowly, up to {MAX_PLAIN_PNM_VALUES:,} of them; save")
    assert not opened


def test_a_tiff_of_far_more_tags_than_an_image_has_is_refused_unparsed(monkeypatch):
    """Pillow parses each TIFF directory entry in Python: a 4.6 MiB TIFF of 20 pages of 20,000
    tags each took seconds a read (`python -m benchmarks.reading`). Counted from each
    directory's entry count, in classic TIFF and BigTIFF alike, more than MAX_TIFF_TAGS are
    refused before Pillow opens the file."""
    from PIL import TiffImagePlugin

    from brainmri.formats import MAX_TIFF_TAGS
    pages = [Image.fromarray(GREY)] * 2
    many = {10000 + i: i % 65536 for i in range(MAX_TIFF_TAGS // 2 + 1)}       # private SHORT tags
    files = {}
    for big in (False, True):
        for name, tags in (("few", {}), ("many", many)):
            out = io.BytesIO()
            pages[0].save(out, "TIFF", save_all=True, append_images=pages[1:], tiffinfo=tags, big_tiff=big)
            files[name, big] = out.getvalue()
    for big in (False, True):
        assert describe(files["few", big]).frames == 2
    opened = []
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "_open", lambda image: opened.append(image))
    for big in (False, True):
        refused(files["many", big], f"this TIFF file's directories list more than {MAX_TIFF_TAGS:,} tags, "
                "far more than an image's; save the image again as PNG or TIFF")
    assert not opened


def test_tiny_image():
    refused(encode(Image.new("L", (1, 1)), "PNG"), "only 1x1 pixels")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring width x height greyscale pixels but carrying a few rows: a bomb's header."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decoding of pixels fails the test: what is refused here is refused from the header
    alone, so its cost does not grow with the picture (timed in `python -m benchmarks.reading`)."""
    def load(self):
        raise AssertionError("the pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("side", [9_000, 40_000])     # Pillow's warning and its error range
def test_decompression_bomb_is_refused_before_decoding(side, no_decoding):
    data = png_header_only(side, side)
    assert len(data) < 64_000
    refused(data, "over the limit of 16,777,216 pixels")


def test_the_reading_benchmark_times_each_upload_and_says_what_the_app_did(tmp_path):
    from benchmarks import reading
    text = reading.main(["--repeats", "1", "--out", str(tmp_path / "reading.md")])
    assert (tmp_path / "reading.md").read_text() == text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| a")}
    assert "refused: the file is empty" in rows["an empty file (any refusal)"]
    assert "read 512x512" in rows["an ordinary scan"] and "read 2000x2000" in rows["a 4000x4000 PNG (under the cap)"]
    assert "refused: image is 8000x8000 pixels" in rows["an 8000x8000 PNG (over the cap)"]
    assert "refused: this PNG file holds more than 1,024 chunks" in rows["a 64x64 PNG of 400,000 empty chunks"]


def _png_chunk(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_with(chunks: bytes, where: bytes, split_pixels: int = 1) -> bytes:
    """GREY as a PNG with `chunks` inserted before the chunk `where` (b"IDAT" or b"IEND"),
    its pixel data split into `split_pixels` IDAT chunks."""
    data = encode(Image.fromarray(GREY), "PNG")
    start = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[start:start + 4])[0]
    pixels = data[start + 8:start + 8 + length]
    step = -(-len(pixels) // split_pixels)
    idat = b"".join(_png_chunk(b"IDAT", pixels[k:k + step]) for k in range(0, len(pixels), step))
    data = data[:start] + idat + data[start + 12 + length:]
    at = data.index(where) - 4
    return data[:at] + chunks + data[at:]


@pytest.mark.parametrize("where", [b"IDAT", b"IEND"])
def test_a_png_of_more_chunks_than_an_image_has_is_refused_before_pillow_reads_them(where, monkeypatch):
    """Pillow reads a PNG's chunks one at a time in Python: a few megabytes of empty chunks
    would hold a worker for seconds each read (`python -m benchmarks.reading` times it)."""
    from brainmri import formats
    text = b"".join(_png_chunk(b"tEXt", b"key\0value %d" % k) for k in range(1023))   # and IHDR
    assert np.array_equal(np.asarray(load_image(_png_with(text, where))), GREY)     # at the cap: read
    refused(_png_with(text + _png_chunk(b"prVt"), where),
            "this PNG file holds more than 1,024 chunks besides its pixels, far more than an image has")
    monkeypatch.setattr(formats, "MAX_PNG_DATA_CHUNKS", 8)                 # the pixel chunks' cap, made small
    assert np.array_equal(np.asarray(load_image(_png_with(b"", where, split_pixels=8))), GREY)
    refused(_png_with(b"", where, split_pixels=9), "this PNG file holds more than 8 pixel chunks")


def test_pixel_cap_is_a_parameter():
    refused(encode(Image.new("L", (64, 64)), "PNG"), "over the limit of 1,000 pixels", max_pixels=1000)


def test_animated_gif_is_refused_still_gif_is_fine():
    frames = [Image.new("L", (32, 32), v) for v in (0, 120, 240)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    refused(animated, "animated GIF \\(3 frames\\)")
    assert load_image(encode(frames[1], "GIF")).size == (32, 32)


def test_a_gif_of_more_frames_than_a_scan_has_slices_is_refused_without_walking_them_all(monkeypatch):
    """Pillow's n_frames walks every frame of a GIF in Python: a 4.8 MiB GIF of 100,000 tiny
    frames took half a second to refuse (`python -m benchmarks.reading`). An animation is
    refused whatever its count, so its frames are counted only up to GIF_FRAMES_SAID + 1."""
    frames = [Image.new("P", (16, 16), i % 2) for i in range(GIF_FRAMES_SAID + 40)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    from PIL import GifImagePlugin
    seen, seek = [], GifImagePlugin.GifImageFile.seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", lambda image, i: seen.append(i) or seek(image, i))
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(lambda image: pytest.fail("n_frames")))
    refused(animated, f"animated GIF \\(more than {GIF_FRAMES_SAID} frames\\)")
    assert max(seen) == GIF_FRAMES_SAID


def _gif_parts(gif: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """A one-picture GIF as (header, colour table and extensions; the picture's descriptor; its
    LZW data; the rest from its last sub-block's end on)."""
    at = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)       # past the colour table
    while gif[at] == 0x21:                                           # and any extensions
        at += 2
        while gif[at]:
            at += 1 + gif[at]
        at += 1
    start = at + 11 + (3 << ((gif[at + 9] & 7) + 1) if gif[at + 9] & 0x80 else 0)
    lzw, end = b"", start
    while gif[end]:
        lzw, end = lzw + gif[end + 1:end + 1 + gif[end]], end + 1 + gif[end]
    return gif[:at], gif[at:start], lzw, gif[end:]


def test_a_gif_of_tiny_blocks_or_long_comments_is_refused_unparsed(monkeypatch):
    """Pillow reads a GIF's extensions, and a picture's sub-blocks when it walks past a frame,
    one sub-block at a time in Python, and joins a comment's by copying it each time: a 1.9
    MiB GIF of a comment in a million one-byte blocks took half a minute a read (`python -m
    benchmarks.reading`). Counted from the blocks' lengths, such files are refused before
    Pillow opens them; a picture in one-byte blocks too, though it reads the same."""
    from PIL import GifImagePlugin

    from brainmri.formats import MAX_GIF_EXTENSION_BYTES, MAX_GIF_SHORT_BLOCKS
    gif = encode(Image.fromarray(GREY).convert("P"), "GIF")
    head, descriptor, lzw, tail = _gif_parts(gif)
    def blocks(payload: bytes, size: int) -> bytes:
        return b"".join(bytes([len(payload[i:i + size])]) + payload[i:i + size] for i in range(0, len(payload), size))
    plain = np.asarray(load_image(gif))
    comment = b"\x21\xfe" + blocks(b"made by hand", 255) + b"\x00"
    few = head + comment + descriptor + blocks(lzw, 64) + tail      # short blocks, but few
    assert np.array_equal(np.asarray(load_image(few)), plain)
    short = MAX_GIF_SHORT_BLOCKS + 1
    opened = []
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_open", lambda image: opened.append(image))
    for crafted in (head + b"\x21\xfe" + b"\x01a" * short + b"\x00" + descriptor + blocks(lzw, 255) + tail,
                    head + b"\x21\xfe\x00" * short + descriptor + blocks(lzw, 255) + tail,
                    head + descriptor + blocks(lzw + bytes(short), 1) + tail):
        refused(crafted, f"this GIF file holds more than {MAX_GIF_SHORT_BLOCKS:,} short blocks, far more "
                "than an image needs; save the image again as PNG")
    long_comment = b"\x21\xfe" + blocks(b"x" * (MAX_GIF_EXTENSION_BYTES + 1), 255) + b"\x00"
    refused(head + long_comment + descriptor + blocks(lzw, 255) + tail,
            f"more than {MAX_GIF_EXTENSION_BYTES // 1024} KiB of comments and other extensions")
    assert not opened


def test_a_picture_of_more_exif_than_a_jpeg_can_hold_is_refused_unparsed(monkeypatch):
    """The app reads a picture's EXIF orientation, and Pillow parses every EXIF entry in Python:
    a PNG's eXIf chunk of 65,535 tags took a third of a second a read (`python -m
    benchmarks.reading`). A JPEG's EXIF cannot exceed 64 KiB; a PNG's or WebP's over that is
    refused before it is parsed. An ordinary EXIF orientation still turns the picture."""
    from PIL import TiffImagePlugin

    from brainmri.formats import MAX_EXIF_BYTES
    picture = Image.fromarray(GREY[:, :48])                          # 48 wide, 64 high
    exif = Image.Exif()
    exif[0x0112] = 6                                                # orientation: turned 90 degrees
    for fmt in ("PNG", "WEBP"):
        assert load_image(encode(picture, fmt, exif=exif.tobytes(), lossless=True)).size == (64, 48)
    for tag in range(MAX_EXIF_BYTES // 12 + 1):
        exif[10000 + tag] = tag
    parsed = []
    monkeypatch.setattr(TiffImagePlugin.ImageFileDirectory_v2, "load", lambda ifd, fp: parsed.append(ifd))
    for fmt in ("PNG", "WEBP"):
        refused(encode(picture, fmt, exif=exif.tobytes(), lossless=True), "this image's EXIF metadata "
                f"takes more than {MAX_EXIF_BYTES // 1024} KiB, far more than a picture's; save the image again")
    assert not parsed


def test_file_over_the_size_limit(tmp_path):
    data = encode(Image.fromarray(GREY), "PNG")
    (tmp_path / "big.png").write_bytes(data)
    refused(tmp_path / "big.png", "over the limit", max_bytes=len(data) - 1)
    refused(data, "over the limit", max_bytes=len(data) - 1)


# ----------------------------------------------------------------------------- DICOM
def test_mr_dicom_uses_its_window():
    path = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    expected = window(ds.pixel_array.astype(np.float32), centre, width)
    loaded = load_image(path)
    assert loaded.mode == "L" and np.array_equal(np.asarray(loaded), expected)
    assert describe(path) == describe(Path(path).read_bytes())
    assert describe(path).kind == "dicom" and describe(path).shape == (1, 64, 64)


def test_ct_dicom_rescales_then_uses_percentiles():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert "WindowCenter" not in ds
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(np.asarray(load_image(path)), window(hu))
    assert np.asarray(EvalPreset(size=32).prepare(path).tensor).shape == (3, 32, 32)


def test_dicom_found_by_content_even_without_preamble(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    expected = np.asarray(load_image(get_testdata_file("MR_small.dcm")))
    ds.preamble = None
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False)
    assert buf.getvalue()[128:132] != b"DICM" and sniff(buf.getvalue()) == "dicom"
    (tmp_path / "scan.jpg").write_bytes(buf.getvalue())
    assert np.array_equal(np.asarray(load_image(tmp_path / "scan.jpg")), expected)


def test_monochrome1_is_inverted():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    normal = np.asarray(load_image(dicom_bytes(ds)))
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert np.array_equal(np.asarray(load_image(dicom_bytes(ds))), 255 - normal)


def test_multiframe_dicom_middle_frame_by_default():
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for name in ("WindowCenter", "WindowWidth"):
        del ds[name]
    base = ds.pixel_array.astype(np.uint16)
    frames = np.stack([np.full_like(base, 100 * (i + 1)) + (base > base.mean()) for i in range(5)])
    ds.NumberOfFrames, ds.PixelData = 5, frames.tobytes()
    data = dicom_bytes(ds)
    info = describe(data)
    assert (info.frames, info.default, info.shape) == (5, 2, (5, 64, 64))
    assert np.array_equal(np.asarray(load_image(data)), window(frames[2].astype(np.float32)))
    assert np.array_equal(np.asarray(load_image(data, frame=4)), window(frames[4].astype(np.float32)))
    refused(data, "frame 5 is out of range", frame=5)


def test_real_multiframe_colour_dicom():
    path = get_testdata_file("examples_ybr_color.dcm")
    info = describe(path)
    assert (info.frames, info.default) == (30, 15)
    first, last = load_image(path, frame=0), load_image(path, frame=29)
    assert first.mode == "RGB" and first.size == (320, 240)
    assert not np.array_equal(np.asarray(first), np.asarray(last))


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm", "rtstruct.dcm"])
def test_dicom_without_pixel_data(name):
    refused(get_testdata_file(name), "no pixel data")


def test_truncated_dicom():
    refused(get_testdata_file("MR_truncated.dcm"), "damaged or truncated")


def test_a_palette_colour_dicom_without_its_palette_is_refused_as_damaged():
    """pydicom's own ValueError reached the caller, not an ImageLoadError, and the app and the
    batch command showed its words ("No suitable Palette Color Lookup Table Module found")."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    buf = io.BytesIO()
    ds.save_as(buf)
    refused(buf.getvalue(), "damaged: its pixels are PALETTE COLOR but its colour palette cannot be read")


def _deflated(elements: bytes, zeros: int = 0, stream: bytes | None = None) -> bytes:
    """A deflated DICOM file (explicit VR little endian data set, raw deflate) holding
    `elements`, then a private OB element of `zeros` zero bytes, compressed as it is written;
    or the file meta followed by `stream` as it is."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = pydicom.uid.MRImageStorage, "1.2.3"
    meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    head = io.BytesIO()
    head.write(bytes(128) + b"DICM")
    pydicom.filewriter.write_file_meta_info(head, meta)
    if stream is not None:
        return head.getvalue() + stream
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(elements)
    if zeros:
        body += deflate.compress(b"\x09\x00\x10\x10OB\0\0" + struct.pack("<I", zeros))
        chunk = bytes(2**24)
        for start in range(0, zeros, len(chunk)):
            body += deflate.compress(chunk[: zeros - start])
    return head.getvalue() + body + deflate.flush()


def test_a_deflated_dicom_reads_as_pydicom_reads_it_and_a_deflate_bomb_is_refused(monkeypatch, tmp_path):
    """Deflated DICOM (PS3.5 A.5) is inflated here within a bound: pydicom inflates without
    one, so a small file could take gigabytes of memory before it was refused."""
    path = get_testdata_file("image_dfl.dcm")
    theirs = pydicom.dcmread(path)                                   # pydicom's own inflating
    assert np.array_equal(np.asarray(load_image(path)),
                          np.asarray(volumes.picture(theirs, *volumes.frame_values(theirs, 0))))
    whole = _deflated(b"\x08\x00\x60\x00CS\x02\x00MR", zeros=64)
    assert volumes.inflated(whole).endswith(bytes(64)) and volumes.inflated(b"not DICOM") == b"not DICOM"
    refused(whole[:-20], "the deflated DICOM file is truncated")
    refused(_deflated(b"", stream=b"\xff" * 40), "the deflated DICOM file is damaged")
    monkeypatch.setattr(volumes, "MAX_VOLUME_BYTES", 2**20)          # the bound, made small
    bomb = _deflated(b"\x08\x00\x60\x00CS\x02\x00MR", zeros=2**20 + 1)
    # a file on its own may inflate to what a scan may hold; one in an archive, to what one
    # file of it may unpack to
    for read in (load_image, describe, lambda d: read_scan(d, limits=Limits(total_bytes=2**20)),
                 lambda d: read_scan(zipped({"a.dcm": d}), limits=Limits(file_bytes=2**20))):
        with pytest.raises(ImageLoadError, match="the deflated DICOM file's data set unpacks to "
                           "more than 1 MiB, over the limit"):
            read(bomb)
    (tmp_path / "bomb.dcm").write_bytes(bomb)                        # a batch folder's listing
    assert dicom_series_key(tmp_path / "bomb.dcm") is None
    assert dicom_series_key(path) == theirs.SeriesInstanceUID


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"])
def test_lossless_dicom_compressions_read_as_the_uncompressed_file(name):
    """JPEG 2000 (Pillow's decoder) and RLE (brainmri.dicom_codecs'): the same picture as the uncompressed
    original, pixel for pixel."""
    original = get_testdata_file("MR_small.dcm")
    assert np.array_equal(np.asarray(load_image(get_testdata_file(name))), np.asarray(load_image(original)))


def test_dicom_compression_without_a_decoder_is_named(tmp_path):
    """A transfer syntax no installed plugin decodes (High-Throughput JPEG 2000 needs
    pylibjpeg-openjpeg) is refused with the name of its compression."""
    from pydicom.pixels import get_decoder
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.HTJ2KLossless
    ds.save_as(path := tmp_path / "htj2k.dcm")
    if get_decoder(pydicom.uid.HTJ2KLossless).is_available:
        pytest.skip("a High-Throughput JPEG 2000 decoder is installed")
    refused(path, "compressed as 'High-Throughput JPEG 2000.*', which this server cannot decode")


# ----------------------------------------------------------------------------- NIfTI
ANATOMICAL = Path(NIB_DATA) / "anatomical.nii"


def test_real_nifti_middle_axial_slice_and_axes():
    info = describe(ANATOMICAL)
    assert (info.kind, info.shape, info.frames, info.default) == ("nifti", (33, 41, 25), 25, 12)
    assert load_image(ANATOMICAL).size == (33, 41)                   # axial: X wide, Y high
    assert load_image(ANATOMICAL, axis=0).size == (41, 25)           # sagittal: Y wide, Z high
    assert load_image(ANATOMICAL, axis=1, slice_index=0).size == (33, 25)
    assert not np.array_equal(np.asarray(load_image(ANATOMICAL, slice_index=5)),
                              np.asarray(load_image(ANATOMICAL)))
    refused(ANATOMICAL, "slice 25 is out of range", slice_index=25)
    refused(ANATOMICAL, "axis must be 0", axis=3)


@pytest.mark.parametrize("flip_x", [False, True])
def test_nifti_slices_are_shown_as_radiology_viewers_do(flip_x):
    volume = np.zeros((20, 30, 40), np.float32)
    right = slice(0, 5) if flip_x else slice(15, 20)        # voxels on the patient's right
    volume[right, 25:, :] = 1.0                             # right and anterior
    affine = np.diag([-1.0 if flip_x else 1.0, 1, 1, 1])
    grey = np.asarray(load_image(nifti_bytes(volume, affine)))
    assert grey.shape == (30, 20)
    assert grey[:5, :5].min() == 255 and grey[5:, :].max() == 0 and grey[:, 5:].max() == 0


@pytest.mark.parametrize("version", [1, 2])
def test_nifti_header_extensions_are_not_parsed_to_read_the_volume(version, monkeypatch):
    """nibabel parses a NIfTI file's header extensions one at a time in Python: a 167 KiB
    .nii.gz of two million empty ones held a worker for seconds (`python -m
    benchmarks.reading`). The voxels do not need them: a volume with extensions reads as the
    same volume without, scaled and placed as nibabel reads it, and none is parsed."""
    rng = np.random.default_rng(version)
    volume = rng.integers(0, 4000, (24, 20, 6)).astype(np.int16)
    affine = np.array([[-0.9, 0, 0, 10], [0, 1.1, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    image = (nib.Nifti1Image if version == 1 else nib.Nifti2Image)(volume, affine)
    image.header.set_slope_inter(0.5, 7.0)
    plain = gzip.compress(image.to_bytes())
    for i in range(200):
        image.header.extensions.append(nib.nifti1.Nifti1Extension(6, f"comment {i}".encode()))
    extended = gzip.compress(image.to_bytes())
    ours = volumes.nifti_volume(extended)
    parsed = []
    monkeypatch.setattr(nib.nifti1.Nifti1Extensions, "from_fileobj", lambda *a, **k: parsed.append(a))
    assert len(volumes.nifti_volume(extended)[0]) and not parsed
    monkeypatch.undo()
    theirs = nib.Nifti1Image.from_bytes(gzip.decompress(extended)) if version == 1 else \
        nib.Nifti2Image.from_bytes(gzip.decompress(extended))
    assert len(theirs.header.extensions) == 200
    expected = volumes.to_ras(np.asanyarray(theirs.dataobj).astype(np.float32), theirs.affine)
    assert np.array_equal(ours[0], expected[0]) and np.allclose(ours[1], expected[1])
    assert np.array_equal(np.asarray(load_image(extended)), np.asarray(load_image(plain)))


def test_nifti2_and_uncompressed_and_2d():
    volume = np.random.default_rng(0).normal(size=(24, 24, 6)).astype(np.float32)
    a = load_image(nifti_bytes(volume, version=2))
    b = load_image(nifti_bytes(volume, gz=False))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert describe(nifti_bytes(volume, version=2)).format == "NIfTI-2"
    assert load_image(nifti_bytes(volume[:, :, 0])).size == (24, 24)


def test_four_d_nifti_is_refused():
    refused(Path(NIB_DATA) / "example4d.nii.gz", "4-D \\(128x96x24x2: 2 volumes")
    single = nifti_bytes(np.ones((20, 20, 4, 1), np.float32))   # a trailing 1 is still 3-D
    assert load_image(single).size == (20, 20)


def test_nifti_header_without_data_truncated_and_bomb():
    refused(Path(NIB_DATA) / "nifti1.hdr", "header \\(.hdr\\) without its image data")
    volume = np.random.default_rng(0).normal(size=(32, 32, 8)).astype(np.float32)
    for gz in (True, False):
        data = nifti_bytes(volume, gz=gz)
        refused(data[: len(data) // 2], "truncated")
    with pytest.raises(ImageLoadError, match="unpacks to more than"):
        unpack_gzip(gzip.compress(bytes(10_000)), limit=1_000)


def test_a_nifti_volume_is_bounded_by_its_header_and_unpacked_only_as_far_as_its_voxels(monkeypatch):
    """A .nii.gz of a few hundred KiB can unpack to the byte limit: a volume whose header
    declares more than MAX_VOXELS voxels, or more bytes than the limit, is refused with
    nothing past the header unpacked (read as a slice or as a whole scan); one followed by
    more than its voxels is unpacked only as far as they go, and read as it is without."""
    from brainmri.inputs import MAX_VOXELS
    from brainmri.scans import read_scan
    unpacked, inflate = [], volumes.inflate
    monkeypatch.setattr(volumes, "inflate", lambda *a, **k: unpacked.append(inflate(*a, **k)) or unpacked[-1])

    def declared(shape, dtype) -> bytes:                    # the header alone: no voxels follow
        header = (nib.Nifti1Header if max(shape) < 2**15 else nib.Nifti2Header)()
        header.set_data_shape(shape)
        header.set_data_dtype(dtype)
        header["vox_offset"] = len(header.binaryblock) + 4
        return gzip.compress(header.binaryblock + bytes(4))
    big = declared((800, 800, 800), np.uint8)
    said = f"the volume is 800x800x800 voxels, over the limit of {MAX_VOXELS:,} voxels"
    refused(big, said)
    with pytest.raises(ImageLoadError, match=said):
        read_scan(big)
    refused(declared((512, 512, 512), np.float64), "unpacks to more than 512 MiB, over the limit")
    refused(declared((2**21,) * 3, np.uint8), "the volume is 2097152x2097152x2097152 voxels, over")  # 2**63
    assert not unpacked
    volume = np.random.default_rng(0).normal(size=(24, 20, 6)).astype(np.float32)
    plain = nifti_bytes(volume, gz=False)
    assert np.array_equal(np.asarray(load_image(gzip.compress(plain + bytes(2**20)))),
                          np.asarray(load_image(gzip.compress(plain))))
    assert len(unpacked[0]) == len(plain) == 352 + volume.nbytes


def test_an_image_over_the_pixel_cap_is_refused_from_its_header(no_decoding):
    big = encode(Image.new("L", (8000, 8000)), "PNG")               # a real, fully valid PNG
    refused(big, "8000x8000 pixels, over the limit of 16,777,216 pixels")
    with pytest.raises(AssertionError, match="decoded"):     # under a higher cap it is decoded
        load_image(big, max_pixels=8000 * 8000)


@pytest.mark.parametrize("fmt, mode", [("JPEG", "L"), ("JPEG", "RGB"), ("PNG", "L"),
                                       ("PNG", "P"), ("PNG", "1"), ("PNG", "I;16")])
def test_max_side_reduces_early_by_a_whole_factor(fmt, mode):
    image = Image.fromarray(np.tile(np.linspace(0, 255, 3000, dtype=np.uint8), (2100, 1)))
    data = encode(image.convert(mode) if mode != "I;16" else
                  Image.fromarray(np.asarray(image, np.uint16) * 257), fmt)
    reduced = load_image(data, max_side=1024)
    # PNG: 3000 / 3; JPEG: decoded at 1/2 scale in draft mode, then halved again
    assert reduced.size == ((750, 525) if fmt == "JPEG" else (1000, 700))
    assert load_image(data).size == (3000, 2100)                   # by default: untouched
    assert load_image(encode(Image.new("L", (900, 500)), fmt), max_side=1024).size == (900, 500)
    grey = to_grey(reduced)
    assert grey[:, 0].max() < 20 and grey[:, -1].min() > 200      # still the same ramp


def test_a_large_jpeg2000_is_decoded_only_at_the_scale_needed(monkeypatch):
    """As JPEG's draft mode: OpenJPEG decodes the wavelet levels that give at least the size
    asked for (here 1/2 of 600x420), then `reduce_to` finishes. A file without those levels
    (its main header's COD, or a COC for one component) would be decoded whole: refused
    unread, as a damaged one is; one that fits is read whole, whatever its levels."""
    from PIL import Jpeg2KImagePlugin
    decoded, load = [], Jpeg2KImagePlugin.Jpeg2KImageFile.load

    def spy(self):
        out = load(self)
        decoded.append(self.size)
        return out
    monkeypatch.setattr(Jpeg2KImagePlugin.Jpeg2KImageFile, "load", spy)
    ramp = Image.fromarray(np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (420, 1)))
    reduced = load_image(encode(ramp, "JPEG2000"), max_side=200)
    assert set(decoded) == {(300, 210)} and reduced.size == (150, 105)
    grey = to_grey(reduced)
    assert grey[:, 0].max() < 20 and grey[:, -1].min() > 200      # still the same ramp
    decoded.clear()
    for bare in (False, True):
        flat = encode(ramp, "JPEG2000", num_resolutions=1, no_jp2=bare)
        refused(flat, "600x420 pixels and was saved with 0 wavelet levels, too few to read it at 200 "
                "pixels or less without decoding it whole; save the image again as PNG, or at most "
                "200 pixels across", max_side=200)
        assert load_image(flat, max_side=600).size == (600, 420)    # fits: read whole
        two = encode(ramp, "JPEG2000", num_resolutions=3, no_jp2=bare)
        assert load_image(two, max_side=100).size == (75, 53)      # 1/4 from its levels, then 1/2
        at = two.index(b"\xff\x52")                               # COD: one for every component
        coc = b"\xff\x53\x00\x09\x00\x00" + two[at + 9:at + 14]  # COC: component 0, 0 levels
        refused(two[:at] + coc.replace(two[at + 9:at + 10], b"\x00", 1) + two[at:],
                "was saved with 0 wavelet levels", max_side=200)
    assert set(decoded) == {(600, 420), (150, 105)}    # whole only where it fits; none refused
    decoded.clear()
    data = encode(ramp, "JPEG2000")
    refused(data[: len(data) // 2], "damaged or truncated")
    refused(data[: len(data) // 2], "damaged or truncated", max_side=200)


# ----------------------------------------------------------------------------- DICOM element counts
def _count_pydicom(ds) -> int:
    """Data elements and sequence items of a parsed data set, nested ones included."""
    return sum(1 + (sum(1 + _count_pydicom(item) for item in el.value) if el.VR == "SQ" else 0) for el in ds)


@pytest.mark.parametrize("name", ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "ExplVR_BigEndNoMeta.dcm", "rtplan.dcm", "waveform_ecg.dcm", "JPEG2000.dcm",
                                  "rtdose.dcm", "rtstruct.dcm", "SC_rgb_jpeg.dcm", "nested_priv_SQ.dcm"])
def test_dicom_elements_are_counted_from_their_headers_as_pydicom_parses_them(name):
    """count_elements walks headers only (explicit and implicit VR, big endian, raw data sets,
    sequences of defined and undefined length, encapsulated pixel data's fragments skipped):
    at least every element and item pydicom finds, and no more than twice as many (the
    delimiters and fragment items pydicom does not list)."""
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path, force=True)
    theirs = _count_pydicom(ds) + (_count_pydicom(ds.file_meta) if "file_meta" in dir(ds) else 0)
    ours = volumes.count_elements(Path(path).read_bytes(), cap=10**6)
    assert theirs <= ours <= 2 * theirs


def _many_elements(count: int, nested: bool = False) -> pydicom.Dataset:
    """MR_small with `count` empty private elements, at the top level or in a sequence's item."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    holder = pydicom.Dataset() if nested else ds
    holder.add_new((0x0009, 0x0010), "LO", "brainmri test")
    for i in range(count):
        holder.add_new((0x0009, 0x1000 + i), "UN", b"")
    if nested:
        ds.add_new((0x0011, 0x0010), "LO", "brainmri test")
        ds.add_new((0x0011, 0x1000), "SQ", pydicom.Sequence([holder]))
    return ds


@pytest.mark.parametrize("how", ["explicit", "implicit", "nested", "raw"])
def test_a_dicom_file_of_more_elements_than_an_image_has_is_refused_unparsed(how, monkeypatch, tmp_path):
    """pydicom parses each element in Python: a 50 MiB file of millions of empty ones held a
    worker for tens of seconds per read (`python -m benchmarks.reading`). Counted from the
    headers, it is refused before pydicom parses it; the cap is lowered here to keep the test
    small."""
    monkeypatch.setattr(volumes, "MAX_DICOM_ELEMENTS", 1000)
    ds = _many_elements(1000, nested=how == "nested")
    buf = io.BytesIO()
    if how == "implicit":
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(buf, enforce_file_format=True, implicit_vr=True)
    else:
        ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    if how == "raw":                                 # the data set alone: no preamble, no file meta
        data = data[144 + struct.unpack_from("<L", data, 140)[0]:]
    assert (data[128:132] == b"DICM") == (how != "raw")
    parsed = []
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: parsed.append(a))
    for read in (load_image, describe):
        with pytest.raises(ImageLoadError, match="this DICOM file holds more than 1,000 data elements, far "
                                                 "more than an image has"):
            read(data)
    if how != "raw":                                 # a batch folder's listing reads headers too
        (tmp_path / "many.dcm").write_bytes(data)
        assert dicom_series_key(tmp_path / "many.dcm") is None
    assert not parsed


def test_describe_counts_a_multiframe_files_elements_once(monkeypatch):
    """Its header is parsed, then (the frame count believed only once the pixels hold it) the
    whole file, its elements already counted."""
    path = Path(__file__).parent / "fixtures" / "lossless" / "frames12.dcm"
    counted, count = [], volumes.count_elements
    monkeypatch.setattr(volumes, "count_elements", lambda *a, **k: counted.append(1) or count(*a, **k))
    assert describe(path).frames == 3 and len(counted) == 1


def test_a_scan_of_more_elements_than_its_limit_together_is_refused():
    """Each file under its own cap, together over the scan's (`Limits.elements`)."""
    files = {}
    for i in range(4):
        ds = _many_elements(100)
        ds.ImagePositionPatient[2] += i
        ds.InstanceNumber, ds.SOPInstanceUID = i + 1, pydicom.uid.generate_uid(entropy_srcs=[str(i)])
        files[f"{i}.dcm"] = dicom_bytes(ds)
    per_file = volumes.count_elements(files["0.dcm"])
    data = zipped(files)
    assert len(read_scan(data, limits=Limits(elements=4 * per_file)).slices) == 4
    with pytest.raises(ImageLoadError, match=f"the DICOM files hold more than {4 * per_file - 1:,} data "
                                             "elements together, far more than a scan has"):
        read_scan(data, limits=Limits(elements=4 * per_file - 1))
