"""The Space deploy: the dry run lists exactly the files a Space gets, and the app runs from
only those files (copied into an empty folder, SPACE_ID set) and classifies an example."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from brainmri import space
from brainmri.predictor import checker_paths
from tests.appserver import ROOT, free_port, stop_app


def test_dry_run_lists_the_files_and_sizes():
    r = subprocess.run([sys.executable, "-m", "brainmri.space", "--dry-run"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    listed = [line.split()[0] for line in lines[:-1]]
    assert listed == [path for path, _ in space.listing()]
    assert {"app.py", "requirements.txt", "README.md", "brainmri/service.py",
            "checkpoints/resnet50.safetensors", "examples/ATTRIBUTION.md"} <= set(listed)
    assert not any(p.startswith(("tests/", "train/", "docs/", ".")) for p in listed)
    checkers = checker_paths(ROOT / "checkpoints" / "resnet50.safetensors")
    assert {p.relative_to(ROOT).as_posix() for p in checkers} <= set(listed)
    assert lines[-1].startswith(f"{len(listed)} files, ") and "MB in all" in lines[-1]
    assert all(line.rstrip().endswith(("KB", "MB")) for line in lines[:-1])


def test_upload_needs_a_space_name():
    r = subprocess.run([sys.executable, "-m", "brainmri.space"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 2 and "owner/name" in r.stderr


def test_the_app_runs_from_the_space_files_alone(tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    folder = space.stage(tmp_path / "space")
    staged = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert staged == [path for path, _ in space.listing()]
    assert (folder / "README.md").read_text().startswith("---\ntitle: brainmri")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("BRAINMRI_EXAMPLES", "BRAINMRI_CHECKPOINTS", "PYTHONPATH")}
    env.update(SPACE_ID="test/brainmri", GRADIO_SERVER_PORT=str(port), BRAINMRI_HOST="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False")
    log = tmp_path / "app.log"
    with open(log, "wb") as out:                    # `python app.py` in the Space's folder
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(url + "gradio_api/info", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        client = gradio_client.Client(url, verbose=False)
        example = folder / "examples" / "glioma-Te-gl_0079.jpg"
        out = client.predict(gradio_client.handle_file(str(example)), "resnet50", "gradcam",
                             "predicted", 0.45, -1, api_name="/classify")
        result = out[-1]
        assert result["label"] == "glioma" and result["is_mri"] and result["outcome"] == "confident"
        assert "Examples" in urllib.request.urlopen(url + "config", timeout=30).read().decode()
    finally:
        stop_app(proc)
