"""Load and leak check for the app: many concurrent API clients, then memory and hooks.

    python benchmarks/load.py --checkpoints checkpoints --data ../shared/data --out runs/load
    python benchmarks/load.py --url http://127.0.0.1:7860/ --pid 12345   # an app already running

Starts `python app.py --port P --checkpoints DIR` on 127.0.0.1 (or targets a running one on
loopback; other hosts are refused), warms it up, then sends `--requests` calls to the
`/classify` endpoint from `--clients` concurrent gradio_client clients, cycling through the
loaded models, the offered CAM methods and a few scans; every 25th call sends a text file
renamed .jpg and must come back as a readable error. It stops by itself after `--requests`
calls or `--budget-s` seconds, whichever comes first. Reports failures (must be 0), p50/p95
latency, the server's resident memory after warm-up and after the load (growth must stay
under `--max-growth-mb`), and whether any forward/backward hook is left on the models, counted
in-process on a `Service` over the same checkpoints after the same mix of calls, including
the hook-based reference CAM path. Writes `load.json`; exit status 1 when a check fails.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BAD_EVERY = 25


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    p.add_argument("--tiny", action="store_true",
                   help="use tiny random checkpoints (a smoke run of the script itself)")
    p.add_argument("--url", help="a running app on 127.0.0.1/localhost instead of starting one")
    p.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    p.add_argument("--port", type=int, default=0, help="port for the started app (0: a free one)")
    p.add_argument("--data", type=Path, default=os.environ.get("BRAINMRI_DATA"),
                   help="folder with brain-tumor-mri/ for real scans (else synthetic ones)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--warmup", type=int, default=32,
                   help="calls before the first memory reading (one per model x method x scan)")
    p.add_argument("--budget-s", type=float, default=1800, help="stop sending after this long")
    p.add_argument("--request-timeout-s", type=float, default=300)
    p.add_argument("--max-growth-mb", type=float, default=100)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "load")
    return p


def check_loopback(url: str) -> str:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"refusing to load-test {host!r}: only 127.0.0.1/localhost targets")
    return url if url.endswith("/") else url + "/"


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process from /proc (Linux), in MiB; None where unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        return None
    return None


def scans(data: Path | None, folder: Path) -> list[Path]:
    """Two real Kaggle Testing scans per class when `data` has them, else synthetic ones."""
    testing = Path(data or "-") / "brain-tumor-mri" / "Testing"
    if testing.is_dir():
        return [p for d in sorted(testing.iterdir()) if d.is_dir() for p in sorted(d.iterdir())[:2]]
    from tests.synthetic import scan
    paths = []
    for seed in range(4):
        paths.append(folder / f"synthetic-{seed}.png")
        scan(seed, size=256, rgb=seed % 2 == 1).save(paths[-1])
    return paths


def registered() -> list[str]:
    """The registered models' names (`brainmri.models.ARCHS`; imports torch)."""
    from brainmri.models import ARCHS
    return list(ARCHS)


def tiny_checkpoints(folder: Path) -> Path:
    from tests.conftest import make_tiny_checkpoint
    for arch in registered():
        make_tiny_checkpoint(folder / f"{arch}.safetensors", arch)
    return folder


class Load:
    """Calls shared by `clients` threads: each takes the next call number until none are left."""

    def __init__(self, url: str, models: list[str], methods: list[str], images: list[Path],
                 bad: Path, total: int, budget_s: float, timeout_s: float, pid: int | None = None):
        self.url, self.total, self.timeout_s, self.pid = url, total, timeout_s, pid
        self.rss: list[tuple[int, float | None]] = []      # (calls sent, server MiB) every 50 calls
        self.plan = list(itertools.product(models, methods, images))
        self.bad, self.deadline = bad, time.monotonic() + budget_s
        self.counter, self.lock = itertools.count(), threading.Lock()
        self.latencies, self.failures, self.refusals, self.bad_ok = [], [], [], 0

    def call(self, client, i: int) -> None:
        from gradio_client import handle_file
        model, method, image = self.plan[i % len(self.plan)]
        bad = i % BAD_EVERY == BAD_EVERY - 1
        if self.pid and i % 50 == 0:
            with self.lock:
                self.rss.append((i, rss_mb(self.pid)))
        start = time.perf_counter()
        try:
            job = client.submit(handle_file(str(self.bad if bad else image)), model, method,
                                "predicted", 0.45, api_name="/classify")
            job.result(timeout=self.timeout_s)
            outcome = "bad input accepted" if bad else None
        except Exception as error:  # noqa: BLE001 - every failure is recorded, none is fatal
            text = f"{type(error).__name__}: {error}"
            readable = "not an image" in str(error) or "text file" in str(error)
            outcome = None if bad and readable else text[:300]
        with self.lock:
            if outcome:
                self.failures.append({"call": i, "model": model, "method": method, "error": outcome})
            elif bad:
                self.bad_ok += 1
            else:
                self.latencies.append(time.perf_counter() - start)

    def worker(self) -> None:
        from gradio_client import Client
        client = Client(self.url, verbose=False)
        while time.monotonic() < self.deadline:
            i = next(self.counter)
            if i >= self.total:
                return
            self.call(client, i)

    def run(self, clients: int) -> float:
        start = time.perf_counter()
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=max(1.0, self.deadline - time.monotonic() + self.timeout_s))
        return time.perf_counter() - start


