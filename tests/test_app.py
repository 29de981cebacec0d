"""The real app, end to end: `python app.py` in a subprocess, every endpoint via gradio_client.

Uses the shipped checkpoints when present (else tiny random ones) and a real Kaggle scan when
BRAINMRI_DATA is set (else a synthetic one).
"""
from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file                      # noqa: E402
from gradio_client.exceptions import AppError                      # noqa: E402

from brainmri.classes import CLASSES                               # noqa: E402
from brainmri.service import class_label                           # noqa: E402
from tests.appserver import checkpoint_dir, running_app, sample_scan  # noqa: E402
from tests.synthetic import scan                                   # noqa: E402


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    folder, _ = checkpoint_dir(tmp)
    with running_app(folder, tmp / "app.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return sample_scan(tmp_path_factory.mktemp("scan"))[0]


def probabilities(label: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label["confidences"]}


def check_probabilities(label: dict) -> None:
    probs = probabilities(label)
    assert sorted(probs) == sorted(CLASSES)
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
    assert label["label"] in CLASSES and probs[label["label"]] == max(probs.values())


def test_endpoints_are_documented(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/classify", "/reblend", "/recheck", "/compare", "/model_card"} <= names


def test_classify_then_reblend(client, scan_file):
    size = Image.open(scan_file).size
    headline, label, overlay, figure, heat = client.predict(
        handle_file(str(scan_file)), "resnet50", "gradcam", "predicted", 0.45, api_name="/classify")
    check_probabilities(label)
    assert "%" in headline and "not a diagnosis" in headline
    assert Image.open(overlay).size == size and Image.open(overlay).mode == "RGB"
    assert Image.open(figure).size[0] > 100                      # heatmap with its colour bar
    heatmap = np.load(heat)
    assert heatmap.shape == size[::-1] and heatmap.dtype == np.float32
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0 and heatmap.max() > 0
    # Opacity 0: the overlay is the scan itself (grey in all three channels), no model run.
    plain = np.asarray(Image.open(client.predict(0.0, api_name="/reblend")))
    assert plain.shape == (size[1], size[0], 3)
    assert (plain[:, :, 0] == plain[:, :, 1]).all() and (plain[:, :, 1] == plain[:, :, 2]).all()
    strong = np.asarray(Image.open(client.predict(1.0, api_name="/reblend")))
    assert not np.array_equal(plain, strong)


def test_classify_baseline_with_target(client, scan_file):
    headline, label, overlay, _, heat = client.predict(
        handle_file(str(scan_file)), "baseline", "layercam", "meningioma", 0.6, api_name="/classify")
    check_probabilities(label)
    assert "Layer-CAM for *Meningioma*" in headline
    assert 0.0 <= np.load(heat).min() and np.load(heat).max() <= 1.0


def test_compare(client, scan_file):
    size = Image.open(scan_file).size
    out = client.predict(handle_file(str(scan_file)), "gradcam", api_name="/compare")
    assert len(out) == 7
    (h1, l1, o1), (h2, l2, o2), summary = out[0:3], out[3:6], out[6]
    for headline, label, overlay in ((h1, l1, o1), (h2, l2, o2)):
        check_probabilities(label)
        assert " ms" in headline and Image.open(overlay).size == size
    assert "Baseline CNN" in h1 and "ResNet-50" in h2
    agree = l1["label"] == l2["label"]
    assert ("models agree" if agree else "models disagree") in summary


def test_dicom_via_api_and_via_the_file_box(client):
    """A DICOM goes straight to /classify (format read from content); the UI's DICOM/NIfTI box
    turns it into a PNG of the very slice the model reads."""
    pydicom_data = pytest.importorskip("pydicom.data")
    dicom = pydicom_data.get_testdata_file("MR_small.dcm")
    _, label, overlay, _, heat = client.predict(handle_file(dicom), "baseline", "gradcam",
                                                "predicted", 0.45, api_name="/classify")
    check_probabilities(label)
    assert Image.open(overlay).size == (64, 64) and np.load(heat).shape == (64, 64)
    preview = client.predict(handle_file(dicom), api_name="/scan_open_file")
    from brainmri.io import load_image
    np.testing.assert_array_equal(np.asarray(Image.open(preview)), np.asarray(load_image(dicom)))


def test_colour_photo_is_not_called_a_tumour(client, tmp_path):
    yy, xx = np.mgrid[0:96, 0:96]
    photo = np.stack([xx * 2.6, yy * 2.6, 255 - xx * 2.6], axis=2).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    headline, label, *_ = client.predict(handle_file(str(path)), "resnet50", "gradcam",
                                         "predicted", 0.45, api_name="/classify")
    assert "This does not look like a brain MRI slice" in headline and " %" not in headline
    check_probabilities(label)                              # still shown, for reference


def test_model_card(client):
    card = client.predict(api_name="/model_card")
    assert "Research and education only" in card and "Known limitations" in card


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is a text file, not a scan\n" * 10, "not an image|not a readable image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not a readable image|damaged|truncated"),
])
def test_bad_upload_is_a_readable_error(client, scan_file, tmp_path, content, message):
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(content)
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), "resnet50", "gradcam", "predicted", 0.45,
                       api_name="/classify")
    text = str(info.value)
    assert re.search(message, text), text
    assert "Traceback" not in text and "/tmp" not in text and "gradio" not in text.lower()
    # ... and the server still serves.
    _, label, *_ = client.predict(handle_file(str(scan_file)), "baseline", "gradcam", "predicted",
                                  0.45, api_name="/classify")
    check_probabilities(label)


