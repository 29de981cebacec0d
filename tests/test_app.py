"""The real app, end to end: `python app.py` in a subprocess, every endpoint via gradio_client.

Uses the shipped checkpoints when present (else tiny random ones) and a real Kaggle scan when
BRAINMRI_DATA is set (else a synthetic one).
"""
from __future__ import annotations

import asyncio
import importlib.util
import math
import re
import time
from pathlib import Path

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
def app_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("app")


MCP = importlib.util.find_spec("mcp") is not None             # gradio[mcp] installed


@pytest.fixture(scope="module")
def app_url(app_dir):
    folder, _ = checkpoint_dir(app_dir)
    with running_app(folder, app_dir / "app.log", args=("--mcp",) if MCP else ()) as url:
        yield url


@pytest.fixture(scope="module")
def app_log(app_dir):
    return app_dir / "app.log"


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    return sample_scan(tmp_path_factory.mktemp("scan"))[0]


def classify(client, scan, model="resnet50", method="gradcam", target="predicted", alpha=0.45):
    """/classify -> (headline, bars, (scan, overlay), heatmap figure, .npy, result dict)."""
    return client.predict(handle_file(str(scan)), model, method, target, alpha, -1,
                          api_name="/classify")


def bar_names(bars) -> list[str]:
    """The names on a gr.Label's bars, most probable first ([] when it shows none)."""
    return [c["label"] for c in (bars or {}).get("confidences") or []]


def display_size(size: tuple[int, int]) -> tuple[int, int]:
    """The app shows scans with a longer side under 512 px enlarged to 512."""
    scale = max(1.0, 512 / max(size))
    return round(size[0] * scale), round(size[1] * scale)


