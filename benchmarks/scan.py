"""Scan mode against the bare forward pass: a 24-slice 512 px DICOM series, from the .zip to
the scan's finding and its chosen slice's map, against 24 separate forward passes at batch 1.

    python -m benchmarks.scan --checkpoints checkpoints \\
        --images ../shared/data/brain-tumor-mri/Testing/glioma --repeats 5

Prints a markdown table (machine, date, load) per device: the floor (24 forwards at batch 1,
`channels_last`, batch-norm folded), the scan (`read_scan` of the .zip + `classify_scan` in
batches of 16, with the chosen slice's default map), and for context the single-slice way
(`Predictor.predict` on each slice in turn); where the checkpoint has checkers, the scan as the
app answers it, checked. Target: the scan under 4x the floor. Medians over
repeats, taken in turn. Slices: `--slices` files from `--images`, as greyscale 512x512, or
synthetic 512 px scans; written as one DICOM series by pydicom.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from brainmri.io import load_image, to_grey
from brainmri.models import default_model
from brainmri.outcomes import Outcome
from brainmri.predictor import Predictor
from brainmri.scanmode import classify_scan
from brainmri.scans import read_scan

from .cases import floor_fn
from .context import checkpoints, devices, label, report, scan_files
from .timing import Timing, interleaved, load, machine

TARGET = 4.0


def series_zip(files: list[bytes], side: int = 512) -> bytes:
    """The files as greyscale `side` px slices of one DICOM series, zipped."""
    from tests.synthetic import dicom_series, zipped
    volume = np.stack([np.asarray(Image.fromarray(to_grey(load_image(f))).resize((side, side)))
                       for f in files]).astype(np.uint16) * 4
    return zipped({f"IM{k:04d}.dcm": f for k, f in enumerate(dicom_series(volume))})


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints", help="folder of <name>.safetensors: the registry's default model's is timed")
    parser.add_argument("--images", default=None, help="folder of scans; synthetic if not given")
    parser.add_argument("--slices", type=int, default=24, help="slices in the series")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement")
    parser.add_argument("--batch-size", type=int, default=16, help="scan mode's batch")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    return parser


def main(argv: list[str] | None = None) -> str:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = devices(args.devices)
    info = machine()
    files, source = scan_files(args.images, args.slices)
    data = series_zip(files)
    n = len(files)
    lines = ["# brainmri scan-mode benchmark", "", f"- date: {info['date']}", f"- CPU: {info['cpu']}",
             f"- GPU: {info['gpu']}", f"- torch {info['torch']}",
             f"- series: {n} slices, 512x512, from {source}, {len(data) / 2**20:.1f} MiB zipped; "
             f"repeats: {args.repeats} (medians, taken in turn)", f"- load average at start: {load()}"]
    with tempfile.TemporaryDirectory() as scratch:
        name = default_model()
        ckpt = checkpoints(args.checkpoints, Path(scratch))[name]
        for device in targets:
            checked = Predictor.from_checkpoint(ckpt.path, device, checked=True)
            p = checked.alone()
            slices = read_scan(data).slices
            floor = floor_fn(p, 1)
            result = {}

            def scan(_):
                result["r"] = classify_scan(p, read_scan(data), args.batch_size)

            def scan_checked(_):
                result["checked"] = classify_scan(checked, read_scan(data), args.batch_size)
            cases = {"floor": lambda i: [floor(k) for k in range(n)], "scan": scan,
                     "single": lambda i: [p.predict(s) for s in slices]}
            if checked.checkers:
                cases["checked"] = scan_checked
            times = interleaved(cases, args.repeats, device=device)
            t = {k: Timing.of(v) for k, v in times.items()}
            ratio = t["scan"].median / t["floor"].median
            r = result["r"]
            lines += ["", f"## {device}, {label(name)} at {p.preset.size} px "
                          f"({'random stand-in' if ckpt.random else ckpt.path})", "",
                      "| measurement | median ms | fastest ms | comparison | target | met |",
                      "|---|---:|---:|---|---|---|",
                      f"| {n} forwards at batch 1 (the floor) | {t['floor'].median:.0f} | "
                      f"{t['floor'].best:.0f} | {t['floor'].median / n:.1f} ms a slice |  |  |",
                      f"| Scan mode: `read_scan` (.zip) + `classify_scan`, batch {args.batch_size}, "
                      f"map of the chosen slice | {t['scan'].median:.0f} | {t['scan'].best:.0f} | "
                      f"{ratio:.2f}x floor | < {TARGET:g}x floor | {'yes' if ratio < TARGET else '**no**'} |",
                      f"| For context: `Predictor.predict` on each slice in turn | "
                      f"{t['single'].median:.0f} | {t['single'].best:.0f} | "
                      f"{t['single'].median / t['floor'].median:.2f}x floor |  |  |"]
            if "checked" in t:
                c = t["checked"]
                confident = sum(s.prediction is not None and s.prediction.outcome is Outcome.CONFIDENT
                                for s in r.slices)
                lines += [f"| Scan mode as the app answers: with its {len(checked.checkers)} checkers "
                          f"(on the {confident} of {n} slices the model alone marks confident) | {c.median:.0f} | {c.best:.0f} | "
                          f"{c.median / t['floor'].median:.2f}x floor | < {TARGET:g}x floor | "
                          f"{'yes' if c.median / t['floor'].median < TARGET else '**no**'} |"]
            lines += ["", f"Scan result: {sum(s.brain for s in r.slices)} of {n} slices classified, "
                          f"finding {r.finding or '-'}, chosen slice {r.chosen}"
                          + (f"; checked: finding {result['checked'].finding or '-'}, chosen slice "
                             f"{result['checked'].chosen}" if "checked" in result else "")
                          + f". Load average after: {load()}"]
            del p, checked
    return report(lines, args.out)


if __name__ == "__main__":
    main()
