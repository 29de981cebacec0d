"""brainmri.dicom_codecs: JPEG Lossless and JPEG-LS DICOM read as their uncompressed
originals, and damaged streams are refused with a message without taking the process down or
holding it. JPEG and JPEG 2000 frames (decoded by Pillow through pydicom) whose own header
declares another size than the DICOM header's are refused before they are decoded.

The files in tests/fixtures/lossless are synthetic pictures compressed by DCMTK (`make.py`
there), an encoder independent of the decoders under test.
"""
from __future__ import annotations

import io
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from PIL import ImageFile
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames

from brainmri import dicom_codecs, volumes
from brainmri.io import ImageLoadError, describe, load_image
from brainmri.scans import read_scan
from tests.synthetic import scan

FIXTURES = Path(__file__).parent / "fixtures" / "lossless"
ORIGINALS = ("grey8", "grey12", "frames12", "rgb8")
LOSSLESS = ("sv1", "p14", "jls")         # JPEG Lossless .70 (first-order prediction) and .57; JPEG-LS
SYNTAX = {"sv1": pydicom.uid.JPEGLosslessSV1, "p14": pydicom.uid.JPEGLossless, "jls": pydicom.uid.JPEGLSLossless}
FRAME_HEADER = {"sv1": b"\xff\xc3", "p14": b"\xff\xc3", "jls": b"\xff\xf7"}   # SOF3; JPEG-LS's SOF55


def frames(path) -> np.ndarray:
    """Every frame's values, (frames, rows, columns[, 3]), as the app decodes them (before
    any window)."""
    ds = pydicom.dcmread(path)
    return np.stack([volumes.frame_values(ds, i)[0] for i in range(volumes.frame_count(ds))])


@pytest.mark.parametrize("kind", LOSSLESS)
@pytest.mark.parametrize("name", ORIGINALS)
def test_lossless_compressions_read_as_the_uncompressed_original(name, kind):
    path = FIXTURES / f"{name}-{kind}.dcm"
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == SYNTAX[kind]
    original = FIXTURES / f"{name}.dcm"
    assert np.array_equal(frames(path), frames(original))
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(load_image(original)))


def test_signed_jpeg_ls_reads_as_the_uncompressed_original():
    """pydicom's MR_small (signed 16-bit) and its JPEG-LS copy: JPEG-LS stores no sign, which
    pydicom restores from the stream's precision after this module decodes it."""
    assert pydicom.dcmread(get_testdata_file("MR_small.dcm")).PixelRepresentation == 1
    assert np.array_equal(frames(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")),
                          frames(get_testdata_file("MR_small.dcm")))


def test_near_lossless_jpeg_ls_reads_within_its_error_bound():
    """A phantom encoded here near-lossless (each value within NEAR = 2 of the original), in
    12 bits and as colour in both of pydicom's interleave modes' files."""
    y, x = np.mgrid[-1:1:96j, -1:1:80j]
    original = ((x ** 2 + y ** 2 < 0.8) * (1500 + 900 * np.cos(5 * x) * np.sin(3 * y))).astype(np.uint16)
    ds = pydicom.dcmread(FIXTURES / "grey12.dcm")
    ds.Rows, ds.Columns = original.shape
    ds.PixelData = encapsulate([bytes(imagecodecs.jpegls_encode(original, level=2))])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSNearLossless
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    decoded = frames(io.BytesIO(buf.getvalue()))[0]
    assert decoded.shape == original.shape and 0 < np.abs(decoded - original).max() <= 2
    line, sample = (frames(get_testdata_file(f"SC_rgb_jls_lossy_{mode}.dcm")) for mode in ("line", "sample"))
    assert line.shape == (1, 100, 100, 3) and np.array_equal(line, sample)


@pytest.mark.parametrize("kind", ["sv1", "jls"])
def test_a_compressed_multiframe_file_is_a_volume(kind):
    path = FIXTURES / f"frames12-{kind}.dcm"
    assert describe(path).frames == 3
    scan, original = read_scan(path.read_bytes()), read_scan((FIXTURES / "frames12.dcm").read_bytes())
    assert scan.source == "DICOM multi-frame" and len(scan.slices) == 3
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(scan.slices, original.slices))


