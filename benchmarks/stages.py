"""Where a click's time goes, per model and method (a measurement, not a test).

    python -m benchmarks.stages --images DIR [--device cuda] [--repeats 20]

Medians in ms of: decoding and preparing the file (`Predictor.prepare`: decode, grey, head
crop, resize, the input check), the trunk's forward alone (`Predictor.features`), the rest of
`explain` on the prepared scan (forward, prediction, out-of-distribution score, map, back to
the input's pixels, overlay), and of that the last two steps alone. On a GPU the forward is a
few ms and the CPU work around it is most of a click.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from brainmri.overlay import blend
from brainmri.predictor import Predictor, to_input_pixels

from .context import checkpoints, scan_files
from .timing import interleaved, machine


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--images", default=None, help="folder of scans; synthetic if not given")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    info = machine()
    files, source = scan_files(args.images, args.count)
    lines = [f"{info['date']}; GPU: {info['gpu']}; CPU: {info['cpu']}; torch {info['torch']}; {source}", "",
             "| model | method | prepare | trunk forward | explain (prepared) | of which: to input pixels + overlay |",
             "|---|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as scratch:
        for arch, ckpt in checkpoints(args.checkpoints, Path(scratch)).items():
            p = Predictor.from_checkpoint(ckpt.path, args.device, checked=False)
            prepared = p.prepare(files)
            batch = [q.tensor[None] for q in prepared]
            for method in dict.fromkeys(["gradcam", p.default_method]):
                small = np.float32(torch.rand(p.preset.size, p.preset.size))
                fns = {"prepare": lambda i: p.prepare([files[i % len(files)]]),
                       "forward": lambda i: p.features(batch[i % len(batch)]),
                       "explain": lambda i, m=method: p.explain_batch(prepared=[prepared[i % len(prepared)]], method=m),
                       "overlay": lambda i: blend(prepared[i % len(prepared)].grey,
                                                  to_input_pixels(small, prepared[i % len(prepared)]))}
                t = {k: statistics.median(v) for k, v in interleaved(fns, args.repeats, 2, p.device).items()}
                lines.append(f"| {arch} | {method} | {t['prepare']:.1f} | {t['forward']:.1f} | "
                             f"{t['explain']:.1f} | {t['overlay']:.1f} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