def hooks_left(checkpoints: Path, images: list[Path], calls: int = 8) -> dict:
    """Forward/backward hooks on each model after calls through a `Service` (the app's code):
    the offered CAM methods, then pytorch-grad-cam's hook-based path (`reference_cam`)."""
    import torch
    from brainmri.cam import reference_cam
    from brainmri.service import Service
    service = Service.from_folder(checkpoints, device="cpu", warmup=False)

    def count() -> int:
        n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(getattr(m, "_backward_pre_hooks", {}))
                for e in service.engines.values() for m in e.model.modules())
        g = torch.nn.modules.module
        return n + len(g._global_forward_hooks) + len(g._global_backward_hooks)

    before = count()
    plan = itertools.cycle(itertools.product(service.models, service.methods, images))
    for model, method, image in itertools.islice(plan, calls):
        service.classify(image, model, method)
    for engine in service.engines.values():
        batch = torch.stack([p.tensor for p in engine.prepare(images[:2])])
        reference_cam(engine.model, "gradcam", batch.to(engine.device), [0, 1])
    return {"before": before, "after": count(), "service_calls": calls,
            "reference_cam_calls": len(service.engines)}


def percentile(values: list[float], q: float) -> float | None:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else None


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # run `finally`: stop the app
    from tests.appserver import start_app, stop_app            # the tests' launcher (imports torch)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="brainmri-load-"))
    images = scans(args.data, tmp)
    bad = tmp / "notes.jpg"
    bad.write_text("not an image\n" * 20)
    checkpoints = tiny_checkpoints(tmp) if args.tiny else args.checkpoints
    proc = None
    if args.url:
        url, pid = check_loopback(args.url), args.pid
    else:
        try:
            proc, url = start_app(checkpoints, args.out / "app.log", args.port, timeout_s=900)
        except RuntimeError as error:
            raise SystemExit(f"{error}\n(log: {args.out / 'app.log'})") from None
        pid = proc.pid
    try:
        from gradio_client import Client
        info = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
        models = [m for m in registered() if (checkpoints / f"{m}.safetensors").is_file()] or registered()
        methods = ["gradcam", "layercam", "layercamfused"]   # offered in the UI, hook-free
        load = Load(url, models, methods, images, bad, args.warmup, args.budget_s, args.request_timeout_s)
        load.run(args.clients)
        warm_failures = list(load.failures)
        time.sleep(2)
        rss_warm = rss_mb(pid)
        load = Load(url, models, methods, images, bad, args.requests, args.budget_s,
                    args.request_timeout_s, pid)
        wall = load.run(args.clients)
        time.sleep(2)
        rss_after = rss_mb(pid)
    finally:
        if proc is not None:
            stop_app(proc)
    hooks = hooks_left(checkpoints, images) if (args.tiny or not args.url) else None
    lat = load.latencies
    sent = len(lat) + len(load.failures) + load.bad_ok
    growth = None if rss_warm is None or rss_after is None else rss_after - rss_warm
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "url_host": urlsplit(url).hostname, "checkpoints": "tiny" if args.tiny else checkpoints.name,
        "endpoints": sorted(info.get("named_endpoints", {})),
        "clients": args.clients, "requests_planned": args.requests, "requests_sent": sent,
        "stopped_by_budget": sent < args.requests, "wall_s": round(wall, 1),
        "failures": len(load.failures), "failure_examples": load.failures[:5],
        "warmup_failures": warm_failures[:5], "bad_inputs_refused_readably": load.bad_ok,
        "latency_s": {"p50": percentile(lat, 50), "p95": percentile(lat, 95),
                      "max": max(lat) if lat else None, "n": len(lat)},
        "throughput_per_s": round(len(lat) / wall, 2) if wall else None,
        "rss_mb": {"after_warmup": rss_warm, "after_load": rss_after, "growth": growth,
                   "during_load": sorted(load.rss)},
        "hooks": hooks,
    }
    ok = (not load.failures and sent == args.requests
          and (growth is None or growth < args.max_growth_mb)
          and (hooks is None or hooks["after"] == hooks["before"] == 0))
    report["ok"] = ok
    (args.out / "load.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
