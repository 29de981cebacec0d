"""The audit CLI on a small synthetic dataset: the JSON figures match what was planted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import ImageOps

from tests.synthetic import scan
from studies.audit import get_args_parser, main

# Seeds of synthetic scans whose thumbnails correlate below 0.85 pairwise: distinct pictures.
G, N, NEW = (0, 1, 2, 4), (5, 7), (12, 13, 18)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Kaggle-like folder: 4 glioma pictures (one byte copy, one half-size copy), 2 notumor
    RGB pictures, a Testing mirror copy of a Training glioma, a new Testing picture, and one
    picture filed under two labels. Plus a flat folder holding resized copies of two of them."""
    root = tmp_path_factory.mktemp("audit")
    data, other = root / "data", root / "other"
    for d in ("Training/glioma", "Training/notumor", "Testing/glioma", "Testing/notumor"):
        (data / d).mkdir(parents=True)
    for k in range(4):
        scan(G[k]).save(data / f"Training/glioma/g{k}.png")
    (data / "Training/glioma/g0_dup.png").write_bytes((data / "Training/glioma/g0.png").read_bytes())
    scan(G[1]).resize((128, 128)).save(data / "Training/glioma/g1_small.png")
    for k in (0, 1):
        scan(N[k], rgb=True).save(data / f"Training/notumor/n{k}.jpg", quality=95)
    scan(G[3]).save(data / "Training/notumor/mislabelled.png")          # same picture as g3
    ImageOps.mirror(scan(G[2])).save(data / "Testing/glioma/t_copy.png")
    scan(NEW[0]).save(data / "Testing/glioma/t_new.png")
    scan(NEW[1], rgb=True).save(data / "Testing/notumor/t_new.jpg")
    for d in ("glioma", "no_tumor"):
        (other / d).mkdir(parents=True)
    scan(G[0]).convert("RGB").resize((200, 200)).save(other / "glioma/Tr-g0.jpg", quality=90)
    scan(N[0], rgb=True).resize((200, 200)).save(other / "no_tumor/Tr-n0.jpg", quality=90)
    scan(NEW[2], rgb=True).save(other / "no_tumor/Tr-new.jpg")
    return data, other


def run(*argv) -> dict:
    summary = main(get_args_parser().parse_args([str(a) for a in argv] + ["--workers", "1"]))
    out = Path(argv[argv.index("--out") + 1])
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for name in ("groups.csv", "args.json", "r_histogram.png", "gallery.png"):
        assert (out / name).is_file()
    return summary


def test_audit_counts_copies_leaks_and_mixed_labels(folders, tmp_path):
    data, _ = folders
    s = run(data, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert s["files"] == 12 and s["unreadable"] == 0
    assert s["splits"]["train"]["glioma"] == {"files": 6, "distinct": 4, "redundant": 2,
                                              "byte_copies": 1}
    assert s["splits"]["train"]["notumor"]["distinct"] == 3
    assert s["groups"] == 8
    assert s["candidate_recall"]["missed"] == 0
    assert s["candidate_recall"]["groups_if_all_pairs_compared"] == 8
    look = s["second_look"]        # greyscale copies stay copies at 128 px
    assert sum(b["pairs"] for b in look["bins"]) >= 3
    assert look["above_threshold_but_different_at_128px"] == 0
    x = s["cross_split"]
    assert (x["test_files"], x["test_with_copy_in_train"], x["groups_crossing"]) == (3, 1, 1)
    assert [sorted(m["path"] for m in g["members"]) for g in s["mixed_label_groups"]] == \
        [["Training/glioma/g3.png", "Training/notumor/mislabelled.png"]]
    assert s["shortcuts"]["per_class"]["notumor"]["mode"] == {"RGB": 3, "L": 1}
    assert set(s["shortcuts"]["classifiers"]["accuracy"]["majority class"]) == \
        {"official test", "clean test"}
    assert s["shortcuts"]["classifiers"]["n"]["clean test"] == 2
    csv_rows = (tmp_path / "out" / "groups.csv").read_text().splitlines()
    assert len(csv_rows) == 13


def test_audit_against_finds_copies_in_the_other_dataset(folders, tmp_path):
    data, other = folders
    s = run(other, "--against", data, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    a = s["against"]
    assert (a["files"], a["with_copy"], a["same_label"]) == (3, 2, 2)
    assert a["with_direct_copy_all_pairs_compared"] == 2
    assert a["without_copy"] == ["no_tumor/Tr-new.jpg"]
    assert a["copy_in_split"] == {"train": 2}
    assert s["cross_split"] is None
    assert s["shortcuts"]["fit_on"].startswith("data Training")
    assert "other (all)" in s["shortcuts"]["classifiers"]["n"]


def test_audit_rejects_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such"):
        main(get_args_parser().parse_args([str(tmp_path / "no-such")]))


@pytest.mark.parametrize("flag, value", [("--threshold", "1.5"), ("--workers", "0")])
def test_audit_rejects_bad_numbers(folders, tmp_path, flag, value):
    data, _ = folders
    with pytest.raises(ValueError, match=flag.lstrip("-")):
        main(get_args_parser().parse_args([str(data), flag, value, "--out", str(tmp_path)]))
