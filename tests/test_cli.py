"""python -m brainmri classify: a CSV row per file, bad files as rows, overlays as PNG."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.__main__ import main
from brainmri.batch import find_images
from brainmri.classes import CLASSES
from brainmri.predictor import Predictor
from brainmri.scans import read_scan
from brainmri.volumes import axis_of

from .synthetic import dicom_series, head_volume, nifti, scan, zipped


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """scans/: 5 readable images (PNG, JPEG, RGB, nested, odd sizes), a corrupt one, a note."""
    root = tmp_path_factory.mktemp("data") / "scans"
    (root / "sub" / "deeper").mkdir(parents=True)
    scan(0, size=128).save(root / "a.png")
    scan(1, size=96, rgb=True).save(root / "b.jpg", quality=95)
    scan(2, size=150).save(root / "sub" / "c.png")
    scan(3, size=100).save(root / "sub" / "deeper" / "d.jpeg")
    Image.fromarray(np.pad(np.asarray(scan(4, size=90)), ((0, 0), (20, 0)))).save(root / "e.png")
    (root / "sub" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image, skipped")
    return root


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_find_images_recurses_sorted_and_keeps_missing_paths(scans):
    items = find_images([scans, scans / "a.png", scans / "missing.png"])
    names = [str(i.name) for i in items]
    assert names == ["scans/a.png", "scans/b.jpg", "scans/e.png", "scans/sub/c.png",
                     "scans/sub/corrupt.jpg", "scans/sub/deeper/d.jpeg", "a.png", "missing.png"]


def test_classify_folder_writes_one_row_per_file_and_overlays(scans, tiny_checkpoints, tmp_path):
    out, cams = tmp_path / "out" / "results.csv", tmp_path / "cams"
    code = main(["classify", str(scans), str(scans / "missing.png"), "--model",
                 str(tiny_checkpoints["baseline"]), "--out", str(out), "--cams", str(cams),
                 "--batch-size", "2", "--method", "Grad-CAM++", "--no-progress"])
    assert code == 0
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "label", *(f"p_{c}" for c in CLASSES), "is_mri",
                             "mri_score", "outcome", "reasons", "reason_codes", "familiarity", "cam",
                             "error", "slice", "position_mm", "note"]
    by_name = {r["path"].split("/")[-1]: r for r in rows}
    assert len(rows) == 7 and set(by_name) == {"a.png", "b.jpg", "e.png", "c.png", "corrupt.jpg",
                                               "d.jpeg", "missing.png"}
    bad = {n for n, r in by_name.items() if r["error"]}
    assert bad == {"corrupt.jpg", "missing.png"}
    assert "damaged or truncated" in by_name["corrupt.jpg"]["error"] \
        or "not a readable image" in by_name["corrupt.jpg"]["error"]
    assert "no such file" in by_name["missing.png"]["error"]
    assert by_name["corrupt.jpg"]["label"] == "" and by_name["corrupt.jpg"]["cam"] == ""

    predictor = Predictor.from_checkpoint(tiny_checkpoints["baseline"], device="cpu")
    for name, row in by_name.items():
        if name in bad:
            continue
        expected = predictor.predict(row["path"])
        assert row["label"] == expected.label and row["is_mri"] in ("true", "false")
        assert row["outcome"] == expected.outcome.value
        assert row["reason_codes"] == ";".join(r.code for r in expected.reasons)
        assert row["reasons"] == " ".join(r.text for r in expected.reasons)
        probs = [float(row[f"p_{c}"]) for c in CLASSES]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert probs == pytest.approx([expected.probabilities[c] for c in CLASSES], abs=1e-5)
        overlay = Image.open(row["cam"])
        assert overlay.mode == "RGB" and overlay.size == Image.open(row["path"]).size
    assert (cams / "scans" / "sub" / "deeper" / "d.png").is_file()     # the folder's layout kept
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["args"]["batch_size"] == 2 and saved["summary"]["images"] == 7
    assert saved["summary"]["errors"] == 2 and saved["summary"]["method"] == "gradcam++"
    assert sum(saved["summary"]["outcomes"].values()) == 7 and saved["summary"]["outcomes"]["error"] == 2


def test_overlays_as_jpeg_match_the_png_ones(scans, tiny_checkpoints, tmp_path):
    args = ["classify", str(scans / "a.png"), str(scans / "sub"), "--model", str(tiny_checkpoints["baseline"]),
            "--no-progress", "--method", "gradcam"]
    assert main(args + ["--out", str(tmp_path / "p.csv"), "--cams", str(tmp_path / "png")]) == 0
    assert main(args + ["--out", str(tmp_path / "j.csv"), "--cams", str(tmp_path / "jpg"),
                        "--cams-format", "jpg"]) == 0
    png, jpg = read_rows(tmp_path / "p.csv"), read_rows(tmp_path / "j.csv")
    assert [r["label"] for r in png] == [r["label"] for r in jpg]
    written = [(p["cam"], j["cam"]) for p, j in zip(png, jpg) if p["cam"]]
    assert len(written) == 3                      # a.png, sub/c.png, sub/deeper/d.jpeg
    for p, j in written:
        assert j.endswith(".jpg") and Image.open(j).format == "JPEG" and Image.open(p).format == "PNG"
        a, b = (np.asarray(Image.open(f), np.float32) for f in (p, j))
        assert a.shape == b.shape and np.abs(a - b).mean() < 3.0    # quality 95: close to lossless
    assert json.loads((tmp_path / "j.json").read_text())["args"]["cams_format"] == "jpg"
    with pytest.raises(SystemExit):
        main(args + ["--out", str(tmp_path / "x.csv"), "--cams", str(tmp_path / "x"), "--cams-format", "gif"])


def test_model_by_name_without_cams_uses_predict_only(scans, tiny_checkpoints, tmp_path):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(tiny_checkpoints["resnet50"], folder / "resnet50.safetensors")
    out = tmp_path / "r.csv"
    code = main(["classify", str(scans / "a.png"), str(scans / "sub" / "corrupt.jpg"),
                 "--model", "resnet50", "--checkpoints", str(folder), "--out", str(out),
                 "--no-progress"])
    rows = read_rows(out)
    assert code == 0 and [bool(r["error"]) for r in rows] == [False, True]
    assert rows[0]["cam"] == "" and rows[0]["label"] in CLASSES


def test_a_multi_page_tiff_says_which_page_was_answered(tiny_checkpoints, tmp_path):
    pages, single = tmp_path / "stack.tif", tmp_path / "one.tif"
    scan(0, size=96).save(pages, save_all=True, append_images=[scan(1, size=96), scan(2, size=96)])
    scan(3, size=96).save(single)
    out = tmp_path / "r.csv"
    code = main(["classify", str(pages), str(single), "--model", str(tiny_checkpoints["resnet50"]),
                 "--out", str(out), "--no-progress", "--report", str(tmp_path / "reports")])
    stack, one = read_rows(out)
    assert code == 0 and stack["label"] in CLASSES and not stack["error"]
    assert stack["note"].startswith("the first of 3 pages answered") and "(0 to 2)" in stack["note"]
    assert one["label"] in CLASSES and one["note"] == ""
    pypdf = pytest.importorskip("pypdf")                  # its report names the page it shows
    text = pypdf.PdfReader(tmp_path / "reports" / "stack.pdf").pages[0].extract_text()
    assert "scan: stack.tif, slice 0 (3 in all)" in text, text


def test_a_large_picture_is_read_as_the_app_reads_it(tiny_checkpoints, tmp_path):
    # The batch command and the app reduce a picture longer than WORK_SIDE alike, so a file
    # gets the same answer, and an overlay of the same size, from both.
    from brainmri.io import WORK_SIDE
    from brainmri.service import Service
    big = tmp_path / "big.png"
    noise = np.random.default_rng(5).integers(0, 40, (WORK_SIDE + 2, WORK_SIDE + 2))
    grey = np.asarray(scan(5, size=256).resize(noise.shape[::-1], Image.NEAREST), np.int64)
    Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8)).save(big)
    out, cams = tmp_path / "r.csv", tmp_path / "cams"
    assert main(["classify", str(big), "--model", str(tiny_checkpoints["baseline"]), "--out", str(out),
                 "--cams", str(cams), "--method", "gradcam", "--no-progress"]) == 0
    row, = read_rows(out)
    app = Service({"baseline": Predictor.from_checkpoint(tiny_checkpoints["baseline"], "cpu")},
                  warmup=False).classify(big.read_bytes(), "baseline", "gradcam")
    assert [float(row[f"p_{c}"]) for c in CLASSES] == pytest.approx(
        [app.probabilities[c] for c in CLASSES], abs=1e-6)
    assert Image.open(row["cam"]).size == app.grey.shape[::-1] == (WORK_SIDE // 2 + 1,) * 2


@pytest.mark.parametrize("extra, message", [
    (["--model", "densenet"], "checkpoint not found"),
    (["--method", "deeplift"], "unknown CAM method 'deeplift'"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_arguments_exit_with_a_message(scans, tiny_checkpoints, tmp_path, capsys, extra, message):
    args = ["classify", str(scans), "--checkpoints", str(tmp_path), "--out", str(tmp_path / "x.csv"),
            "--model", str(tiny_checkpoints["baseline"])]
    with pytest.raises(SystemExit) as exit_info:
        main(args + extra)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_report_writes_one_pdf_per_readable_scan(scans, tiny_checkpoints, tmp_path):
    out, reports = tmp_path / "r.csv", tmp_path / "reports"
    assert main(["classify", str(scans / "sub"), "--model", str(tiny_checkpoints["baseline"]),
                 "--out", str(out), "--report", str(reports), "--no-progress"]) == 0
    pdfs = sorted(str(p.relative_to(reports)) for p in reports.rglob("*.pdf"))
    assert pdfs == ["sub/c.pdf", "sub/deeper/d.pdf"]                  # not the corrupt file
    assert all(p.read_bytes().startswith(b"%PDF") for p in reports.rglob("*.pdf"))
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["reports"] == 2


@pytest.fixture(scope="module")
def scan_folder(tmp_path_factory):
    """whole/: a series as a .zip, the same series as files in a folder, a NIfTI volume, a
    zip of two series, a plain image and a damaged zip."""
    root = tmp_path_factory.mktemp("scans") / "whole"
    (root / "series").mkdir(parents=True)
    volume = head_volume(10, size=48)
    files = dicom_series(volume)
    (root / "a.zip").write_bytes(zipped({f"IM{k}": f for k, f in enumerate(files[::-1])}))
    for k, f in enumerate(files):
        (root / "series" / f"IM{k:03d}.dcm").write_bytes(f)
    (root / "head.nii.gz").write_bytes(nifti(np.transpose(volume, (2, 1, 0)).astype(np.float32)))
    two = dicom_series(volume[:6], series="21", description="T1") + \
        dicom_series(volume[2:], series="22", description="T2", number=2)
    (root / "study.zip").write_bytes(zipped({f"{k}": f for k, f in enumerate(two)}))
    scan(0, size=64).save(root / "plain.png")
    (root / "zz-broken.zip").write_bytes(b"PK\x03\x04 broken")
    return root


def test_scans_give_a_row_per_slice_and_one_per_scan(scan_folder, tiny_checkpoints, tmp_path):
    items = find_images([scan_folder])
    assert [(str(i.name), i.scan, len(i.members)) for i in items] == [
        ("whole/a.zip", True, 0), ("whole/head.nii.gz", True, 0), ("whole/plain.png", False, 0),
        ("whole/series", True, 10), ("whole/study.zip", True, 0), ("whole/zz-broken.zip", True, 0)]
    out, cams = tmp_path / "r.csv", tmp_path / "cams"
    assert main(["classify", str(scan_folder), "--model", str(tiny_checkpoints["baseline"]),
                 "--out", str(out), "--cams", str(cams), "--batch-size", "3", "--no-progress"]) == 0
    rows = read_rows(out)
    by_path: dict[str, list[dict]] = {}
    for r in rows:
        by_path.setdefault(r["path"].split("whole/")[-1], []).append(r)
    assert list(by_path) == ["a.zip", "head.nii.gz", "plain.png", "series", "study.zip#1",
                             "study.zip#2", "zz-broken.zip"]
    for name in ("a.zip", "series", "head.nii.gz"):
        got = by_path[name]
        assert [r["slice"] for r in got] == [*map(str, range(10)), "scan"]
        outside = [r for r in got[:-1] if not r["label"]]
        assert {r["slice"] for r in outside} >= {"0", "1", "8", "9"}
        assert all(r["note"].startswith("outside the head") and not r["error"] for r in outside)
        scan_row = got[-1]
        assert scan_row["label"] in CLASSES and "10 slices" in scan_row["note"]
        assert "chosen slice" in scan_row["note"] and Path(scan_row["cam"]).is_file()
    assert [r["position_mm"] for r in by_path["a.zip"][:3]] == ["0.00", "5.00", "10.00"]
    assert [r["p_glioma"] for r in by_path["a.zip"]] == [r["p_glioma"] for r in by_path["series"]]
    assert len(by_path["study.zip#1"]) == 7 and len(by_path["study.zip#2"]) == 9
    assert by_path["plain.png"][0]["slice"] == "" and by_path["plain.png"][0]["label"] in CLASSES
    broken = by_path["zz-broken.zip"]
    assert len(broken) == 1 and broken[0]["slice"] == "scan" and "damaged" in broken[0]["error"]
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert (summary["images"], summary["scans"], summary["scan_slices"]) == (1, 5, 44)


def test_plane_picks_a_volumes_slices(scan_folder, tiny_checkpoints, tmp_path):
    """A (48, 48, 10) volume of 5 mm slices: read in its acquired (axial) plane by default, as
    48 coronal slices (48 x 50 px: square pixels) when asked; the DICOM series (axial, evenly
    spaced) as stored by default, cut coronally when asked."""
    out = tmp_path / "r.csv"
    volume = tmp_path / "head.nii.gz"
    volume.write_bytes(nifti(np.transpose(head_volume(10, size=48), (2, 1, 0)).astype(np.float32),
                             np.diag([1.0, 1.0, 5.0, 1.0])))
    for plane, count in (("acquired", 10), ("coronal", 48)):
        assert main(["classify", str(volume), str(scan_folder / "a.zip"), str(scan_folder / "study.zip"),
                     "--plane", plane, "--model",
                     str(tiny_checkpoints["baseline"]), "--out", str(out), "--no-progress"]) == 0
        rows = read_rows(out)
        volume_rows = [r for r in rows if r["path"].endswith("head.nii.gz")]
        assert len(volume_rows) == count + 1
        assert volume_rows[-1]["note"].startswith(f"{count} slices ({'axial' if count == 10 else plane})")
        series = [r for r in rows if r["path"].endswith("a.zip")]
        cut = len(read_scan(scan_folder / "a.zip", axis=axis_of(plane)))
        assert len(series) == cut + 1 and cut == (10 if plane == "acquired" else 48)
        assert series[-1]["note"].startswith(f"{cut} slices ({'axial' if cut == 10 else plane})")
        study = [r for r in rows if "study.zip#" in r["path"]]        # each series of an archive too
        assert len(study) == ((6 + 1) + (8 + 1) if plane == "acquired" else 2 * (48 + 1))
        assert not any(r["error"] for r in rows)
    with pytest.raises(SystemExit):
        main(["classify", str(volume), "--plane", "oblique", "--out", str(out)])


def test_report_covers_whole_scans_one_pdf_per_series(scan_folder, tiny_checkpoints, tmp_path,
                                                      monkeypatch):
    from brainmri import scanmode
    calls = []
    counted = scanmode.classify_scan
    monkeypatch.setattr(scanmode, "classify_scan", lambda *a, **k: calls.append(1) or counted(*a, **k))
    out, reports = tmp_path / "r.csv", tmp_path / "reports"
    assert main(["classify", str(scan_folder), "--model", str(tiny_checkpoints["baseline"]),
                 "--out", str(out), "--report", str(reports), "--no-progress"]) == 0
    assert len(calls) == 5            # each of 5 series classified once: its report takes the CSV's answer
    pdfs = {str(p.relative_to(reports)): p.read_bytes() for p in reports.rglob("*.pdf")}
    assert sorted(pdfs) == ["whole/a.pdf", "whole/head.pdf", "whole/plain.pdf", "whole/series.pdf",
                            "whole/study-series1.pdf", "whole/study-series2.pdf"]  # not the broken zip
    assert all(data.startswith(b"%PDF") for data in pdfs.values())
    assert b"/Count 2" in pdfs["whole/a.pdf"] and b"/Count 1" in pdfs["whole/plain.pdf"]
    assert json.loads(out.with_suffix(".json").read_text())["summary"]["reports"] == 6


def test_a_report_folder_that_cannot_be_written_leaves_the_csv_whole(scan_folder, tiny_checkpoints,
                                                                     tmp_path, capsys):
    out, blocked = tmp_path / "r.csv", tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert main(["classify", str(scan_folder), "--model", str(tiny_checkpoints["baseline"]),
                 "--out", str(out), "--report", str(blocked), "--no-progress"]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["reports"] == 0 and (summary["images"], summary["scans"]) == (1, 5)
    assert capsys.readouterr().err.count("report not written for") == 6
