"""Reading an upload before any model runs: what a refusal costs, and what a large picture
costs, against an ordinary scan's read.

    python -m benchmarks.reading --images ../shared/data/brain-tumor-mri/Testing --repeats 20

Times `brainmri.service.load_slice` (the app's reading: `load_image`, larger pictures reduced
while decoded) on an empty file (any refusal: the upload checks alone), an ordinary scan
(`--images`' first file, or a synthetic 512 px JPEG), a 4000x4000 PNG (under the pixel cap:
decoded and reduced), an 8000x8000 PNG (a valid picture over the cap), a 64 px PNG carrying
400,000 empty chunks (which Pillow would read one at a time), a 64x64 DICOM file whose JPEG
2000 stream is a 13000x13000 black picture (pydicom decodes it through Pillow at the stream's
size), a 64x64 RLE DICOM file whose segment is 16 MiB of runs that decode to 64 times that, a
64x64 DICOM file of 4,000,000 empty elements (46 MiB; pydicom parses each in Python), a
64x64x8 .nii.gz volume whose header carries 2,000,000 empty extensions (nibabel parses each in
Python), a 16x16 GIF of 100,000 frames (an animation: refused, and Pillow counts a GIF's
frames by walking them) and a 64x64 JPEG of 4,000,000 empty comment segments (Pillow reads a
JPEG's segments before its pixels one at a time in Python), and the ordinary scan in grey as
a JPEG-LS DICOM file, whole and with its stream cut to half (JPEG-LS's decoder, CharLS, can
spend seconds on a stream without its end-of-image marker), and 4096x4096 progressive JPEGs
of 32 scans (the most `formats.MAX_JPEG_SCANS` lets through) and of 1,000 (libjpeg decodes each
scan over the whole picture; a 33-byte scan repeated costs time, not size), and RLE8 BMPs
(Pillow decodes RLE in Python) of 1024x1024 in one-pixel runs and of 4096x4096 in lines of one
pixel each, and plain (ASCII) PGMs (Pillow reads a PNM header, and a plain PNM's values, in
Python) of 2048x2048 and of 64x64 after 1,000,000 comment lines, and a 16x16 TIFF of 20 pages
whose directories list 20,000 private tags each (Pillow parses each entry in Python), and a
64x64 GIF whose comment comes in 1,000,000 one-byte blocks (Pillow joins them one at a time,
copying the comment so far each time), and a 64x64 PNG whose EXIF lists 65,535 tags (Pillow
parses each when the app reads the orientation), and lossless 4096x4096 JPEG 2000 files of a
ramp and of noise (OpenJPEG decodes every resolution level it is asked for, and the noise's
coefficients bit by bit), and a 4096x4080 JPEG 2000 cut into 65,280 tiles of 16x16 (OpenJPEG
sets up and decodes each tile on its own) and a 4096x4096 one of 4,096 tiles of 64x64 (the most
`formats.MAX_JPEG2000_TILES` lets through), and a 4096x4096 JPEG 2000 of noise saved without
wavelet levels (OpenJPEG can decode it only whole), and a 4096x4096 DICOM file whose JPEG 2000
frame is noise (pydicom decodes a frame whole), and .nii.gz volumes of 800x800x800 empty voxels
(488 MiB unpacked) and of 64x64x8 followed by 400 MiB of zeros its voxels do not
need. Target: each of those files but the ordinary scan,
the 4000x4000 PNG, the whole JPEG-LS file, the JPEG of 32 scans, the 1024x1024 BMP, the JPEG
2000 files of a ramp, of noise and of 4,096 tiles, and the volume is refused before its pixels,
chunks, elements, frames, segments, scans, runs, comments, tags or tiles are read in full, so
it costs no more than reading an ordinary scan and under 100 ms, whatever its size; the volume
of extensions and the one of trailing zeros, which its voxels do not need, are read in under
100 ms. Medians over repeats, taken in turn.
"""
from __future__ import annotations

import argparse
import io
import struct
import zlib

import numpy as np
from PIL import Image

from brainmri.io import ImageLoadError
from brainmri.service import load_slice

from .context import report, scan_files
from .timing import Timing, interleaved, load, machine

TARGET_MS = 100.0


