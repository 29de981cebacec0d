"""Predictor precision and the GPU measurement scripts, on the CPU with tiny checkpoints."""
from __future__ import annotations

from contextlib import nullcontext

import pytest

from benchmarks import precision, stages
from brainmri.predictor import PRECISIONS, Predictor

from .synthetic import scan


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scans")
    for i in range(3):
        scan(i, size=96).save(folder / f"{i}.png")
    return folder


def test_precision_is_checked_and_the_cpu_never_autocasts(tiny_checkpoints):
    path = tiny_checkpoints["resnet50"]
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor.from_checkpoint(path, "cpu", precision="fp16")
    for precision_name in PRECISIONS:
        p = Predictor.from_checkpoint(path, "cpu", precision=precision_name)
        assert p.precision == precision_name and isinstance(p._autocast(), nullcontext)


def test_precision_script_finds_no_difference_where_nothing_differs(tiny_checkpoints, scans, tmp_path):
    """On the CPU every way runs the same float32 code: the script must report no change."""
    out = tmp_path / "precision.json"
    result = precision.main(["--checkpoint", str(tiny_checkpoints["resnet50"]), "--images", str(scans),
                             "--count", "3", "--device", "cpu", "--repeats", "2", "--out", str(out)])
    assert out.is_file()
    assert set(result["methods"]) == set(precision.METHODS)
    for ways in result["methods"].values():
        for summary in ways.values():
            assert summary["scans"] == 3 and summary["labels_changed"] == 0
            assert summary["max_dprob"] == 0 and summary["heat_max_max"] == 0 and summary["peaks_moved"] == 0
    assert max(result["library_max_abs_diff_fp32"].values()) < 1e-4
    methods = {"gradcam", result["default_method"]}                 # one method for a tiny checkpoint
    assert len(result["explain_prepared_ms_median"]) == 3 * len(methods)   # 3 ways each


def test_compare_counts_a_changed_label_and_a_moved_peak(tiny_checkpoints, scans):
    p = Predictor.from_checkpoint(tiny_checkpoints["resnet50"], "cpu")
    a, b = p.explain(scan(0, size=96), "gradcam"), p.explain(scan(1, size=96), "gradcam")
    same = precision.compare(a, a)
    assert not same["label_changed"] and same["dprob"] == 0 and same["heat_max"] == 0
    assert not same["peak_moved"]
    other = precision.compare(a, b)
    assert other["heat_max"] > 0 and other["label_changed"] == (a.prediction.label != b.prediction.label)


def test_stages_prints_a_row_per_model_and_method(tiny_checkpoints, scans):
    text = stages.main(["--checkpoints", str(tiny_checkpoints["resnet50"].parent), "--images", str(scans),
                        "--count", "3", "--device", "cpu", "--repeats", "2"])
    rows = [line for line in text.splitlines() if line.startswith("| baseline") or line.startswith("| resnet50")]
    assert len(rows) == 2          # tiny checkpoints default to Grad-CAM: one method each
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(v) > 0 for v in cells[2:])
