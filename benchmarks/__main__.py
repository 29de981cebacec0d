"""Benchmarks (not tests): how fast brainmri answers, against the bare forward-pass floor.

    python -m benchmarks --checkpoints checkpoints --images ../shared/data/brain-tumor-mri/Testing \\
        --repeats 20 --out docs/benchmarks-latest.md

Prints a markdown table: machine, date, versions, then per device (the CPU, and CUDA when
present) the default model's floor, click-to-result, the usual pytorch-grad-cam way, Compare, the
batched floor against the batch CLI, the request Batcher under concurrent clients, and the
start-up time. Every figure is a median over repeats. Without checkpoints, randomly
initialised networks of the same shape stand in (same cost, meaningless predictions).
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from brainmri.models import default_model
from brainmri.predictor import PRECISIONS, Predictor

from . import startup
from .cases import Row, device_rows
from .context import checkpoints, devices, label, report, scan_files
from .timing import load, machine


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints",
                        help="folder of <name>.safetensors, one per registered model (random "
                             "stand-ins for those absent)")
    parser.add_argument("--images", default=None, help="folder of scans; synthetic if not given")
    parser.add_argument("--count", type=int, default=32, help="how many scans to use")
    parser.add_argument("--repeats", type=int, default=20, help="repeats per measurement")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the Batcher")
    parser.add_argument("--devices", default="auto", help="cpu, cuda, or auto (cpu, plus cuda if present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, usually the core count)")
    parser.add_argument("--size", type=int, default=None,
                        help="input size for every model (default: each checkpoint's own)")
    parser.add_argument("--method", default=None,
                        help="CAM method of the interactive rows (default: the checkpoint's default)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="Predictor precision on a GPU (auto: fp32, docs/gpu.md); the CPU always runs fp32")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    return parser


def table(rows: list[Row]) -> list[str]:
    lines = ["| measurement | median ms | fastest ms | comparison | target | met |",
             "|---|---:|---:|---|---|---|"]
    for r in rows:
        ms = ("", "") if r.ms is None else (f"{r.ms.median:.1f}", f"{r.ms.best:.1f}")
        met = {True: "yes", False: "**no**", None: ""}[r.ok]
        lines.append(f"| {r.what} | {ms[0]} | {ms[1]} | {r.vs} | {r.target} | {met} |")
    return lines


def main(argv: list[str] | None = None) -> str:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    targets = devices(args.devices)
    info = machine()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        ckpts = checkpoints(args.checkpoints, scratch)
        files, source = scan_files(args.images, args.count)
        folder = scratch / "scans"
        folder.mkdir()
        for i, data in enumerate(files):
            (folder / f"{i:03d}.img").write_bytes(data)
        lines = ["# brainmri benchmarks", "",
                 f"- date: {info['date']}", f"- CPU: {info['cpu']}", f"- GPU: {info['gpu']}",
                 f"- python {info['python']}, torch {info['torch']}, torchvision "
                 f"{info['torchvision']}, grad-cam {info['grad-cam']}",
                 "- checkpoints: " + ", ".join(
                     f"{a} {'random stand-in' if c.random else c.path}" for a, c in ckpts.items()),
                 f"- images: {source}; repeats: {args.repeats} (medians)",
                 f"- load average at start: {load()}"]
        for device in targets:
            ps = {a: Predictor.from_checkpoint(c.path, device, precision=args.precision, checked=False)
                  for a, c in ckpts.items()}
            if args.size:
                for p in ps.values():
                    p.preset = dataclasses.replace(p.preset, size=args.size)
            main_model = ps[default_model(ps)]
            size = main_model.preset.size
            gpu = device.startswith("cuda")
            lines += ["", f"## {device} ({info['gpu'] if gpu else 'CPU'}), "
                          f"{label(default_model(ps))} at {size} px"
                          + (f", precision {main_model.precision}"
                             f" (cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'})"
                             if gpu else ""), ""]
            rows = device_rows(ps, files, folder, args.repeats, args.clients, args.method)
            phases, wall = startup.measure([c.path for c in ckpts.values()], device,
                                           max(1, min(3, args.repeats // 5)), args.precision)
            rows.append(Row("Start-up: import brainmri + torch", phases["import"]))
            rows.append(Row(f"Start-up: load the {len(ckpts)} checkpoints", phases["load"]))
            rows.append(Row("Start-up: warm-up (one explain per model)", phases["warmup"],
                            f"whole process {wall.median / 1000:.1f} s"))
            lines += table(rows) + ["", f"Load average after {device}: {load()}"]
            del ps
    return report(lines, args.out)


if __name__ == "__main__":
    main()
