"""brainmri.scanview and the scan report: a whole scan through a real Service on tiny
checkpoints, its headline, its slices walked one by one, its two-page PDF with the strip."""
from __future__ import annotations

import datetime as dt
import io
import json
import re
from dataclasses import replace

import numpy as np
import pytest

from brainmri import outcomes
from brainmri.outcomes import Outcome
from brainmri.io import ImageLoadError
from brainmri.predictor import Predictor
from brainmri.report import scan_page, strip_figure, write_scan_report
from brainmri.scans import SeriesChoice
from brainmri.scanview import compare_scan, scan_agreement, view_scan, view_slice
from brainmri.service import Service

from .synthetic import dicom_series, head_volume, nifti, zipped


@pytest.fixture(scope="module")
def service(tiny_checkpoints) -> Service:
    return Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                   warmup=False)


@pytest.fixture(scope="module")
def series() -> bytes:
    return zipped({f"{k}.dcm": f for k, f in enumerate(dicom_series(head_volume(12)))})


def test_view_scan_answers_the_chosen_slice_as_a_single_upload(service, series):
    seen = []
    v = view_scan(service, series, "resnet50", "gradcam", progress=lambda d, t: seen.append(d))
    r = v.result
    assert len(v.scan) == 12 and v.strip.shape == (12, 4) and seen[-1] == sum(s.brain for s in r.slices)
    assert r.chosen is not None and v.chosen is not None
    alone = service.classify(v.scan.slices[r.chosen], "resnet50", "gradcam")
    assert v.chosen.label == alone.label and np.array_equal(v.chosen.overlay, alone.overlay)
    assert v.chosen.probabilities == pytest.approx(alone.probabilities, abs=1e-5)
    assert v.chosen.headline.split("\n")[0] == alone.headline.split("\n")[0]
    assert f"slice {r.chosen}" in v.headline and "of 12 slices outside the head" in v.headline
    assert "DICOM series · T2 AX · axial · ResNet-50" in v.headline
    data = json.loads(json.dumps(v.as_dict()))
    assert data["chosen_slice"] == r.chosen and data["probabilities"][0] is None
    assert data["classified"] == [s.brain for s in r.slices]


def test_view_slice_walks_the_scan(service, series):
    v = view_scan(service, series, "baseline")
    assert view_slice(service, v, 0) is None                   # outside the head
    middle = view_slice(service, v, 6, "gradcam")
    assert middle.overlay.shape == (64, 64, 3)
    assert middle.label == v.result.slices[6].prediction.label
    with pytest.raises(ValueError, match="slice 12 is out of range: this scan has 12"):
        view_slice(service, v, 12)


def test_unclassifiable_scans_and_choices_are_said(service):
    ct = zipped({f"{k}": f for k, f in enumerate(dicom_series(head_volume(6), modality="CT"))})
    v = view_scan(service, ct, "baseline")
    assert v.chosen is None and v.result.outcome == Outcome.NOT_MRI
    assert "No slice of this scan could be classified" in v.headline and "refused" in v.headline
    empty = view_scan(service, nifti(np.zeros((32, 32, 6), np.float32)), "baseline")
    assert empty.chosen is None and empty.result.notes[-1].startswith("no slice shows enough")
    assert empty.headline.lower().count("enough of a head") == 1      # said once, not in the notes too
    two = zipped({**{f"a{k}": f for k, f in enumerate(dicom_series(head_volume(4), series="5"))},
                  **{f"b{k}": f for k, f in enumerate(dicom_series(head_volume(5), series="6",
                                                                   description="T1"))}})
    with pytest.raises(SeriesChoice, match="2 series"):
        view_scan(service, two, "baseline")
    assert len(view_scan(service, two, "baseline", series=2).scan) == 5
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        view_scan(service, two, "nope")
    with pytest.raises(ImageLoadError, match="single picture, not a scan"):
        view_scan(service, b"\x89PNG\r\n\x1a\n" + bytes(100), "baseline")


def test_compare_scan_views_the_scan_with_every_model_and_says_if_they_agree(service, series):
    seen = set()
    c = compare_scan(service, series, "gradcam", progress=lambda m, d, t: seen.add(m))
    assert list(c.views) == service.models and seen == set(service.models)
    for m, v in c.views.items():                          # each as `view_scan` alone sees it
        alone = view_scan(service, series, m, "gradcam")
        assert (v.result.finding, v.result.chosen) == (alone.result.finding, alone.result.chosen)
        assert v.chosen.label == alone.chosen.label
        assert (outcomes.DISAGREE in v.chosen.reasons) == (c.agree is False)
    findings = {v.result.finding for v in c.views.values()}
    assert c.agree == (len(findings) == 1)
    base, res = c.views["baseline"], c.views["resnet50"]
    other = next(x for x in service.classes if x != res.result.finding)
    differ = {"baseline": base, "resnet50": replace(res, result=replace(res.result, finding=other))}
    agree, text = scan_agreement(differ)
    assert agree is False and "The models disagree on the scan" in text
    none = {"baseline": base, "resnet50": replace(res, result=replace(res.result, chosen=None))}
    assert scan_agreement(none) == (None, scan_agreement(none)[1])
    assert "ResNet-50" in scan_agreement(none)[1] and "no finding to compare" in scan_agreement(none)[1]
    assert scan_agreement({"baseline": base})[0] is None


