"""What the checkers cost a click (a measurement, not a test).

    python -m benchmarks.checkers --images ../shared/data/brain-tumor-mri/Testing --out FILE.md

Times a click (`Predictor.explain`: decode, preprocess, prediction, the default map, overlay)
of the default model alone and with its checkers (`Predictor.from_checkpoint(...,
checked=True)`, as the app loads it), taken in turn on the same scans, and the checkers' own
forwards on one prepared scan (`Predictor.labels`, what `Predictor.check` adds to a confident
answer). Checkers run only on confident answers, so the checked click's median is that of
this set's mix; the share of the scans answered confidently is printed beside it. Prints a
markdown table; medians of `--repeats` calls of each.
"""
from __future__ import annotations

import argparse

import torch

from brainmri import cam as cams
from brainmri.models import default_model
from brainmri.outcomes import Outcome
from brainmri.predictor import Predictor, checker_paths

from .context import report, scan_files
from .timing import Timing, interleaved, load, machine


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checkers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=f"checkpoints/{default_model()}.safetensors")
    parser.add_argument("--images", default=None, help="folder of scans; synthetic if not given")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=64, help="timed calls of each, in turn, "
                        "cycling over the scans")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not checker_paths(args.checkpoint):
        parser.error(f"{args.checkpoint} has no checkers installed (python -m train.checkers)")
    checked = Predictor.from_checkpoint(args.checkpoint, args.device, checked=True)
    alone = checked.alone()
    files, source = scan_files(args.images, args.count)
    method = cams.canonical_method(alone.default_method)
    confident = sum(alone.predict(f).outcome is Outcome.CONFIDENT for f in files)
    grey = alone.prepare([files[0]])[0].grey
    fns = {"alone": lambda i: alone.explain(files[i % len(files)], method),
           "checked": lambda i: checked.explain(files[i % len(files)], method),
           "checkers": lambda i: [c.labels([grey]) for c in checked.checkers]}
    t = {k: Timing.of(v) for k, v in interleaved(fns, args.repeats, 2, args.device).items()}
    info = machine()
    sizes = ", ".join(f"{c.name} {c.preset.size} px" for c in checked.checkers)
    lines = ["# What the checkers cost a click", "", f"- date: {info['date']}", f"- CPU: {info['cpu']}",
             f"- device: {args.device}, torch threads {torch.get_num_threads()}",
             f"- checkpoint: {args.checkpoint} at {alone.preset.size} px; checkers: {sizes}",
             f"- images: {source}; {confident} of {len(files)} answered confidently by the model alone "
             "(the checkers run on those only); medians of "
             f"{args.repeats} calls of each, taken in turn", f"- load average: {load()}", "",
             "| measurement | median ms | fastest ms | comparison |", "|---|---:|---:|---|",
             f"| Click, the model alone ({cams.LABELS[method]}) | {t['alone'].median:.1f} | {t['alone'].best:.1f} | |",
             f"| Click, with its {len(checked.checkers)} checkers (as the app answers) | {t['checked'].median:.1f} | "
             f"{t['checked'].best:.1f} | {t['checked'].median / t['alone'].median:.2f}x alone |",
             f"| The checkers' forwards on one prepared scan | {t['checkers'].median:.1f} | "
             f"{t['checkers'].best:.1f} | {t['checkers'].median / t['alone'].median:.2f}x a click alone |"]
    return report(lines, args.out)


if __name__ == "__main__":
    main()
