"""Timing helpers and a description of the machine the figures come from."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def times_ms(fn: Callable[[int], object], repeats: int, warmup: int = 1,
             device: torch.device | str = "cpu") -> list[float]:
    """Wall-clock milliseconds of `fn(i)` for i in range(repeats), after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    sync(device)
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        sync(device)
        out.append(1000 * (time.perf_counter() - start))
    return out


def interleaved(fns: dict[str, Callable[[int], object]], repeats: int, warmup: int = 1,
                device: torch.device | str = "cpu") -> dict[str, list[float]]:
    """`times_ms` for several functions taken in turn (a, b, c, a, b, c, ...), so that each
    sees the same machine: on a shared 2-core VM, a separate run per function would compare
    one quiet minute against a busy one."""
    for i in range(warmup):
        for fn in fns.values():
            fn(i)
    sync(device)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(i)
            sync(device)
            out[name].append(1000 * (time.perf_counter() - start))
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


@dataclass(frozen=True)
class Timing:
    """Median and fastest of repeated measurements, in ms. The median is the figure; the
    fastest shows what the code does when nothing else wants the CPU."""
    median: float
    best: float

    @classmethod
    def of(cls, values: list[float], per: int = 1) -> "Timing":
        return cls(statistics.median(values) / per, min(values) / per)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between order statistics."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1/5/15-minute load averages: over the core count, other work skews every figure."""
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores, "
                   f"torch threads: {torch.get_num_threads()}, "
                   f"kernels: {torch.backends.cpu.get_cpu_capability()}",
            "gpu": gpu, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": importlib.metadata.version("torchvision"),
            "grad-cam": importlib.metadata.version("grad-cam")}