def png(side: int) -> bytes:
    """A valid greyscale PNG of `side` x `side` (a smooth ramp: small to store, real to decode)."""
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.tile(ramp, (side, 1))).save(out, "PNG")
    return out.getvalue()


def png_chunks(count: int) -> bytes:
    """A 64x64 PNG with `count` empty private chunks (`prVt`) before its pixels."""
    out = io.BytesIO()
    Image.new("L", (64, 64)).save(out, "PNG")
    data = out.getvalue()
    empty = struct.pack(">I4sI", 0, b"prVt", zlib.crc32(b"prVt"))
    at = data.index(b"IDAT") - 4
    return data[:at] + empty * count + data[at:]


def dicom_64(syntax: str, frame: bytes, side: int = 64) -> bytes:
    """A `side` x `side` DICOM file (MR, 8 bits; 64x64 unless said) of one `frame` in transfer
    syntax `syntax` (encapsulated when the syntax compresses)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import MRImageStorage, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = MRImageStorage, syntax
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["benchmarks.reading", syntax])
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "MR", 1, "MONOCHROME2"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([frame]) if meta.TransferSyntaxUID.is_compressed else frame
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def j2k_dicom(side: int) -> bytes:
    """A 64x64 DICOM file whose one frame is a lossless JPEG 2000 stream of a `side` x `side`
    black picture: a few hundred bytes, as an upload meant to cost memory."""
    from pydicom.uid import JPEG2000Lossless
    stream = io.BytesIO()
    Image.new("L", (side, side)).save(stream, "JPEG2000", no_jp2=True)
    return dicom_64(JPEG2000Lossless, stream.getvalue())


def j2k_noise_dicom(side: int) -> bytes:
    """A `side` x `side` DICOM file whose one frame, of that size too, is a lossless JPEG 2000
    stream of noise (pydicom decodes a frame whole, and OpenJPEG each coefficient's bits)."""
    from pydicom.uid import JPEG2000Lossless
    stream = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    Image.fromarray(noise).save(stream, "JPEG2000", no_jp2=True)
    return dicom_64(JPEG2000Lossless, stream.getvalue(), side=side)


def rle_dicom(mib: int) -> bytes:
    """A 64x64 RLE DICOM file whose one segment is `mib` MiB of runs of 128 zeros (two bytes
    each): it decodes to 64 times its size."""
    from pydicom.uid import RLELossless
    header = struct.pack("<16L", 1, 64, *[0] * 14)
    return dicom_64(RLELossless, header + b"\x81\x00" * (mib * 2**19))


def jpeg_ls_dicom(scan: bytes, cut: bool = False) -> bytes:
    """`scan` (a picture file) in grey as a lossless JPEG-LS DICOM file of its size (a square
    scan); `cut`, its stream cut to half and so without its end-of-image marker (CharLS can
    spend seconds on such a stream, `scripts/fuzz_dicom_codecs.py`)."""
    import imagecodecs
    from pydicom.uid import JPEGLSLossless
    grey = np.asarray(Image.open(io.BytesIO(scan)).convert("L"))
    side = min(grey.shape)
    stream = bytes(imagecodecs.jpegls_encode(np.ascontiguousarray(grey[:side, :side])))
    return dicom_64(JPEGLSLossless, stream[:len(stream) // 2] if cut else stream, side)


def dicom_elements(count: int) -> bytes:
    """A 64x64 DICOM file (explicit VR) carrying `count` empty private elements (12 bytes each)
    before its pixels."""
    from pydicom.uid import ExplicitVRLittleEndian
    data = dicom_64(ExplicitVRLittleEndian, bytes(64 * 64))
    at = data.index(b"\xe0\x7f\x10\x00")                    # (7FE0,0010): the pixel data
    empty = b"".join(struct.pack("<HH2sHL", 0x0009 + 2 * (i // 0xE000), 0x1000 + i % 0xE000, b"UN", 0, 0)
                     for i in range(count))
    return data[:at] + empty + data[at:]


def nifti_extensions(count: int) -> bytes:
    """A 64x64x8 .nii.gz volume whose header carries `count` empty extensions (16 bytes each)
    before its voxels."""
    import gzip

    import nibabel as nib
    plain = nib.Nifti1Image(np.zeros((64, 64, 8), np.uint8), np.eye(4)).to_bytes()
    extensions = b"\1\0\0\0" + struct.pack("<ii", 16, 0) * 2 * count    # the flag, then (size, code, 8 bytes)
    voxels = 352 + len(extensions) - 4
    header = bytearray(plain[:348])
    header[108:112] = struct.pack("<f", voxels)
    return gzip.compress(bytes(header) + extensions + plain[352:], 1)


def empty_nifti(shape: tuple[int, int, int], trailing: int = 0) -> bytes:
    """A .nii.gz volume of `shape` uint8 voxels, all 0, then `trailing` bytes more of zeros
    past its voxels: a few hundred KiB however large, compressed as it is built."""
    import nibabel as nib
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_qform(np.eye(4), code=1)
    header["vox_offset"] = 352
    gz = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts, left = [gz.compress(header.binaryblock + bytes(4))], int(np.prod(shape)) + trailing
    while left:
        parts.append(gz.compress(bytes(min(left, 2**24))))
        left -= min(left, 2**24)
    return b"".join(parts) + gz.flush()


def gif_frames(count: int) -> bytes:
    """A 16x16 GIF animation of `count` frames of one shared palette, alternately its colours
    0 and 1 (about 50 bytes a frame)."""
    frames = [Image.new("P", (16, 16), i % 2) for i in range(count)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    return out.getvalue()


def gif_comments(count: int) -> bytes:
    """A 64x64 GIF whose comment extension, before its picture, is `count` sub-blocks of one
    byte (Pillow joins a comment's sub-blocks one at a time, copying what it has each time)."""
    out = io.BytesIO()
    Image.new("P", (64, 64), 1).save(out, "GIF")
    data = out.getvalue()
    at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)   # past the colour table
    return data[:at] + b"\x21\xfe" + b"\x01a" * count + b"\x00" + data[at:]


def png_exif(tags: int) -> bytes:
    """A 64x64 PNG whose eXIf chunk lists `tags` private tags (Pillow parses each entry in
    Python when the app reads the picture's orientation)."""
    entries = b"".join(struct.pack("<HHII", 10000 + i % 50000, 3, 1, i % 65536) for i in range(tags))
    exif = b"II*\x00" + struct.pack("<IH", 8, tags) + entries + bytes(4)
    out = io.BytesIO()
    Image.new("L", (64, 64)).save(out, "PNG")
    data = out.getvalue()
    at = data.index(b"IDAT") - 4
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    return data[:at] + chunk + data[at:]


def jpeg_segments(count: int) -> bytes:
    """A 64x64 JPEG with `count` empty comment segments (4 bytes each) before its frame."""
    out = io.BytesIO()
    Image.new("L", (64, 64)).save(out, "JPEG")
    return out.getvalue()[:2] + b"\xff\xfe\x00\x02" * count + out.getvalue()[2:]


def progressive_jpeg(scans: int, side: int = 4096) -> bytes:
    """A `side` x `side` grey progressive JPEG whose last scan (an AC refinement of the whole
    picture, 33 bytes of a flat picture) is repeated until it has `scans` scans: each is
    decoded over every block of the picture (libjpeg-turbo's "LJT-01-003")."""
    out = io.BytesIO()
    Image.new("L", (side, side), 128).save(out, "JPEG", progressive=True, quality=90)
    data = out.getvalue()
    last = data.rindex(b"\xff\xda")
    extra = scans - data.count(b"\xff\xda")
    return data[:-2] + data[last:-2] * extra + data[-2:]


def rle_bmp(side: int, runs: bool) -> bytes:
    """A `side` x `side` 8-bit BMP compressed with RLE8, each line either `runs` of one pixel
    (two bytes each) or one pixel then an end of line (Pillow's RLE decoder is Python: a
    step for each run, and for each pixel it pads a line with)."""
    palette = b"".join(bytes([i] * 3) + b"\0" for i in range(256))
    line = b"\x01\x80" * side + b"\x00\x00" if runs else b"\x01\x80\x00\x00"
    body = line * side + b"\x00\x01"
    start = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(body), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", start + len(body), 0, 0, start) + info + palette + body


def plain_pgm(side: int, comments: int = 0) -> bytes:
    """A `side` x `side` plain (ASCII) PGM of one grey value, its header carrying `comments`
    empty comment lines (Pillow reads a PNM header, and a plain PNM's values, in Python)."""
    return b"P2\n" + b"#\n" * comments + f"{side} {side}\n255\n".encode() + b"7 " * (side * side)


def jpeg2000(side: int, noise: bool, tile: int | None = None, cut: bool = True,
             levels: bool = True) -> bytes:
    """A lossless greyscale JPEG 2000 file of `side` x `side` (minus a tile's height if `cut`,
    to keep under the format's 65,535 tiles), as Pillow (OpenJPEG) writes it (wavelet levels:
    the picture at 1/2, 1/4 ... scale is in it), or without `levels` (one resolution: the
    picture only at full size): a smooth ramp, or noise, whose every coefficient carries bits
    for OpenJPEG to decode; in one tile, or cut into `tile` x `tile` tiles."""
    height = side - (tile or 0) * cut
    pixels = np.tile(np.linspace(0, 255, side, dtype=np.uint8), (height, 1))
    if noise:
        pixels = np.random.default_rng(0).integers(0, 256, (height, side), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG2000", **({"tile_size": (tile, tile)} if tile else {}),
                                 **({} if levels else {"num_resolutions": 1}))
    return out.getvalue()


def tiff_tags(pages: int, tags: int) -> bytes:
    """A little-endian TIFF of `pages` 16x16 grey pages, each directory listing `tags` private
    tags besides the image's own (Pillow parses each directory entry in Python, and walks the
    pages to count them)."""
    out = bytearray(b"II*\x00" + struct.pack("<I", 8))
    for page in range(pages):
        entries = sorted([(256, 16), (257, 16), (258, 8), (259, 1), (262, 1), (273, 0), (277, 1),
                          (278, 16), (279, 256)] + [(10000 + i, i) for i in range(tags)])
        pixels = len(out) + 2 + 12 * len(entries) + 4
        out += struct.pack("<H", len(entries))
        for tag, value in entries:
            out += struct.pack("<HHII", tag, 4 if tag in (273, 279) else 3, 1, pixels if tag == 273 else value)
        out += struct.pack("<I", pixels + 256 if page < pages - 1 else 0) + bytes(256)
    return bytes(out)


def read(data: bytes) -> str:
    """`load_slice` on `data`: "read WxH" or the refusal's words."""
    try:
        return "read {}x{}".format(*load_slice(data).size)
    except ImageLoadError as e:
        return f"refused: {e}"


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reading", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", default=None, help="folder of scans (its first file is read); synthetic if not given")
    parser.add_argument("--repeats", type=int, default=20, help="repeats per measurement")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = get_args_parser().parse_args(argv)
    info = machine()
    files, _ = scan_files(args.images, 1)
    source = f"the first file under {args.images}" if args.images else "a synthetic 512x512 JPEG"
    ordinary, over = "an ordinary scan", "an 8000x8000 PNG (over the cap)"
    chunks = "a 64x64 PNG of 400,000 empty chunks"
    j2k = "a 64x64 DICOM whose JPEG 2000 stream is 13000x13000"
    rle = "a 64x64 RLE DICOM of 16 MiB of repeat runs"
    elements = "a 64x64 DICOM of 4,000,000 empty elements"
    extensions = "a 64x64x8 .nii.gz of 2,000,000 header extensions"
    gif = "a 16x16 GIF of 100,000 frames"
    jpeg = "a 64x64 JPEG of 4,000,000 empty comments"
    jpeg_ls, jpeg_ls_cut = "the ordinary scan as a JPEG-LS DICOM", "that JPEG-LS DICOM cut to half"
    scans_32, scans_1000 = "a 4096x4096 progressive JPEG of 32 scans", "a 4096x4096 progressive JPEG of 1,000 scans"
    bmp_runs, bmp_lines = "a 1024x1024 RLE8 BMP of one-pixel runs", "a 4096x4096 RLE8 BMP of one-pixel lines"
    pgm, pgm_comments = "a 2048x2048 plain (ASCII) PGM", "a 64x64 plain PGM of 1,000,000 header comments"
    tiff = "a 16x16 TIFF of 20 pages of 20,000 tags each"
    gif_comment = "a 64x64 GIF of a comment in 1,000,000 one-byte blocks"
    exif = "a 64x64 PNG whose EXIF lists 65,535 tags"
    j2k_ramp, j2k_noise = "a 4096x4096 JPEG 2000 of a ramp", "a 4096x4096 JPEG 2000 of noise"
    j2k_tiles = "a 4096x4080 JPEG 2000 of 16x16 tiles"
    j2k_most = "a 4096x4096 JPEG 2000 of 64x64 tiles"
    j2k_flat = "a 4096x4096 JPEG 2000 of noise without wavelet levels"
    j2k_big_dicom = "a 4096x4096 DICOM whose JPEG 2000 frame is noise"
    nifti_big = "a .nii.gz of 800x800x800 empty voxels"
    nifti_tail = "a 64x64x8 .nii.gz followed by 400 MiB of zeros"
    cases = {"an empty file (any refusal)": b"", ordinary: files[0],
             "a 4000x4000 PNG (under the cap)": png(4000), over: png(8000), chunks: png_chunks(400_000),
             j2k: j2k_dicom(13000), rle: rle_dicom(16), elements: dicom_elements(4_000_000),
             extensions: nifti_extensions(2_000_000), gif: gif_frames(100_000), jpeg: jpeg_segments(4_000_000),
             jpeg_ls: jpeg_ls_dicom(files[0]), jpeg_ls_cut: jpeg_ls_dicom(files[0], cut=True),
             scans_32: progressive_jpeg(32), scans_1000: progressive_jpeg(1000),
             bmp_runs: rle_bmp(1024, runs=True), bmp_lines: rle_bmp(4096, runs=False),
             pgm: plain_pgm(2048), pgm_comments: plain_pgm(64, comments=1_000_000),
             tiff: tiff_tags(20, 20_000), gif_comment: gif_comments(1_000_000), exif: png_exif(65_535),
             j2k_ramp: jpeg2000(4096, noise=False), j2k_noise: jpeg2000(4096, noise=True),
             j2k_most: jpeg2000(4096, noise=False, tile=64, cut=False), j2k_tiles: jpeg2000(4096, noise=False, tile=16),
             j2k_flat: jpeg2000(4096, noise=True, levels=False), j2k_big_dicom: j2k_noise_dicom(4096),
             nifti_big: empty_nifti((800, 800, 800)), nifti_tail: empty_nifti((64, 64, 8), 400 * 2**20)}
    said = {name: read(data) for name, data in cases.items()}
    t = {name: Timing.of(v) for name, v in
         interleaved({name: (lambda i, d=data: read(d)) for name, data in cases.items()}, args.repeats).items()}
    met = {name: t[name].median < min(TARGET_MS, t[ordinary].median)
           for name in (over, chunks, j2k, rle, elements, gif, jpeg, jpeg_ls_cut, scans_1000, bmp_lines,
                        pgm, pgm_comments, tiff, gif_comment, exif, j2k_tiles, j2k_flat,
                        j2k_big_dicom, nifti_big)}
    met[extensions] = t[extensions].median < TARGET_MS
    met[nifti_tail] = t[nifti_tail].median < TARGET_MS
    target = {name: f"< {TARGET_MS:g} ms" + (" and < the ordinary scan's" if name not in (extensions, nifti_tail) else "")
              for name in met}
    lines = ["# brainmri reading benchmark", "", f"- date: {info['date']}", f"- CPU: {info['cpu']}",
             f"- ordinary scan: {source}; repeats: {args.repeats} (medians, taken in turn)", f"- load average at start: {load()}", "",
             "| upload | size | median ms | fastest ms | what the app does | target | met |",
             "|---|---:|---:|---:|---|---|---|"]
    for name, data in cases.items():
        lines.append(f"| {name} | {len(data) / 2**10:.0f} KiB | {t[name].median:.1f} | {t[name].best:.1f} | "
                     f"{said[name][:80]} | "
                     + (f"{target[name]} | {'yes' if met[name] else '**no**'} |" if name in met else " |  |"))
    return report(lines, args.out)


if __name__ == "__main__":
    main()