def _with_frame(path: Path, frame: bytes, index: int = 0) -> bytes:
    """The file at `path` with its compressed frame `index` replaced by `frame`."""
    ds = pydicom.dcmread(path)
    frames = list(generate_frames(ds.PixelData, number_of_frames=volumes.frame_count(ds)))
    frames[index] = frame
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _first_frame(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    return next(generate_frames(ds.PixelData, number_of_frames=volumes.frame_count(ds)))


@pytest.mark.parametrize("kind", LOSSLESS)
def test_a_stream_larger_than_its_header_is_refused_before_it_is_allocated(kind):
    """The compressed stream's own frame header claims 60000 x 60000 pixels while the DICOM
    header says 40 x 48: decoded as the stream says, it would take gigabytes first."""
    stream = bytearray(_first_frame(FIXTURES / f"grey12-{kind}.dcm"))
    at = stream.index(FRAME_HEADER[kind])
    stream[at + 5:at + 9] = (60000).to_bytes(2, "big") * 2          # height, width
    what = "JPEG-LS" if kind == "jls" else "JPEG"
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match=f"the DICOM pixel data is damaged or truncated: the {what} "
                                                 "stream is damaged or not of the header's 48x40 pixels"):
            load_image(_with_frame(FIXTURES / f"grey12-{kind}.dcm", bytes(stream)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20


# Where a frame's own header declares its picture's size: JPEG's SOF0 (height, width; 2 bytes
# each) and JPEG 2000's SIZ marker (width, height; 4 bytes each), after the marker's first bytes.
SIZE_AT = {"SC_rgb_jpeg_dcmtk.dcm": (b"\xff\xc0", 5, 2), "examples_ybr_color.dcm": (b"\xff\xc0", 5, 2),
           "MR_small_jp2klossless.dcm": (b"\xff\x51", 6, 4)}


@pytest.mark.parametrize(("name", "side", "said"), [
    *((name, 9000, "is 9000x9000 pixels") for name in SIZE_AT),
    ("MR_small_jp2klossless.dcm", 60000, "declares far more pixels")])
def test_a_pillow_decoded_stream_claiming_another_size_is_refused_undecoded(name, side, said, monkeypatch):
    """pydicom decodes JPEG and JPEG 2000 through Pillow at the size the stream itself declares
    and compares it with the DICOM header's only after: a file of a few kilobytes would have
    a picture of millions of pixels decoded first. The frame read is the middle one (of 30 in
    examples_ybr_color.dcm)."""
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    middle = volumes.frame_count(ds) // 2
    stream = bytearray(list(generate_frames(ds.PixelData, number_of_frames=volumes.frame_count(ds)))[middle])
    marker, offset, width = SIZE_AT[name]
    at = stream.index(marker) + offset
    stream[at:at + 2 * width] = side.to_bytes(width, "big") * 2
    data = _with_frame(path, bytes(stream), middle)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    with pytest.raises(ImageLoadError, match=f"the DICOM pixel data is damaged: its compressed picture "
                                             f"{said}, but the file's header declares {ds.Columns}x{ds.Rows}"):
        load_image(data)
    assert not decoded


def test_a_dicom_jpeg_frame_of_more_segments_than_an_image_has_is_refused_unparsed(monkeypatch):
    """Pillow would read the frame's segments one at a time in Python, first to check its
    size and then to decode it; libjpeg would decode each of its scans over the picture."""
    from PIL import JpegImagePlugin
    path = Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    stream = _first_frame(path)
    data = _with_frame(path, stream[:2] + b"\xff\xfe\x00\x02" * 2000 + stream[2:])
    opened = []
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "_open", lambda image: opened.append(image))
    with pytest.raises(ImageLoadError, match="this DICOM file's JPEG frame holds more than 1,024 segments "
                                             "before its picture, far more than an image has; export"):
        load_image(data)
    last = stream.rindex(b"\xff\xda")                        # its scan, repeated: 41 scans
    with pytest.raises(ImageLoadError, match="this DICOM file's JPEG frame holds more than 32 scans"):
        load_image(_with_frame(path, stream[:-2] + stream[last:-2] * 40 + stream[-2:]))
    assert not opened


def test_a_dicom_jpeg2000_frame_of_more_tiles_than_allowed_is_refused_unopened(monkeypatch):
    """The frame's SIZ marker cut into 1x1 tiles: 4,096 for the 64x64 MR slice, over the cap
    (lowered here to keep the fixture small), refused from its header, before OpenJPEG
    decodes it."""
    from brainmri import formats
    path = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
    stream = bytearray(_first_frame(path))
    at = stream.index(b"\xff\x51") + 22                      # XTsiz, YTsiz
    stream[at:at + 8] = (1).to_bytes(4, "big") * 2
    monkeypatch.setattr(formats, "MAX_JPEG2000_TILES", 1024)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
    with pytest.raises(ImageLoadError, match="this DICOM file's JPEG 2000 frame is cut into 4,096 tiles "
                                             "of 1x1 pixels, far more than an image has \\(up to 1,024"):
        load_image(_with_frame(path, bytes(stream)))
    assert not decoded


def test_a_dicom_jpeg2000_frame_over_the_work_side_is_refused_undecoded(monkeypatch):
    """pydicom has OpenJPEG decode a frame whole (seconds for a large one); a frame of more
    pixels than WORK_SIDE squared (lowered here to keep the fixture small) is refused before,
    naming its size; one of that many is read, as is a JPEG frame of more."""
    from PIL import Image
    path = Path(get_testdata_file("MR_small_jp2klossless.dcm"))
    monkeypatch.setattr(volumes, "WORK_SIDE", 48)
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = 40, 60                            # 2,400 pixels: over 48 x 48
    stream = io.BytesIO()
    Image.fromarray(np.asarray(scan(1, size=60))[:40].astype(np.uint16) * 16).save(
        stream, "JPEG2000", no_jp2=True)
    ds.PixelData, ds.BitsStored, ds.HighBit = encapsulate([stream.getvalue()]), 12, 11
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    decoded = []
    with monkeypatch.context() as m:
        m.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image))
        with pytest.raises(ImageLoadError, match="this DICOM file's JPEG 2000 frame is 60x40 pixels, "
                                                 "more than a brain MRI slice has; .* \\(up to 48x48 are "
                                                 "read\\): export the image uncompressed or as PNG"):
            load_image(buf.getvalue())
    assert not decoded
    monkeypatch.setattr(volumes, "WORK_SIDE", 49)            # 2,401 pixels: read
    assert load_image(buf.getvalue()).size == (60, 40)
    monkeypatch.setattr(volumes, "WORK_SIDE", 8)             # a JPEG frame: not held to it
    assert load_image(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")).size == (100, 100)


@pytest.mark.parametrize("name", SIZE_AT)
def test_pillow_decoded_frames_of_their_declared_size_read(name):
    ds = pydicom.dcmread(get_testdata_file(name))
    assert volumes.frame_values(ds, volumes.frame_count(ds) - 1)[0].shape[:2] == (ds.Rows, ds.Columns)


@pytest.mark.parametrize("kind", LOSSLESS)
def test_a_truncated_stream_is_refused_undecoded(kind, monkeypatch):
    """Cut before its end-of-image marker: libjpeg-turbo would fill in the rest, and CharLS
    was seen to work for seconds on such JPEG-LS streams (`scripts/fuzz_dicom_codecs.py`)."""
    stream = _first_frame(FIXTURES / f"grey12-{kind}.dcm")
    decoded = []
    for name in ("jpeg8_decode", "jpegls_decode"):
        monkeypatch.setattr(imagecodecs, name, lambda *a, **k: decoded.append(a))
    what = "JPEG-LS" if kind == "jls" else "JPEG"
    with pytest.raises(ImageLoadError, match=f"the DICOM pixel data is damaged or truncated: the {what} "
                                             "stream ends before its end-of-image marker"):
        load_image(_with_frame(FIXTURES / f"grey12-{kind}.dcm", stream[: len(stream) // 3]))
    assert not decoded


def test_the_decoders_own_words_reach_the_user_and_no_one_elses():
    """pydicom reports a plugin's failure inside its own RuntimeError; this module's messages
    are written for users, other plugins' and pydicom's are named by their kind only."""
    said = RuntimeError("Unable to decode as exceptions were raised by all available plugins:\n"
                        f"  {dicom_codecs.LABEL}: the JPEG stream ends before its end-of-image marker\n"
                        "  other: something else")
    assert dicom_codecs.refusal(said) == "the JPEG stream ends before its end-of-image marker"
    assert dicom_codecs.refusal(RuntimeError("... plugins:\n  gdcm: failed")) is None
    assert dicom_codecs.refusal(ValueError("")) is None


FUZZ = """
import sys
from brainmri.io import ImageLoadError, load_image
read = refused = 0
for path in sys.argv[1:]:
    try:
        load_image(path)
        read += 1
    except ImageLoadError:
        refused += 1
print(read, refused)
"""


def test_damaged_streams_are_read_or_refused_never_crash(tmp_path):
    """Bytes changed, cut, repeated or removed inside each compressed frame, decoded in a child
    process: a decoder that crashed (as GDCM aborts, and as imagecodecs' liblj92 was seen to
    segfault) would end it by a signal instead of a message."""
    rng = random.Random(0)
    paths = []
    for i in range(240):
        source = FIXTURES / f"{ORIGINALS[i % 4]}-{LOSSLESS[i // 4 % 3]}.dcm"
        stream = bytearray(_first_frame(source))
        start = rng.randrange(2, len(stream))
        if i % 3 == 0:
            for _ in range(rng.randint(1, 8)):
                stream[rng.randrange(len(stream))] = rng.randrange(256)
        elif i % 3 == 1:
            del stream[start:start + rng.randint(1, 64)]
        else:
            stream[start:start] = stream[rng.randrange(len(stream)):][:rng.randint(1, 64)]
        stream += b"" if stream.endswith(b"\xff\xd9") else b"\xff\xd9"   # past the end check
        paths.append(tmp_path / f"{i}.dcm")
        paths[-1].write_bytes(_with_frame(source, bytes(stream)))
    done = subprocess.run([sys.executable, "-c", FUZZ, *map(str, paths)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    read, refused = map(int, done.stdout.split())
    assert read + refused == len(paths) and refused > 0


RLE_FILES = ("MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_32bit_2frame.dcm",
             "rtdose_rle.dcm")


@pytest.mark.parametrize("name", RLE_FILES)
def test_rle_frames_decode_as_pydicoms_own_decoder_does(name):
    """brainmri.dicom_codecs decodes RLE in C (imagecodecs' PackBits) where pydicom's decoder
    walks each segment in Python: the same values, every frame (8 to 32 bits, signed, RGB)."""
    ds = pydicom.dcmread(get_testdata_file(name))
    for index in range(volumes.frame_count(ds)):
        ds.pixel_array_options(index=index, decoding_plugin="pydicom")
        theirs = ds.pixel_array
        ds.pixel_array_options(index=index, decoding_plugin=dicom_codecs.LABEL)
        assert ds.pixel_array.dtype == theirs.dtype and np.array_equal(ds.pixel_array, theirs)


@pytest.mark.parametrize(("bits", "signed", "frames"), [(8, 0, 1), (12, 0, 3), (16, 1, 2)])
def test_rle_compressed_by_pydicom_reads_as_the_uncompressed_original(bits, signed, frames):
    ds = pydicom.dcmread(FIXTURES / "grey8.dcm" if bits == 8 else FIXTURES / "grey12.dcm")
    rng = np.random.default_rng(bits)
    dtype = {8: np.uint8, 12: np.uint16, 16: np.int16}[bits]
    low, high = (-(2 ** 15), 2 ** 15) if signed else (0, 2 ** bits)
    pixels = rng.integers(low, high, (frames, ds.Rows, ds.Columns)).astype(dtype)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, signed
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = (pixels if frames > 1 else pixels[0]).tobytes()
    ds.compress(pydicom.uid.RLELossless)                # pydicom's own RLE encoder
    assert np.array_equal([volumes.frame_values(ds, i)[0] for i in range(frames)], pixels)


def _rle_frame(segment: bytes) -> bytes:
    """An RLE frame of one segment (an 8-bit grey picture)."""
    return (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56) + segment


def test_an_rle_segment_far_larger_than_its_plane_is_refused_unbuilt():
    """Runs of 128 bytes, two bytes each: 8 MiB of them would decode to 512 MiB, which pydicom's
    decoder builds (in a Python loop) before it drops what is past the plane."""
    path = FIXTURES / "grey8.dcm"
    tracemalloc.start()
    try:
        data = _with_rle_frame(path, _rle_frame(b"\x81\x00" * 2**22))
        tracemalloc.reset_peak()
        with pytest.raises(ImageLoadError, match="the DICOM pixel data is damaged or truncated: an RLE "
                                                 "segment decodes to more than twice its 1,920 bytes"):
            load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20                         # the file and its copies, not what the runs make


def test_rle_segments_short_of_their_plane_or_out_of_order_are_refused():
    path = FIXTURES / "grey8.dcm"
    short = _rle_frame(b"\x81\x00")                                 # 128 of 40 x 48 pixels
    backwards = (1).to_bytes(4, "little") + (200).to_bytes(4, "little") + bytes(56) + b"\x81\x00" * 64
    for frame in (short, backwards, short[:40]):
        with pytest.raises(ImageLoadError, match="the DICOM pixel data is damaged or truncated"):
            load_image(_with_rle_frame(path, frame))


def test_rle_no_op_bytes_and_padding_past_the_plane_still_read():
    """PackBits' no-op byte (-128) decodes to nothing, and some encoders pad a segment past its
    plane: both read as the plain segment (up to twice the plane's size)."""
    path = FIXTURES / "grey8.dcm"
    pixels = np.asarray(pydicom.dcmread(path).pixel_array)
    literal = b"".join(bytes([len(row) - 1]) + row.tobytes() for row in pixels)   # one literal run a row
    plain = load_image(_with_rle_frame(path, _rle_frame(literal)))
    assert np.array_equal(np.asarray(plain), np.asarray(load_image(path)))
    for segment in (b"\x80" * 100_000 + literal, literal + b"\x81\x00" * 8):
        assert np.array_equal(np.asarray(load_image(_with_rle_frame(path, _rle_frame(segment)))), np.asarray(plain))


def _with_rle_frame(path: Path, frame: bytes) -> bytes:
    """The uncompressed file at `path` as an RLE file of the one frame `frame`."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