def test_endpoints_are_documented_and_named(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/reblend", "/recheck", "/report", "/compare", "/model_card"} <= set(api)
    for name, endpoint in api.items():
        for value in endpoint["returns"] + endpoint["parameters"]:
            assert not (value.get("label") or "").startswith("value_"), (name, value)
    assert [p["parameter_name"] for p in api["/classify"]["parameters"]] == [
        "scan", "model", "method", "target", "alpha", "slice_no"]


def test_classify_then_reblend_and_report(client, scan_file):
    size = Image.open(scan_file).size
    headline, bars, (before, after), figure, heat, result = classify(client, scan_file)
    assert set(result["probabilities"]) == set(CLASSES) and result["is_mri"]
    assert math.isclose(sum(result["probabilities"].values()), 1.0, abs_tol=1e-4)
    assert result["label"] == max(result["probabilities"], key=result["probabilities"].get)
    assert result["outcome"] in ("confident", "caution") and isinstance(result["reasons"], list)
    assert "%" in headline and "not a diagnosis" in headline
    names = bar_names(bars)                               # the headline's names, one decimal
    ranked = sorted(result["probabilities"], key=lambda c: -result["probabilities"][c])
    assert [n.rsplit(" ", 1)[0] for n in names] == [class_label(c) for c in ranked]
    assert all(re.search(r" (<|>)?\d+\.\d%$", n) for n in names), names
    assert not any(n.endswith((" 100.0%", " 0.0%")) for n in names)
    assert not re.search(r"<[a-z/]", headline), headline   # no HTML markup
    assert Image.open(before).size == Image.open(after).size == display_size(size)
    assert Image.open(after).mode == "RGB"
    assert Image.open(figure).size[0] > 100                # heatmap with its colour bar
    heatmap = np.load(heat)
    assert heatmap.shape == size[::-1] and heatmap.dtype == np.float16
    assert f"{size[1]}x{size[0]}-float16" in heat
    assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0 and heatmap.max() > 0
    # Opacity 0: the overlay is the scan itself (grey in all three channels), no model run.
    _, plain = client.predict(0.0, api_name="/reblend")
    plain = np.asarray(Image.open(plain))
    assert (plain[:, :, 0] == plain[:, :, 1]).all() and (plain[:, :, 1] == plain[:, :, 2]).all()
    _, strong = client.predict(1.0, api_name="/reblend")
    assert not np.array_equal(plain, np.asarray(Image.open(strong)))
    pdf = client.predict(api_name="/report")
    assert pdf.endswith(".pdf") and open(pdf, "rb").read(4) == b"%PDF"


def test_a_new_session_gets_a_clear_message(client):
    fresh = Client(client.src, verbose=False)
    for endpoint, args in (("/reblend", (0.5,)), ("/recheck", (0.45,)), ("/report", ())):
        with pytest.raises(AppError, match="Classify a scan first"):
            fresh.predict(*args, api_name=endpoint)


def test_classify_baseline_with_target(client, scan_file):
    headline, *_, heat, result = classify(client, scan_file, "baseline", "layercam", "meningioma", 0.6)
    assert "Layer-CAM for *Meningioma*" in headline and result["explained_class"] == "meningioma"
    assert 0.0 <= np.load(heat).min() and np.load(heat).max() <= 1.0


def test_compare(client, scan_file):
    out = client.predict(handle_file(str(scan_file)), "gradcam", -1, api_name="/compare")
    assert len(out) == 7
    (h1, b1, o1), (h2, b2, o2), summary = out[0:3], out[3:6], out[6]
    for headline, bars, overlay in ((h1, b1, o1), (h2, b2, o2)):
        assert " ms" in headline and len(bar_names(bars)) == len(CLASSES)
        assert Image.open(overlay).size == display_size(Image.open(scan_file).size)
    assert "Baseline CNN" in h1 and "ResNet-50" in h2
    assert ("models agree" in summary) or ("models disagree" in summary)



def test_the_api_answers_any_slice_of_a_stack(client, scan_file, tmp_path):
    """`slice_no` picks a page, frame or slice through the API as in the browser (the API used
    the page's slice chooser, whose static maximum 0 refused every later slice)."""
    grey = Image.open(scan_file).convert("L")
    stack = tmp_path / "stack.tif"                        # page 1: the scan mirrored
    grey.save(stack, save_all=True, append_images=[grey.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])

    def shown(slice_no, endpoint="/classify"):
        args = ("resnet50", "gradcam", "predicted", 0.45) if endpoint == "/classify" else ("gradcam",)
        out = client.predict(handle_file(str(stack)), *args, slice_no, api_name=endpoint)
        before = out[2][0] if endpoint == "/classify" else None
        return np.asarray(Image.open(before).convert("L"), np.float32) if before else out

    first, second = shown(0), shown(1)
    mirrored = second[:, ::-1]
    assert np.abs(second - first).mean() > 5 * np.abs(mirrored - first).mean()
    pypdf = pytest.importorskip("pypdf")                  # the report names the page it shows
    text = pypdf.PdfReader(client.predict(api_name="/report")).pages[0].extract_text()
    assert "scan: stack.tif, slice 1 (2 in all)" in text, text
    compared = shown(1, "/compare")
    assert " ms" in compared[0] and " ms" in compared[3]
    with pytest.raises(AppError, match="out of range: this file has 2"):
        shown(2)

def test_compare_reads_a_dicom_series_whole(client, scan_file, tmp_path):
    """A series zip on /compare: each model's scan-level finding on its chosen slice, with bars
    and map, and an agreement line that follows the two findings; several series: one message.
    The series: the sample scan (a Kaggle one with BRAINMRI_DATA) at six brightnesses between
    two empty slices at each end."""
    from brainmri.io import load_image, to_grey
    from tests.synthetic import dicom_series, head_volume, zipped
    grey = np.asarray(Image.fromarray(to_grey(load_image(scan_file))).resize((128, 128)), np.uint16)
    files = dicom_series(np.stack([grey * 0] * 2 + [grey * (4 + k) for k in range(6)] + [grey * 0] * 2))
    series = tmp_path / "series.zip"
    series.write_bytes(zipped({f"IM{k:03d}": f for k, f in enumerate(files[::-1])}))
    out = client.predict(handle_file(str(series)), "gradcam", -1, api_name="/compare")
    assert len(out) == 7
    findings = []
    for headline, bars, overlay in (out[0:3], out[3:6]):
        assert "DICOM series" in headline and "4 of 10 slices outside the head" in headline
        found = re.search(r"### Scan: (.+?) on ", headline)
        if found is None:                                    # every slice refused by this model
            assert "No slice of this scan could be classified" in headline and overlay is None
            continue
        findings.append(found.group(1))
        chosen = int(re.search(r"\*\*Slice (\d+):\*\*", headline).group(1))
        assert 2 <= chosen < 8 and len(bar_names(bars)) == len(CLASSES)
        assert Image.open(overlay).size == (512, 512)
        assert f"Most probable: slice {chosen}" in headline or f"Most suspicious: slice {chosen}" in headline
    summary = out[6]
    if len(findings) < 2:
        assert "no finding to compare" in summary
    elif findings[0] == findings[1]:
        assert f"The models agree on the scan:** {findings[0]}" in summary
        assert "disagree" not in out[0] + out[3]
    else:
        assert "The models disagree on the scan" in summary
        assert all("The models give different answers" in h for h in (out[0], out[3]))
    two = zipped({**{f"a/{k}": f for k, f in enumerate(files)},
                  **{f"b/{k}": f for k, f in enumerate(dicom_series(head_volume(6, size=64), series="8"))}})
    (tmp_path / "two.zip").write_bytes(two)
    with pytest.raises(AppError, match="holds 2 series: Compare reads one series"):
        client.predict(handle_file(str(tmp_path / "two.zip")), "gradcam", -1, api_name="/compare")


def test_compare_reads_the_series_picked_in_classify(tiny_checkpoints):
    """Compare opened on an archive of several series: the series picked in Classify is the one
    read (and kept for "Compare again"); none picked yet: one message that says where to pick."""
    import app
    from brainmri.predictor import Predictor
    from brainmri.service import Service
    from tests.synthetic import dicom_series, head_volume, zipped
    service = Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                      warmup=False)
    h = app.Handlers(service, app.Files())
    two = zipped({**{f"a/{k}": f for k, f in enumerate(dicom_series(head_volume(6), series="5"))},
                  **{f"b/{k}": f for k, f in enumerate(dicom_series(head_volume(9), series="6",
                                                                     description="T1"))}})
    with pytest.raises(app.UserError, match="pick one there, then open Compare"):
        h.compare_if_new(two, "gradcam", app.NO_SLICE, None)
    _, *panels, agreement, done = h.compare_if_new(two, "gradcam", app.NO_SLICE, None, "2")
    assert done[3] == "2" and all("4 of 9 slices outside the head" in panels[k] for k in (0, 3))
    assert re.search("on the scan|no finding to compare", agreement)
    *again, done_again = h.compare_again(done, None, "gradcam", app.NO_SLICE, None)
    assert done_again[3] == "2" and "4 of 9 slices outside the head" in again[0]