def test_scan_report_has_the_slice_page_and_the_strip(service, series, tmp_path):
    v = view_scan(service, series, "resnet50", "gradcam")
    when = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.timezone.utc)
    path = write_scan_report(v, tmp_path / "scan.pdf", source="series.zip", when=when)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", data)) == 2
    page = scan_page(v, source="series.zip", when=when)
    texts = " ".join(t.get_text() for t in page.texts)
    for needed in ("2026-12-03 10:00", "series.zip", "12 slices", "5.0 mm apart", "not a diagnosis",
                   f"slice {v.result.chosen}"):
        assert needed in texts, needed
    strip = page.axes[0]
    assert len(strip.lines) == 4 + 1                           # a line per class, the chosen slice
    assert np.allclose(strip.lines[0].get_ydata(), v.strip[:, 0], equal_nan=True)
    fig = strip_figure(v.strip, v.result.classes, v.result.chosen)
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == sum(not s.brain for s in v.result.slices)
    nothing = view_scan(service, zipped({f"{k}": f for k, f in enumerate(
        dicom_series(head_volume(6), modality="CT"))}), "baseline")
    data = write_scan_report(nothing, tmp_path / "ct.pdf").read_bytes()
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1


def test_a_slice_cut_across_thick_slices_is_never_confident(service):
    """A volume of 3 mm axial slices cut coronally: every picture is drawn out 3 times along
    one side, a kind of slice the models were never trained or checked on, so every answer
    on it (each slice, the chosen one, one walked to, the explained one) is at most a caution
    saying so. Read as acquired, or an isotropic volume cut in any plane: no such caution."""
    from brainmri.scanmode import classify_scan
    volume = np.transpose(head_volume(24, size=64), (2, 1, 0)).astype(np.float32)
    thick = nifti(volume, np.diag([1.0, 1.0, 3.0, 1.0]))
    plain = view_scan(service, thick, "resnet50")
    assert plain.scan.plane == "axial" and not plain.scan.reformatted
    assert not any(outcomes.REFORMATTED in s.prediction.reasons for s in plain.result.slices if s.prediction)
    cut = view_scan(service, thick, "resnet50", axis=1)
    assert cut.scan.reformatted and cut.scan.stretch == pytest.approx(3.0)
    answered = [s.prediction for s in cut.result.slices if s.prediction is not None]
    assert answered and not any(p.outcome is Outcome.CONFIDENT for p in answered)
    assert all(outcomes.REFORMATTED in p.reasons for p in answered if p.outcome is Outcome.CAUTION)
    walked = [view_slice(service, cut, s.index) for s in cut.result.slices if s.brain]
    assert all(r.outcome is not Outcome.CONFIDENT for r in walked)
    said = [r for r in walked if r.outcome is Outcome.CAUTION]
    assert said and all("This coronal slice was cut across a scan acquired axial, each pixel drawn "
                        "out 3.0 times" in r.headline for r in said)
    if cut.chosen is not None:
        assert cut.chosen.outcome is not Outcome.CONFIDENT and cut.result.outcome is cut.chosen.outcome
        explained = classify_scan(service.predictor("resnet50"), cut.scan).explanation
        assert explained.prediction.outcome is not Outcome.CONFIDENT
    iso = view_scan(service, nifti(volume), "resnet50", axis=1)                 # 1 mm voxels
    assert iso.scan.plane == "coronal" and iso.scan.stretch == 1.0 and not iso.scan.reformatted
    assert not any(outcomes.REFORMATTED in s.prediction.reasons for s in iso.result.slices if s.prediction)


def test_one_slice_cut_across_thick_slices_is_never_confident_either(service):
    """The Python API's one-slice path (`load_image(axis=...)`, then `Predictor`, the service
    or the batch CLI) holds the same rule as whole scans: the picture says it was cut across
    (`volumes.CUT`), so its answer carries `reformatted_slice`; as acquired, or an isotropic
    volume cut in another plane, it does not."""
    from brainmri import volumes
    from brainmri.io import load_image
    volume = np.transpose(head_volume(24, size=64), (2, 1, 0)).astype(np.float32)
    thick = nifti(volume, np.diag([1.0, 1.0, 3.0, 1.0]))
    predictor = service.predictor("resnet50")
    cut = load_image(thick, axis=1, slice_index=32)
    assert cut.info[volumes.CUT] == ("coronal", "axial", pytest.approx(3.0))
    assert cut.height == 3 * 24                                             # drawn out 3 times
    for answer in (predictor.predict(cut), service.classify(cut, "resnet50")):
        assert answer.outcome is Outcome.CAUTION and outcomes.REFORMATTED in answer.reasons
    said = next(r for r in predictor.predict(cut).reasons if r == outcomes.REFORMATTED)
    assert said.text.startswith("This coronal slice was cut across a scan acquired axial, each "
                                "pixel drawn out 3.0 times")
    for picture in (load_image(thick), load_image(thick, axis=2),
                    load_image(nifti(volume), axis=1)):
        assert volumes.CUT not in picture.info
        assert outcomes.REFORMATTED not in predictor.predict(picture).reasons
    from PIL import Image, PngImagePlugin
    said = PngImagePlugin.PngInfo()                     # a file cannot claim it: a string
    said.add_text(volumes.CUT, "coronal, axial, 3")
    buffer = io.BytesIO()
    cut.save(buffer, "PNG", pnginfo=said)
    for png in (load_image(buffer.getvalue()), Image.open(io.BytesIO(buffer.getvalue()))):
        assert png.info[volumes.CUT] == "coronal, axial, 3" and volumes.declared_cut(png) is None
        assert outcomes.REFORMATTED not in predictor.predict(png).reasons
        assert outcomes.REFORMATTED not in service.classify(png, "resnet50").reasons

