"""brainmri.report: a one-page PDF of one finding, from a real Service on tiny checkpoints."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from brainmri.predictor import Predictor
from brainmri.report import report_figure, write_report
from brainmri.service import Service
from tests.synthetic import scan


@pytest.fixture(scope="module")
def service(tiny_checkpoints) -> Service:
    return Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                   warmup=False)


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