def test_a_volume_can_be_cut_in_another_plane_in_classify_and_compare(tiny_checkpoints):
    """A NIfTI volume shows the plane chooser, naming the plane it was acquired in; choosing
    coronal reads its coronal slices (the slider and the headline follow), and Compare reads the
    plane picked in Classify. A DICOM series that makes a volume has it too; one without
    positions (read only as stored) hides it."""
    import app
    from brainmri.predictor import Predictor
    from brainmri.service import Service
    from tests.synthetic import dicom_series, dicom_slice, head_volume, nifti, zipped
    service = Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                      warmup=False)
    h = app.Handlers(service, app.Files())
    sh, quiet = app.ScanHandlers(h), (lambda *a, **k: None)
    volume = np.transpose(head_volume(20, size=48), (2, 1, 0)).astype(np.float32)[:, :40]  # 48 x 40 x 20
    head = nifti(volume)                                                   # 1 mm voxels: axial
    out = sh.run_scan(head, "resnet50", "gradcam", -1, 0.45, progress=quiet)
    text, walk, view, plane = out[0], out[9], out[10], out[11]
    assert plane.visible and plane.value == "acquired" and plane.label.endswith("(acquired axial)")
    assert len(view.scan) == 20 and walk.maximum == 19 and "· axial" in text
    # every slice's answer as the batch command's CSV: one row per slice, one for the scan
    import csv
    rows = list(csv.DictReader(open(out[12].value["path"], encoding="utf-8")))
    assert out[12].visible and [r["slice"] for r in rows] == [str(k) for k in range(20)] + ["scan"]
    assert rows[-1]["note"].startswith("20 slices (axial)") and rows[0]["note"] == app.OUTSIDE
    out = sh.classify(head, "resnet50", "gradcam", -1, 0.45, app.NO_SLICE, None, "coronal", progress=quiet)
    text, walk, view, plane = out[0], out[9], out[10], out[11]
    assert plane.visible and plane.value == "coronal" and view.scan.plane == "coronal"
    assert len(view.scan) == 40 and walk.maximum == 39 and "· coronal" in text
    _, *panels, agreement, done = h.compare_if_new(head, "gradcam", app.NO_SLICE, None, None, "coronal")
    assert done[4] == "coronal" and all("· coronal" in panels[k] for k in (0, 3))
    *again, done_again = h.compare_again(done, None, "gradcam", app.NO_SLICE)
    assert done_again[4] == "coronal" and "· coronal" in again[0]
    series = zipped({f"IM{k}": f for k, f in enumerate(dicom_series(head_volume(24, size=48), spacing=2.0))})
    out = sh.run_scan(series, "resnet50", "gradcam", -1, 0.45, progress=quiet)
    assert out[11].visible and out[11].label.endswith("(acquired axial)") and len(out[10].scan) == 24
    out = sh.classify(series, "resnet50", "gradcam", -1, 0.45, app.NO_SLICE, None, "sagittal", progress=quiet)
    assert out[10].scan.plane == "sagittal" and len(out[10].scan) == 48 and "DICOM series · " in out[0]
    unplaced = zipped({f"IM{k}": dicom_slice(v, instance=k + 1, position=None, orientation=None)
                       for k, v in enumerate(head_volume(6))})       # no positions: only as stored
    plane = sh.run_scan(unplaced, "resnet50", "gradcam", -1, 0.45, progress=quiet)[11]
    assert not plane.visible and plane.value == "acquired"
    with pytest.raises(app.UserError, match="plane must be one of"):
        sh.classify(head, "resnet50", "gradcam", -1, 0.45, app.NO_SLICE, None, "oblique", progress=quiet)
    # a plane with too few voxels across it: a warning, the scan kept as shown, the chooser back
    out = sh.replane(head, "resnet50", "gradcam", -1, 0.45, app.NO_SLICE, None, "sagittal", view,
                     progress=quiet)
    assert out[10].scan.plane == "sagittal"                   # 48 x 20 px: fine
    thin = nifti(np.transpose(head_volume(10, size=48), (2, 1, 0)).astype(np.float32))   # 10 slices of 1 mm
    shown = sh.run_scan(thin, "resnet50", "gradcam", -1, 0.45, progress=quiet)
    with pytest.warns(UserWarning, match="cannot be shown in the coronal plane \\(10 x 48 voxels"):
        out = sh.replane(thin, "resnet50", "gradcam", -1, 0.45, app.NO_SLICE, None, "coronal", shown[10],
                         progress=quiet)
    assert len(out) == len(shown) and all(isinstance(o, type(app.gr.skip())) for k, o in enumerate(out) if k != 11)
    assert out[11].visible and out[11].value == "acquired"


