"""Run the real app (`python app.py`) as a subprocess on a free local port, for API and browser tests."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import SHIPPED, SHIPPED_ARCHS, make_tiny_checkpoint
from tests.synthetic import scan

ROOT = Path(__file__).resolve().parent.parent
MODELS = SHIPPED_ARCHS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint_dir(tmp: Path) -> tuple[Path, bool]:
    """(folder, real): the shipped checkpoints when both exist, else tiny random ones in `tmp`."""
    if all((SHIPPED / f"{m}.safetensors").is_file() for m in MODELS):
        return SHIPPED, True
    for m in MODELS:
        make_tiny_checkpoint(tmp / f"{m}.safetensors", m)
    return tmp, False


def sample_scan(tmp: Path) -> tuple[Path, bool]:
    """(file, real): one Kaggle Testing glioma scan when BRAINMRI_DATA is set, else synthetic."""
    data = os.environ.get("BRAINMRI_DATA")
    folder = Path(data or "-") / "brain-tumor-mri" / "Testing" / "glioma"
    if data and folder.is_dir():
        return sorted(folder.iterdir())[0], True
    path = tmp / "synthetic-scan.png"
    scan(seed=3, size=200).save(path)
    return path, False


def start_app(checkpoints: Path, log: Path, port: int = 0, timeout_s: float = 600.0,
              args=()) -> tuple[subprocess.Popen, str]:
    """Start `app.py` serving `checkpoints` on 127.0.0.1 (`port`, or a free one), output to
    `log`; return (process, base URL) once it answers. Raises RuntimeError with the log's tail
    if it exits or is not up within `timeout_s`."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("BRAINMRI_EXAMPLES", "SPACE_ID", "GRADIO_SERVER_NAME")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", BRAINMRI_HOST="127.0.0.1")
    cmd = [sys.executable, "app.py", "--port", str(port), "--checkpoints", str(checkpoints), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                stop_app(proc)
                raise RuntimeError(f"app not up after {timeout_s:.0f} s:\n"
                                   f"{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def stop_app(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Terminate, then kill if it has not exited within `timeout_s`."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_app(checkpoints: Path, log: Path, timeout_s: float = 600.0, args=()):
    """Yield the base URL of `app.py` serving `checkpoints`; stop it on exit."""
    proc, url = start_app(checkpoints, log, timeout_s=timeout_s, args=args)
    try:
        yield url
    finally:
        stop_app(proc)
