"""brainmri.outcomes: the typed outcomes and reasons, the rules, the one decider, and a refusal
that shows no class and no probabilities anywhere (API result, page, PDF report, CSV)."""
from __future__ import annotations

import ast
import csv
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri import mri_check, outcomes
from brainmri.classes import CLASSES
from brainmri.io import load_image
from brainmri.outcomes import (COLOUR, DISAGREE, LOW_CONFIDENCE, MODALITY, NO_BACKGROUND,
                               UNFAMILIAR, UNLIKE_TRAINING, Outcome, caution_reasons, decide,
                               input_reasons, shown)
from brainmri.predictor import Predictor
from brainmri.service import Service, class_label
from brainmri.texts import REFUSED
from tests.synthetic import dicom_slice, scan

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", ".git", ".cache", "runs", "node_modules", "tests"}


def dicom(path: Path, modality: str) -> Path:
    """A one-slice DICOM file written by pydicom: a synthetic head that passes every other
    input check, declaring `modality`."""
    path.write_bytes(dicom_slice(np.asarray(scan(seed=3, size=64), np.uint16) * 16, modality=modality))
    return path


# --- the decider ---------------------------------------------------------------------------------
def test_no_reason_is_confident():
    assert decide(()) == outcomes.Verdict(Outcome.CONFIDENT, ())


def test_cautions_are_kept_once_in_the_order_found():
    v = decide([LOW_CONFIDENCE, UNFAMILIAR, LOW_CONFIDENCE, DISAGREE])
    assert v.outcome is Outcome.CAUTION and v.reasons == (LOW_CONFIDENCE, UNFAMILIAR, DISAGREE)


def test_a_refusal_wins_and_drops_the_cautions_about_a_class():
    v = decide([UNFAMILIAR, COLOUR, LOW_CONFIDENCE, NO_BACKGROUND, COLOUR])
    assert v.outcome is Outcome.NOT_MRI and v.reasons == (COLOUR, NO_BACKGROUND)


def test_an_unnamed_refusal_gets_the_feature_reason():
    assert decide([], is_mri=False) == outcomes.Verdict(Outcome.NOT_MRI, (UNLIKE_TRAINING,))
    assert decide([DISAGREE], is_mri=False).reasons == (UNLIKE_TRAINING,)
    assert decide([COLOUR], is_mri=False).reasons == (COLOUR,)        # named: kept as named


def test_a_filled_reason_is_the_same_reason():
    ct = MODALITY.fill(modality="CT")
    assert ct == MODALITY and "modality CT, not MR" in ct.text and "{" in MODALITY.text
    assert decide([ct, MODALITY.fill(modality="US")]).reasons == (ct,)


# --- the rules -----------------------------------------------------------------------------------
def test_input_reasons_name_each_failed_check(tmp_path):
    assert input_reasons(None) == ()
    assert input_reasons(mri_check.check(scan(seed=1, size=96))) == ()
    assert input_reasons(mri_check.check(load_image(dicom(tmp_path / "mr.dcm", "MR")))) == ()
    ct = input_reasons(mri_check.check(load_image(dicom(tmp_path / "ct.dcm", "CT"))))
    assert ct == (MODALITY,) and ct[0].text.startswith("The file's DICOM header declares modality CT")
    yy, xx = np.mgrid[0:96, 0:96]
    photo = np.stack([xx * 2.6, yy * 2.6, 255 - xx * 2.6], axis=2).astype(np.uint8)
    assert COLOUR in input_reasons(mri_check.check(Image.fromarray(photo)))
    bright = Image.fromarray(np.full((64, 64), 180, np.uint8))
    assert input_reasons(mri_check.check(bright)) == (NO_BACKGROUND,)


@pytest.mark.parametrize("top, familiarity, expected", [
    (0.99, 0.5, ()),
    (0.99, 0.01, (UNFAMILIAR,)),
    (0.80, 0.5, (LOW_CONFIDENCE,)),
    (0.80, 0.01, (UNFAMILIAR, LOW_CONFIDENCE)),
    (0.80, math.nan, (LOW_CONFIDENCE,)),          # no familiarity measured: no caution for it
])
def test_caution_reasons_at_the_checkpoints_thresholds(top, familiarity, expected):
    assert caution_reasons(top, familiarity, min_familiarity=0.025, min_confidence=0.9) == expected


def test_caution_reasons_without_a_detector_use_the_default_confidence():
    assert caution_reasons(outcomes.DEFAULT_MIN_CONFIDENCE - 0.01) == (LOW_CONFIDENCE,)
    assert caution_reasons(outcomes.DEFAULT_MIN_CONFIDENCE) == ()


def test_shown_hides_class_and_probabilities_of_a_refusal():
    probs = {"glioma": 0.7, "notumor": 0.3}
    assert shown(Outcome.NOT_MRI, "glioma", probs) == (None, {})
    assert shown(Outcome.CAUTION, "glioma", probs) == ("glioma", probs)


# --- the typed set -------------------------------------------------------------------------------
def test_a_new_reason_is_one_line_and_its_code_unique():
    try:
        new = outcomes.define("test_only_reason", Outcome.CAUTION, "A sentence for a test.")
        assert outcomes.REASONS["test_only_reason"] is new
        assert decide([new]).outcome is Outcome.CAUTION      # the decider needs no change
        with pytest.raises(ValueError, match="defined twice"):
            outcomes.define("test_only_reason", Outcome.NOT_MRI, "Another.")
    finally:
        outcomes.REASONS.pop("test_only_reason", None)
    with pytest.raises(ValueError, match="refuses"):
        outcomes.define("never", Outcome.CONFIDENT, "Not a reason.")


