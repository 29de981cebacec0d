"""Fuzz the lossless-JPEG and JPEG-LS decoders imagecodecs offers, in child processes: count the
damaged streams that killed the process (a signal: a segfault or an abort) or held it for
seconds, rather than being refused at once. Why brainmri.dicom_codecs decodes JPEG Lossless
with libjpeg-turbo (jpeg8) and leaves JPEG-LS refused:

    python scripts/fuzz_dicom_codecs.py --decoders jpeg8,jpegls,ljpeg,jpegsof3 --n 2000

Seeds: the compressed frames of tests/fixtures/lossless (made by DCMTK); with `--synthetic`,
for JPEG-LS also phantoms of scan size encoded here by imagecodecs (256 x 256 in 12 bits,
lossless and near-lossless, and 128 x 128 RGB). Each damaged stream has bytes changed
(anywhere, or in its header), is cut, or has a run of bytes repeated or removed, and is decoded
into an array of its file's declared size, as the app decodes; with `--eoi`, a stream whose
damage took away its end-of-image marker has one appended (brainmri.dicom_codecs refuses a
stream without one before any decoder sees it). Prints, per decoder, how many streams killed
the child, took over `--slow` seconds, or were still decoding after `--stall` seconds (then the
child is stopped).

    python scripts/fuzz_dicom_codecs.py --decoders jpegls --synthetic --eoi --n 3000
"""
from __future__ import annotations

import argparse
import pickle
import random
import select
import subprocess
import sys
from pathlib import Path

import pydicom
from pydicom.encaps import generate_frames

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lossless"
JPEG_LS = (pydicom.uid.JPEGLSLossless, pydicom.uid.JPEGLSNearLossless)
CHILD = """
import pickle, sys, time, numpy, imagecodecs
decoder, streams = pickle.load(sys.stdin.buffer)
for i, (stream, shape, dtype) in enumerate(streams):
    t = time.perf_counter()
    try:                    # into an array of the DICOM header's size, as brainmri.dicom_codecs does
        getattr(imagecodecs, decoder + "_decode")(stream, out=numpy.empty(shape, dtype))
    except Exception:
        pass
    print(i, time.perf_counter() - t, flush=True)
"""


def seeds(jpeg_ls: bool) -> list[tuple[bytes, tuple[int, ...], str]]:
    """(first compressed frame, its shape and dtype as the DICOM header declares them)."""
    out = []
    for path in sorted(FIXTURES.glob("*-*.dcm")):
        ds = pydicom.dcmread(path)
        if (ds.file_meta.TransferSyntaxUID in JPEG_LS) == jpeg_ls:
            frame = next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1))))
            shape = (ds.Rows, ds.Columns) + ((3,) if ds.SamplesPerPixel == 3 else ())
            out.append((frame, shape, "uint8" if ds.BitsStored <= 8 else "uint16"))
    return out


def phantoms() -> list[tuple[bytes, tuple[int, ...], str]]:
    """JPEG-LS streams of scan-sized synthetic pictures: a 12-bit 256 x 256 head phantom (an
    ellipse of smooth tissue, a brighter lesion, noise), lossless and near-lossless (NEAR 2),
    and a 128 x 128 RGB picture of it, as (stream, shape, dtype)."""
    import imagecodecs
    import numpy as np
    rng = np.random.default_rng(0)
    y, x = np.mgrid[-1:1:256j, -1:1:256j]
    head = (x / 0.8) ** 2 + (y / 0.95) ** 2 < 1
    grey = head * (1500 + 600 * np.cos(6 * x) * np.sin(4 * y)) + ((x - 0.3) ** 2 + y ** 2 < 0.04) * 1200
    grey = np.clip(grey + rng.normal(0, 40, grey.shape) * head, 0, 4095).astype(np.uint16)
    rgb = np.repeat((grey[::2, ::2] >> 4).astype(np.uint8)[..., None], 3, axis=2)
    rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 30, 0, 255)
    return [(bytes(imagecodecs.jpegls_encode(grey)), grey.shape, "uint16"),
            (bytes(imagecodecs.jpegls_encode(grey, level=2)), grey.shape, "uint16"),
            (bytes(imagecodecs.jpegls_encode(rgb)), rgb.shape, "uint8")]


