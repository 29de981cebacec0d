"""benchmarks/load.py end to end on tiny checkpoints: it starts the real app, sends concurrent
API calls (some of them bad files), and reports failures, latency, memory and hooks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("gradio_client")
ROOT = Path(__file__).resolve().parent.parent


def test_load_script_smoke(tmp_path):
    out = tmp_path / "load"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("BRAINMRI_DATA", None)                     # synthetic scans: fast and deterministic
    result = subprocess.run(
        [sys.executable, "benchmarks/load.py", "--tiny", "--requests", "30", "--clients", "4",
         "--warmup", "8", "--out", str(out), "--max-growth-mb", "1000"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((out / "load.json").read_text())
    assert report["url_host"] == "127.0.0.1" and report["checkpoints"] == "tiny"
    assert report["requests_sent"] == 30 and report["failures"] == 0
    assert report["bad_inputs_refused_readably"] == 1                # call 24 of 0..29
    assert report["latency_s"]["n"] == 29 and report["latency_s"]["p95"] >= report["latency_s"]["p50"]
    assert report["hooks"]["after"] == report["hooks"]["before"] == 0
    assert report["rss_mb"]["after_load"] > 0 and report["rss_mb"]["during_load"]
    assert report["ok"] is True


def test_load_script_refuses_other_hosts():
    result = subprocess.run([sys.executable, "benchmarks/load.py", "--url", "http://example.com/"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "only 127.0.0.1/localhost" in result.stderr