def test_a_scan_with_every_slice_refused_shows_a_refusal_not_an_empty_slice(tiny_checkpoints, tmp_path):
    """No slice classified (here every head slice has no dark background): the Classify tab
    shows the first slice with a head and its refusal, with the slider on it, never slice 0
    called "outside the head" when it might not be."""
    import app
    from brainmri.predictor import Predictor
    from brainmri.service import Service
    from brainmri.texts import REFUSED
    from tests.synthetic import dicom_series, zipped
    service = Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                      warmup=False)
    sh = app.ScanHandlers(app.Handlers(service, app.Files()))
    volume = np.stack([np.zeros((64, 64))] * 2 + [np.full((64, 64), 800.0)] * 3).astype(np.uint16)
    path = tmp_path / "flat.zip"
    path.write_bytes(zipped({f"IM{k:03d}": f for k, f in enumerate(dicom_series(volume))}))
    out = sh.run_scan(str(path), "resnet50", "gradcam", -1, 0.45, progress=lambda *a, **k: None)
    text, bars, walk = out[0], out[1], out[9]
    scan_part, slice_part = text.split("**Slice 2:**")
    assert "No slice of this scan could be classified" in scan_part
    assert REFUSED in slice_part and "no dark background" in slice_part and "outside the head" not in slice_part
    assert bars is None and walk.value == 2