def with_eoi(stream: bytes) -> bytes:
    """`stream` ending with an end-of-image marker (an odd fragment's zero pad aside)."""
    return stream if stream.rstrip(b"\0").endswith(b"\xff\xd9") else stream + b"\xff\xd9"


def damaged(rng: random.Random, stream: bytes) -> bytes:
    b = bytearray(stream)
    k = rng.random()
    if k < 0.35:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif k < 0.5:
        b = b[:rng.randrange(2, len(b))]
    elif k < 0.7:                                       # the frame header and tables
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(min(200, len(b)))] = rng.choice([0, 0xFF, rng.randrange(256)])
    elif k < 0.85:
        i = rng.randrange(len(b))
        b[i:i] = b[rng.randrange(len(b)):][:rng.randint(1, 64)]
    else:
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 64)]
    return bytes(b)


def trial(decoder: str, streams: list[tuple], slow: float, stall: float) -> dict[str, list]:
    """Each stream decoded in turn in a child process: the streams that ended it by a signal
    ("killed": index, return code), that took over `slow` seconds ("slow": index, seconds),
    and after which it printed nothing for `stall` seconds (killed by us, "stalled")."""
    found = {"killed": [], "slow": [], "stalled": []}
    start = 0
    while start < len(streams):
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        child.stdin.write(pickle.dumps((decoder, streams[start:])))
        child.stdin.close()
        done = start                                    # the next stream the child decodes
        while True:
            if not select.select([child.stdout], [], [], stall)[0]:
                child.kill()
                child.wait()
                found["stalled"].append(done)
                start = done + 1
                break
            line = child.stdout.readline()
            if not line:                                # the child ended
                if child.wait() != 0:
                    found["killed"].append((done, child.returncode))
                    start = done + 1
                else:
                    start = len(streams)
                break
            index, seconds = line.split()
            done = start + int(index) + 1
            if float(seconds) > slow:
                found["slow"].append((done - 1, round(float(seconds), 2)))
    return found


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--decoders", default="jpeg8,jpegls", help="imagecodecs decoders, comma-separated "
                   "(jpeg8, ljpeg, jpegsof3: lossless JPEG; jpegls: JPEG-LS)")
    p.add_argument("--n", type=int, default=2000, help="damaged streams per decoder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--slow", type=float, default=1.0, help="a stream that takes longer is listed as slow (s)")
    p.add_argument("--stall", type=float, default=20.0, help="a stream still decoding after this long is stopped (s)")
    p.add_argument("--synthetic", action="store_true", help="JPEG-LS: scan-sized phantoms as seeds too")
    p.add_argument("--eoi", action="store_true", help="each damaged stream ends with an end-of-image marker")
    args = p.parse_args(argv)
    for decoder in args.decoders.split(","):
        rng = random.Random(args.seed)
        pool = seeds(jpeg_ls=decoder == "jpegls")
        pool += phantoms() if args.synthetic and decoder == "jpegls" else []
        end = with_eoi if args.eoi else bytes
        streams = [(end(damaged(rng, stream)), shape, dtype)
                   for stream, shape, dtype in (rng.choice(pool) for _ in range(args.n))]
        found = trial(decoder, streams, args.slow, args.stall)
        print(f"{decoder}: {len(streams)} damaged streams from {len(pool)} seeds; killed the process: "
              f"{len(found['killed'])}; over {args.slow:g} s: {len(found['slow'])} (slowest "
              f"{max((s for _, s in found['slow']), default=0):g} s); still decoding after "
              f"{args.stall:g} s: {len(found['stalled'])}", flush=True)


if __name__ == "__main__":
    main()
