"""Predictor precision and the GPU measurement scripts, on the CPU with tiny checkpoints."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest

from benchmarks import precision, stages
from brainmri.predictor import PRECISIONS, Explanation, Prediction, Predictor

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
        assert p.precision == precision_name and not p.bf16 and isinstance(p.autocast(), nullcontext)


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


def fake(label: str, probs: tuple[float, float], peak: tuple[int, int]) -> Explanation:
    heat = np.zeros((100, 100), np.float32)
    heat[peak] = 1.0
    prediction = Prediction(label, {"glioma": probs[0], "notumor": probs[1]}, True, 0.0)
    return Explanation(prediction, "gradcam", label, heat, np.zeros((100, 100, 3), np.uint8),
                       np.zeros((100, 100), np.uint8))


def test_compare_counts_a_changed_label_and_a_moved_peak():
    a = fake("glioma", (0.7, 0.3), (50, 50))
    same = precision.compare(a, a)
    assert same == {"label_changed": False, "dprob": 0.0, "heat_max": 0.0, "heat_mean": 0.0,
                    "peak_moved": False}
    near = precision.compare(a, fake("glioma", (0.68, 0.32), (52, 51)))    # 2.2 px of 100
    assert not near["label_changed"] and not near["peak_moved"]
    assert near["dprob"] == pytest.approx(0.02) and near["heat_max"] == 1.0
    assert near["heat_mean"] == pytest.approx(2 / 100 ** 2)
    far = precision.compare(a, fake("notumor", (0.4, 0.6), (50, 60)))      # 10 px of 100
    assert far["label_changed"] and far["peak_moved"] and far["dprob"] == pytest.approx(0.3)


def test_stages_prints_a_row_per_model_and_method(tiny_checkpoints, scans):
    text = stages.main(["--checkpoints", str(tiny_checkpoints["resnet50"].parent), "--images", str(scans),
                        "--count", "3", "--device", "cpu", "--repeats", "2"])
    rows = [line for line in text.splitlines() if line.startswith("| baseline") or line.startswith("| resnet50")]
    assert len(rows) == 2          # tiny checkpoints default to Grad-CAM: one method each
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(v) >= 0 for v in cells[2:]) and float(cells[4]) > 0    # explain