def test_a_lossless_compressed_dicom_is_answered_as_its_uncompressed_original(client):
    """JPEG Lossless (first-order prediction and process 14) and JPEG-LS DICOM, compressed by
    DCMTK, through the real server: the same answer and outcome as the uncompressed file."""
    fixtures = Path(__file__).parent / "fixtures" / "lossless"
    *_, original = classify(client, str(fixtures / "grey12.dcm"), "baseline")
    for kind in ("sv1", "p14", "jls"):
        headline, bars, (before, after), _, heat, result = classify(client, str(fixtures / f"grey12-{kind}.dcm"), "baseline")
        assert "cannot decode" not in headline and "Cannot use" not in headline
        assert {k: result[k] for k in ("label", "outcome", "probabilities")} == \
            {k: original[k] for k in ("label", "outcome", "probabilities")}


def test_dicom_goes_to_the_model_with_its_modality(client):
    """A DICOM goes straight to /classify (format read from content); an MR file is classified
    (a 64 px slice shown enlarged), a CT is refused with its reason, as in the library."""
    pydicom_data = pytest.importorskip("pydicom.data")
    headline, bars, (before, after), _, heat, result = classify(
        client, pydicom_data.get_testdata_file("MR_small.dcm"), "baseline")
    assert Image.open(after).size == (512, 512)
    assert (np.load(heat).shape == (64, 64)) if result["is_mri"] else heat is None
    headline, bars, (before, after), figure, heat, result = classify(
        client, pydicom_data.get_testdata_file("CT_small.dcm"))
    assert result["label"] is None and result["outcome"] == "not_mri" and not result["is_mri"]
    assert [r["code"] for r in result["reasons"]] == ["not_mr_modality"]
    assert "modality CT, not MR" in result["reasons"][0]["text"] and "CT, not MR" in headline
    assert figure is None and heat is None and not bar_names(bars) and "%" not in headline
    assert result["probabilities"] is None and result["explained_class"] is None
    overlay = np.asarray(Image.open(after))                      # no heatmap colour
    assert (overlay[:, :, 0] == overlay[:, :, 1]).all() and (overlay[:, :, 1] == overlay[:, :, 2]).all()
    shown = " ".join(map(str, (headline, bars, result)))
    assert not any(c in shown or class_label(c) in shown for c in CLASSES)     # no class anywhere
    pdf = client.predict(api_name="/report")                     # the CT's own report
    pypdf = pytest.importorskip("pypdf")
    text = pypdf.PdfReader(pdf).pages[0].extract_text()
    assert "modality CT" in text and "%" not in text
    assert not any(class_label(c) in text for c in CLASSES), text


def test_colour_photo_is_not_called_a_tumour(client, tmp_path):
    yy, xx = np.mgrid[0:96, 0:96]
    photo = np.stack([xx * 2.6, yy * 2.6, 255 - xx * 2.6], axis=2).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    headline, bars, _, figure, _, result = classify(client, path)
    assert "This does not look like a brain MRI slice" in headline and "%" not in headline
    assert result["label"] is None and "in_colour" in [r["code"] for r in result["reasons"]]
    assert figure is None and not bar_names(bars)
    assert result["probabilities"] is None                       # not a finding: not given


def test_model_card(client):
    card = client.predict(api_name="/model_card")
    assert "Research and education only" in card and "Known limitations" in card


@pytest.mark.skipif(not MCP, reason="the MCP server needs gradio[mcp] (pip install 'gradio[mcp]')")
def test_mcp_server_lists_the_tools_and_answers_a_call(app_url):
    """A real MCP client (the `mcp` package) over streamable HTTP: the app's endpoints are
    tools, /classify takes the scan as a file URL, and a tool call returns the model card."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def talk():
        async with streamable_http_client(app_url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {t.name: t for t in (await mcp.list_tools()).tools}
                card = await mcp.call_tool("model_card", {})
                return tools, card
    tools, card = asyncio.run(asyncio.wait_for(talk(), 120))
    assert {"classify", "compare", "model_card"} <= set(tools)
    schema = tools["classify"].inputSchema["properties"]
    assert list(schema)[:2] == ["scan", "model"] and "brain MRI slice" in tools["classify"].description
    text = " ".join(getattr(c, "text", "") for c in card.content)
    assert not card.isError and "Known limitations" in text


def test_an_upload_over_the_size_limit_is_refused_by_the_handler(client, tmp_path):
    """Over MAX_BYTES (but under Gradio's own cap) the handler refuses it, from its size."""
    from brainmri.io import MAX_BYTES
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_BYTES + 1)
    start = time.perf_counter()
    with pytest.raises(AppError, match="over the limit of 50 MiB"):
        classify(client, big)
    assert time.perf_counter() - start < 30           # the upload itself, on a slow machine


