"""brainmri.report: a one-page PDF of one finding, from a real Service on tiny checkpoints."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from brainmri.predictor import Predictor
from brainmri.report import report_figure, source_name, write_report
from brainmri.service import Service
from tests.synthetic import scan


@pytest.fixture(scope="module")
def service(tiny_checkpoints) -> Service:
    return Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                   warmup=False)


def test_the_source_line_names_the_slice_of_a_stack(tmp_path):
    from tests.synthetic import head_volume, nifti
    one, pages, volume = tmp_path / "one.png", tmp_path / "stack.tif", tmp_path / "head.nii.gz"
    scan(0, size=32).save(one)
    scan(0, size=32).save(pages, save_all=True, append_images=[scan(1, size=32)] * 2)
    volume.write_bytes(nifti(head_volume(9, size=32).transpose(2, 1, 0).astype("float32")))
    assert source_name(one) == source_name(str(one), 0) == "one.png"
    assert source_name(pages) == "stack.tif, slice 0 (3 in all)"     # a TIFF's first page
    assert source_name(pages, 2) == "stack.tif, slice 2 (3 in all)"
    assert source_name(volume) == "head.nii.gz, slice 4 (9 in all)"  # a volume's middle
    assert source_name(b"bytes") == "" and source_name(tmp_path / "gone.png") == "gone.png"


def test_one_page_pdf(service, tmp_path):
    r = service.classify(scan(seed=1, size=96), "resnet50", "gradcam")
    when = dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.timezone.utc)
    path = write_report(r, tmp_path / "sub" / "finding.pdf", source="scan.png", when=when,
                        model_name="tiny-resnet50")
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    texts = " ".join(t.get_text() for t in report_figure(r, source="scan.png", when=when).texts)
    for needed in ("2026-12-02 09:30", "scan.png", "ResNet-50", "Grad-CAM", "not a diagnosis",
                   f"Outcome: {r.outcome}"):
        assert needed in texts, needed
    assert len(report_figure(r).axes) == 3                      # scan, overlay, probabilities


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("reasons", [0, 1, 2, 4])
def test_nothing_on_the_page_overlaps_however_many_reasons(service, reasons):
    """The reasons above the pictures push them down; the small print stays above the
    disclaimer (with two reasons it used to run into it)."""
    from dataclasses import replace

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from brainmri import outcomes
    r = service.classify(scan(seed=2, size=96), "resnet50", "gradcam")
    found = (outcomes.UNFAMILIAR, outcomes.LOW_CONFIDENCE, outcomes.DISAGREE,
             outcomes.CHECKERS_DISAGREE)[:reasons]
    r = replace(r, outcome=outcomes.Outcome.CAUTION if found else outcomes.Outcome.CONFIDENT,
                reasons=found)
    fig = report_figure(r, source="a-long-file-name-as-users-have-them-0001.png", model_name="tiny")
    renderer = FigureCanvasAgg(fig).get_renderer()
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts]
    panels = [ax.get_tightbbox(renderer) for ax in fig.axes]
    page = fig.bbox
    for i, (text, box) in enumerate(texts):
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, text
        assert not any(boxes_overlap(box, other) for _, other in texts[i + 1:]), text
        assert not any(boxes_overlap(box, panel) for panel in panels), text
    assert not any(boxes_overlap(a, b) for k, a in enumerate(panels) for b in panels[k + 1:])