def test_every_reason_is_one_plain_sentence():
    for reason in outcomes.REASONS.values():
        assert reason.outcome in (Outcome.CAUTION, Outcome.NOT_MRI)
        assert reason.text[0].isupper() and reason.text.endswith(".") and len(reason.text) < 200
        assert reason.code.isidentifier() and reason.code.islower()


def test_outcomes_are_their_names_in_text_and_json():
    assert [o.value for o in Outcome] == ["confident", "caution", "not_mri"]
    assert f"{Outcome.CAUTION}" == str(Outcome.CAUTION) == "caution" == Outcome.CAUTION
    assert json.dumps({"o": Outcome.NOT_MRI}) == '{"o": "not_mri"}'
    assert {o.words for o in Outcome} and Outcome("caution") is Outcome.CAUTION


def truths() -> set[str]:
    """Every string the typed set owns: outcome names and words, reason codes and sentences."""
    own = {o.value for o in Outcome} | {o.words for o in Outcome} | {REFUSED}
    return own | {r.code for r in outcomes.REASONS.values()} | {r.text for r in outcomes.REASONS.values()}


def source_strings() -> list[tuple[str, str]]:
    """(where, text) for every string literal in the project's Python, outside tests, except
    subscripts (reading a field of a record, such as a study's JSON "confident" share)."""
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if SKIP & set(path.relative_to(ROOT).parts):
            continue
        tree = ast.parse(path.read_text(), str(path))
        fields = {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in fields:
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node.value))
    return found


def test_no_outcome_or_reason_string_is_defined_twice():
    """Each outcome name, reason code, reason sentence and refusal title is written once in the
    code base; everything else imports it. Also no literal holds a reason's sentence inside
    a longer text (a copy), and none of the old prose names survives."""
    owned, strings = truths(), source_strings()
    counts = Counter(text for _, text in strings if text in owned)
    twice = {t: [w for w, s in strings if s == t] for t, n in counts.items() if n > 1}
    assert not twice, f"defined more than once: {twice}"
    sentences = {r.text.split("{")[0] for r in outcomes.REASONS.values()}
    copies = [(w, s) for w, s in strings for t in sentences if t in s and s != t and len(t) > 20
              and not s.startswith(t)]
    assert not copies, f"reason sentences copied into other texts: {copies}"
    old = {"unfamiliar acquisition", "low confidence", "low confidence:", "the two models disagree"}
    assert not [(w, s) for w, s in strings if s in old], "an old outcome name is still written"


# --- a refused CT, end to end: no class, no probabilities anywhere --------------------------------
@pytest.fixture(scope="module")
def ct_file(tmp_path_factory):
    return dicom(tmp_path_factory.mktemp("ct") / "head-ct.dcm", "CT")


@pytest.fixture(scope="module")
def service(tiny_checkpoints) -> Service:
    return Service({m: Predictor.from_checkpoint(p, "cpu") for m, p in tiny_checkpoints.items()},
                   warmup=False)


def says_no_class(text: str) -> bool:
    return not any(c in text or class_label(c) in text for c in CLASSES) and "%" not in text


def test_refused_ct_result_and_api_dict_hold_no_class(service, ct_file):
    for model in service.models:
        r = service.classify(str(ct_file), model)
        assert r.outcome is Outcome.NOT_MRI and r.reasons == (MODALITY,)
        assert r.label is None and r.probabilities == {} and r.target is None
        d = r.as_dict()
        assert d["probabilities"] is d["label"] is d["label_name"] is d["explained_class"] is None
        assert d["reasons"] == [{"code": "not_mr_modality", "text": r.reasons[0].text}]
        assert says_no_class(json.dumps(d)) and says_no_class(r.headline)
        assert r.headline.startswith(f"### {REFUSED}") and r.reasons[0].text in r.headline
    for r in service.compare(str(ct_file)).results.values():
        assert r.label is None and says_no_class(r.headline)


def test_refused_ct_pdf_report_holds_no_class(service, ct_file, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    from brainmri.report import write_report
    r = service.classify(str(ct_file), "resnet50")
    path = write_report(r, tmp_path / "ct.pdf", source=ct_file.name)
    text = pypdf.PdfReader(str(path)).pages[0].extract_text()
    assert REFUSED in text and "Not a brain MRI slice: no finding" in text
    assert "modality CT" in text and "No probabilities" in text
    assert says_no_class(text), text
    finding = service.classify(scan(seed=1, size=96), "resnet50")
    text = pypdf.PdfReader(str(write_report(finding, tmp_path / "f.pdf"))).pages[0].extract_text()
    assert class_label(finding.label) in text and "%" in text          # a finding is charted


def test_refused_ct_csv_row_holds_no_class(tiny_checkpoints, ct_file, tmp_path):
    from brainmri.__main__ import main
    scan(seed=1, size=96).save(tmp_path / "mri.png")
    out = tmp_path / "rows.csv"
    assert main(["classify", str(ct_file), str(tmp_path / "mri.png"), "--model",
                 str(tiny_checkpoints["baseline"]), "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        ct, mri = list(csv.DictReader(f))
    assert ct["outcome"] == "not_mri" and ct["reason_codes"] == "not_mr_modality"
    assert ct["label"] == "" and all(ct[f"p_{c}"] == "" for c in CLASSES) and ct["is_mri"] == "false"
    assert says_no_class(",".join(ct.values()))
    assert mri["label"] in CLASSES and all(mri[f"p_{c}"] for c in CLASSES)