def test_a_huge_image_is_refused_from_its_header(client, scan_file, tmp_path):
    """An 8000x8000 PNG is refused through the app, saying its size, and the next upload is
    answered. That the header alone decides is tested in test_io (no pixel decoded); what it
    costs against any refusal is timed by `python -m benchmarks.reading`."""
    path = tmp_path / "huge.png"
    Image.new("L", (8000, 8000), 30).save(path)
    with pytest.raises(AppError, match="8000x8000 pixels, over the limit"):
        classify(client, path)
    *_, result = classify(client, scan_file)
    assert result["label"] in CLASSES


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is a text file, not a scan\n" * 10, "not an image|not a readable image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, "not a readable image|damaged|truncated"),
])
def test_bad_upload_is_a_readable_error(client, scan_file, tmp_path, content, message):
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(content)
    with pytest.raises(AppError) as info:
        classify(client, bad)
    text = str(info.value)
    assert re.search(message, text), text
    assert "Traceback" not in text and "/tmp" not in text and "gradio" not in text.lower()
    # ... and the server still serves.
    *_, result = classify(client, scan_file, "baseline")
    assert result["label"] in CLASSES


def test_a_user_error_is_logged_in_one_line(client, app_log, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError):
        classify(client, empty)
    time.sleep(0.5)
    text = app_log.read_text()
    assert "refused the input: the file is empty" in text
    assert "Traceback" not in text


def test_bad_choice_is_refused(client, scan_file):
    with pytest.raises(AppError) as info:
        classify(client, scan_file, target="banana")
    assert "banana" in str(info.value) and "Traceback" not in str(info.value)


# The pieces of app.py that need no server.