def test_bad_choice_is_refused(client, scan_file):
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(scan_file)), "resnet50", "gradcam", "banana", 0.45,
                       api_name="/classify")
    assert "banana" in str(info.value) and "Traceback" not in str(info.value)


# The pieces of app.py that need no server.

def test_flags_and_environment(monkeypatch):
    import app
    for var in ("BRAINMRI_HOST", "BRAINMRI_PORT", "GRADIO_SERVER_PORT", "SPACE_ID",
                "BRAINMRI_CHECKPOINTS", "BRAINMRI_EXAMPLES"):
        monkeypatch.delenv(var, raising=False)
    args = app.get_args_parser().parse_args([])
    assert (args.host, args.port, str(args.checkpoints), args.examples) == (
        "127.0.0.1", 7860, "checkpoints", None)
    monkeypatch.setenv("SPACE_ID", "someone/brainmri")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    args = app.get_args_parser().parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7000)
    monkeypatch.setenv("BRAINMRI_HOST", "10.0.0.2")
    monkeypatch.setenv("BRAINMRI_PORT", "7100")
    assert app.get_args_parser().parse_args(["--port", "7200"]).port == 7200
    assert app.get_args_parser().parse_args([]).host == "10.0.0.2"


def test_pick_examples(tmp_path):
    import app
    for folder in ("glioma", "no_tumor", "not-a-class"):
        (tmp_path / folder).mkdir()
        for i in range(3):
            scan(seed=i, size=32).save(tmp_path / folder / f"{i}.png")
    (tmp_path / "glioma" / "notes.txt").write_text("not an image")
    picked = app.pick_examples(tmp_path, per_class=2)
    assert [c for _, c in picked] == ["Glioma", "Glioma", "No tumour", "No tumour"]
    assert all(p.is_file() and tmp_path not in p.parents for p, _ in picked)   # copies
    assert app.pick_examples(None) == [] and app.pick_examples(tmp_path / "missing") == []
    assert app.pick_examples(tmp_path / "not-a-class", per_class=2) != []      # flat folder


