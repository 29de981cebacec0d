"""scripts/results_table.py: the README table, with the lesion columns from studies.lesion_masked."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load():
    spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_has_the_lesion_columns_per_model(tmp_path, capsys):
    m = {"accuracy": 0.9, "macro_f1": 0.8, "n": 10, "ece_uncalibrated": 0.1, "ece_calibrated": 0.02,
         "roc_auc_ovr": 0.99}
    (tmp_path / "metrics.json").write_text(json.dumps(
        [{"model": "resnet50", "protocols": {"val": m, "clean": m}}, {"model": "baseline", "protocols": {"val": m}}]))
    classes = {c: {"lesion out": {"accuracy": a}} for c, a in
               (("glioma", 0.38), ("meningioma", 0.034), ("pituitary", 0.333))}
    classes["all"] = {"lesion out": {"accuracy": 0.27}, "control_unchanged": 0.982}
    (tmp_path / "lm.json").write_text(json.dumps({"splits": {"val": {"classes": classes}}}))
    load().main([str(tmp_path / "metrics.json"), "--lesion", f"resnet50={tmp_path / 'lm.json'}"])
    lines = capsys.readouterr().out.splitlines()
    assert "tumour out, still called" in lines[0] and lines[0].count("|") == lines[1].count("|")
    assert "| 38 / 3 / 33% | 98.2% |" in lines[2]
    assert lines[3].count("|") == lines[0].count("|") and "| - | - |" in lines[3]


def test_table_has_the_loso_column(tmp_path, capsys):
    m = {"accuracy": 0.9, "macro_f1": 0.8, "n": 10, "ece_uncalibrated": 0.1, "ece_calibrated": 0.02,
         "roc_auc_ovr": 0.99}
    (tmp_path / "metrics.json").write_text(json.dumps(
        [{"model": "resnet50", "protocols": {"val": m, "clean": m}}, {"model": "baseline", "protocols": {"val": m}}]))
    runs = []
    for i, (source, acc, right) in enumerate((("sartaj-br35h", 0.626, 0.697), ("figshare", 0.5, 0.61))):
        path = tmp_path / f"g{i}.json"
        path.write_text(json.dumps({"holdout_source": source, "holdout_classes": "meningioma",
                                    "sets": {"loso": {"accuracy": acc, "confident": {"right": right}}}}))
        runs.append(str(path))
    load().main([str(tmp_path / "metrics.json"), "--loso", "resnet50=" + ",".join(runs)])
    lines = capsys.readouterr().out.splitlines()
    assert "leave one source out" in lines[0] and lines[0].count("|") == lines[1].count("|")
    assert "meningioma from sartaj-br35h: 62.6% (69.7%); meningioma from figshare: 50.0% (61.0%)" in lines[2]
    baseline = [c.strip() for c in lines[3].split("|")]
    assert lines[3].count("|") == lines[0].count("|") and baseline[-3] == "-"      # no LOSO run