def test_flags_and_environment(monkeypatch):
    import app
    for var in ("BRAINMRI_HOST", "BRAINMRI_PORT", "GRADIO_SERVER_PORT", "SPACE_ID",
                "BRAINMRI_CHECKPOINTS", "BRAINMRI_EXAMPLES"):
        monkeypatch.delenv(var, raising=False)
    args = app.get_args_parser().parse_args([])
    assert (args.host, args.port, str(args.checkpoints), args.examples) == (
        "127.0.0.1", 7860, "checkpoints", app.EXAMPLES)
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
    assert [c for _, c in picked] == ["True class: Glioma"] * 2 + ["True class: No tumour"] * 2
    assert all(p.is_file() and tmp_path not in p.parents for p, _ in picked)   # copies
    assert [p.name for p, _ in picked] == ["0.png", "1.png", "0.png", "1.png"]  # names kept
    shipped = app.pick_examples(app.EXAMPLES)                       # the repository's own
    assert len(shipped) == 8
    captions = dict((p.name, c) for p, c in shipped)                # from examples/ATTRIBUTION.md
    assert captions["glioma-Te-glTr_0003.jpg"] == "True class: Glioma · Kaggle Testing Te-glTr_0003.jpg"
    assert {c.split(" · ")[0] for c in captions.values()} == {
        f"True class: {name}" for name in ("Glioma", "Meningioma", "No tumour", "Pituitary tumour")}
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
    names each method plainly (the pointing game is in the model card)."""
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
        assert labels["gradcam"] == "Grad-CAM" and not any("%" in v for v in labels.values())


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
def test_blend_colours_only_the_hot_regions(alpha):
    from brainmri.overlay import CLEAR_BELOW, OPAQUE_FROM, blend, colourise
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    heat = rng.random((37, 53), dtype=np.float32)
    out = blend(grey, heat, alpha)
    a = min(alpha, 1.0)
    w = np.clip((heat - CLEAR_BELOW) / (OPAQUE_FROM - CLEAR_BELOW), 0, 1)[:, :, None] * a
    exact = w * colourise(heat).astype(np.float64) + (1 - w) * grey[:, :, None].astype(np.float64)
    assert out.dtype == np.uint8 and out.shape == (37, 53, 3)
    assert np.abs(out - exact).max() <= 1.0            # rounding of the last level only
    cold = heat < CLEAR_BELOW                          # low relevance: the scan's own pixels
    assert np.array_equal(out[cold], np.repeat(grey[cold][:, None], 3, 1))
    if a == 0.0:
        assert np.array_equal(out, np.repeat(grey[:, :, None], 3, 2))
    if a == 1.0:
        hot = heat >= OPAQUE_FROM                      # the colours alone where the map is hot
        assert np.array_equal(out[hot], colourise(heat)[hot])
    with pytest.raises(ValueError, match="shape"):
        blend(grey, heat[:, :-1], alpha)


def test_upscale_for_display():
    from brainmri.overlay import upscale
    small = np.zeros((64, 48, 3), np.uint8)
    assert upscale(small).shape == (512, 384, 3)
    big = np.zeros((600, 700), np.uint8)
    assert upscale(big) is big


def test_recheck_paints_out_the_hot_region(client, scan_file):
    size = Image.open(scan_file).size
    *_, result = classify(client, scan_file)
    text, painted = client.predict(0.45, api_name="/recheck")
    assert "Hot region painted out" in text and "% of the head" in text
    assert ("decided this answer" in text) or ("holds without" in text)
    assert f"before: {class_label(result['label'])}" in text and not re.search(r"<[a-z/]", text)
    assert Image.open(painted).size == display_size(size) and Image.open(painted).mode == "RGB"


def test_classify_scan_endpoint_summarises_a_whole_scan(client, tmp_path):
    from tests.synthetic import dicom_series, head_volume, nifti, zipped
    volume = head_volume(10, size=96)
    series = tmp_path / "series.zip"
    series.write_bytes(zipped({f"IM{k}": f for k, f in enumerate(dicom_series(volume)[::-1])}))
    found = client.predict(handle_file(str(series)), "resnet50", "gradcam", "",
                           api_name="/classify_scan")
    assert len(found["probabilities"]) == 10 and found["classified"][:2] == [False, False]
    assert found["probabilities"][0] is None and found["notes"] == []
    if found["chosen_slice"] is not None:                 # the model may refuse every slice
        assert found["finding"] in CLASSES and found["chosen"]["label"] == found["finding"] or \
            found["finding"] == "notumor"
        assert found["chosen_slice"] in found["finding_slices"] or found["finding"] == "notumor"
    else:
        assert found["outcome"] == "not_mri" and found["chosen"] is None
    volume_file = tmp_path / "head.nii.gz"
    volume_file.write_bytes(nifti(np.transpose(volume, (2, 1, 0)).astype(np.float32)))
    read = client.predict(handle_file(str(volume_file)), "baseline", "gradcam", "", api_name="/classify_scan")
    assert len(read["probabilities"]) == 10 and read["plane"] == "axial"
    thick = tmp_path / "thick.nii.gz"           # 24 axial slices: its coronal ones are 64 x 24
    thick.write_bytes(nifti(np.transpose(head_volume(24, size=64), (2, 1, 0)).astype(np.float32)))
    coronal = client.predict(handle_file(str(thick)), "baseline", "gradcam", "", "coronal",
                             api_name="/classify_scan")
    assert len(coronal["probabilities"]) == 64 and coronal["plane"] == "coronal"
    two = tmp_path / "two.zip"
    two.write_bytes(zipped({**{f"a{k}": f for k, f in enumerate(dicom_series(volume[:4], series="5"))},
                            **{f"b{k}": f for k, f in enumerate(dicom_series(volume[3:], series="6",
                                                                             description="T1"))}}))
    with pytest.raises(AppError, match="2 series; pick one: 1: T2 AX \\(4 files, MR\\); 2: T1"):
        client.predict(handle_file(str(two)), "resnet50", "gradcam", "", api_name="/classify_scan")
    assert len(client.predict(handle_file(str(two)), "resnet50", "gradcam", "2",
                              api_name="/classify_scan")["probabilities"]) == 7
    with pytest.raises(AppError, match="a whole scan, not one slice. The classify_scan endpoint"):
        classify(client, series)                # /classify takes one slice: it points the way