def test_heatmap_with_colour_bar():
    from brainmri.overlay import colourise, with_colour_bar
    ramp = np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(50, 40)    # 0 top, 1 bottom
    fig = with_colour_bar(ramp, size=200)
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
    assert fig.shape[0] == 200 + 24 and fig.shape[1] > 160 + 18      # map 200 x 160, bar beside
    scaled = colourise(cv2.resize(ramp, (160, 200)))
    assert np.abs(fig[12:212, 12:172].astype(int) - scaled).max() <= 1    # the map, as overlaid
    bar = fig[12:212, 184:202]                                         # hot at the top
    assert np.array_equal(bar[0, 9], colourise(np.float32([[1.0]]))[0, 0])
    assert np.array_equal(bar[-1, 9], colourise(np.float32([[0.0]]))[0, 0])
    assert (fig[12:212, 202:] < 128).any()                             # tick labels are drawn
    with pytest.raises(ValueError, match="non-empty"):
        with_colour_bar(np.zeros((0, 4), np.float32))


def test_method_picker_opens_on_the_measured_default(app_url):
    """The served page's method dropdown starts on the ResNet-50 checkpoint's stored default and
    labels each method with the pointing game stored beside it (when the checkpoint has one)."""
    import json
    import urllib.request
    from brainmri.checkpoint import read_metadata
    from tests.conftest import SHIPPED
    config = json.loads(urllib.request.urlopen(app_url.rstrip("/") + "/config", timeout=30).read())
    pickers = [c["props"] for c in config["components"]
               if c.get("type") == "dropdown" and c["props"].get("label") == "Explanation method"]
    assert len(pickers) == 2                                    # Classify and Compare tabs
    real = all((SHIPPED / f"{m}.safetensors").is_file() for m in ("baseline", "resnet50"))
    meta = read_metadata(SHIPPED / "resnet50.safetensors") if real else {}   # else tiny ones
    for props in pickers:
        assert props["value"] == meta.get("default_cam", "gradcam")
        labels = {value: label for label, value in props["choices"]}
        for method, score in meta.get("cam_scores", {}).items():
            assert f"ResNet-50 {100 * score:.0f}%" in labels[method]


def test_app_caps_malloc_arenas(tmp_path):
    """Run as a program, the app restarts itself with MALLOC_ARENA_MAX=2 (glibc) unless the
    operator set it; it then fails cleanly here: the folder has no checkpoints."""
    import os
    import platform
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    for preset, expected in ((None, "2" if platform.libc_ver()[0] == "glibc" else "unset"), ("4", "4")):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        if preset:
            env["MALLOC_ARENA_MAX"] = preset
        r = subprocess.run([sys.executable, "app.py", "--checkpoints", str(tmp_path)], cwd=root,
                           env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and "no checkpoints in" in r.stderr
        assert f"MALLOC_ARENA_MAX={expected}" in r.stderr


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.45, 1.0, 1.7])
def test_blend_is_the_weighted_sum_of_scan_and_colours(alpha):
    from brainmri.overlay import blend, colourise
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    heat = rng.random((37, 53), dtype=np.float32)
    out = blend(grey, heat, alpha)
    a = min(alpha, 1.0)
    exact = a * colourise(heat).astype(np.float64) + (1 - a) * grey[:, :, None].astype(np.float64)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    assert np.abs(out - exact).max() <= 1.0            # rounding of the last level only
    if a in (0.0, 1.0):                                # the scan alone, the colours alone
        assert np.array_equal(out, np.repeat(grey[:, :, None], 3, 2) if a == 0 else colourise(heat))
    with pytest.raises(ValueError, match="shape"):
        blend(grey, heat[:, :-1], alpha)


def test_recheck_paints_out_the_hot_region(client, scan_file):
    size = Image.open(scan_file).size
    headline, label, *_ = client.predict(handle_file(str(scan_file)), "resnet50", "gradcam",
                                         "predicted", 0.45, api_name="/classify")
    text, painted = client.predict(0.45, api_name="/recheck")
    assert "Hot region painted out" in text and "% of the head" in text
    assert ("decided this answer" in text) or ("holds without" in text)
    assert f"before: {class_label(label['label'])}" in text
    assert Image.open(painted).size == size and Image.open(painted).mode == "RGB"
    with pytest.raises(AppError, match="Classify a scan first"):           # a new session
        Client(client.src, verbose=False).predict(0.45, api_name="/recheck")
