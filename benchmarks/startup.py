"""Start-up time, measured in a fresh interpreter: import, load the checkpoints, warm up.

    python -m benchmarks.startup checkpoints/baseline.safetensors checkpoints/resnet50.safetensors
prints one JSON line of milliseconds.
"""
from __future__ import annotations

import time

_start = time.perf_counter()

import json       # noqa: E402
import subprocess  # noqa: E402
import sys        # noqa: E402
from pathlib import Path  # noqa: E402

from .timing import Timing  # noqa: E402  (imports torch: counted in the import phase)

ROOT = Path(__file__).resolve().parent.parent


def main(paths: list[str], device: str | None = None, precision: str = "auto") -> dict[str, float]:
    import numpy as np
    import torch  # noqa: F401
    from brainmri import Predictor
    imported = time.perf_counter()
    predictors = [Predictor.from_checkpoint(p, device, precision=precision, checked=False) for p in paths]
    loaded = time.perf_counter()
    yy, xx = np.mgrid[-1:1:256j, -1:1:256j]
    scan = np.where(xx ** 2 + yy ** 2 < 0.7, 120, 0).astype(np.uint8)
    for p in predictors:
        p.explain(scan)
    warm = time.perf_counter()
    return {"import": 1000 * (imported - _start), "load": 1000 * (loaded - imported),
            "warmup": 1000 * (warm - loaded), "total": 1000 * (warm - _start)}


def measure(paths: list[str], device: str | None, repeats: int,
            precision: str = "auto") -> tuple[dict[str, Timing], Timing]:
    """(each phase in ms, wall ms of the whole process incl. the interpreter's start)."""
    runs, walls = [], []
    for _ in range(repeats):
        args = [sys.executable, "-m", "benchmarks.startup", *map(str, paths)]
        if device:
            args += ["--device", device]
        args += ["--precision", precision]
        t = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT)
        walls.append(1000 * (time.perf_counter() - t))
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: Timing.of([r[k] for r in runs]) for k in runs[0]}, Timing.of(walls)


if __name__ == "__main__":
    argv = sys.argv[1:]
    options = {"--device": None, "--precision": "auto"}
    for flag in options:
        if flag in argv:
            i = argv.index(flag)
            options[flag], argv = argv[i + 1], argv[:i] + argv[i + 2:]
    print(json.dumps(main(argv, options["--device"], options["--precision"])))
