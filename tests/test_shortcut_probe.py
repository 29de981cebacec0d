"""studies.shortcut_probe on the synthetic two-source folder and a tiny held-out checkpoint."""
from __future__ import annotations

from argparse import Namespace

import numpy as np
import pytest

from brainmri.protocols import build_splits
from studies import shortcut_probe
from tests.test_generalisation import folder, loso_checkpoint  # noqa: F401 (a fixture)


def test_each_shift_is_scored_on_the_held_out_source_and_val(folder, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    ckpt = loso_checkpoint(tmp_path, holdout_source="sartaj-br35h", holdout_classes="meningioma")
    args = Namespace(checkpoints=[ckpt], data=folder, out=tmp_path / "out", batch_size=8, limit=0,
                     threads=1, device="cpu")
    r = shortcut_probe.main(args)[0]
    splits = build_splits(folder, 0.34, 0, holdout_source="sartaj-br35h", holdout_classes=["meningioma"])
    assert (tmp_path / "out" / f"{r['model']}-probe.json").exists()
    assert set(r["sets"]) == {"loso", "val"} and set(r["shifts"]) == set(shortcut_probe.SHIFTS)
    for name, expected in (("loso", splits.loso), ("val", splits.val)):
        per_shift = r["sets"][name]
        assert per_shift[shortcut_probe.AS_THEY_ARE]["changed"] == 0.0
        for s in per_shift.values():
            assert s["n"] == len(expected) == sum(s["called"].values())
            assert 0 <= s["accuracy"] <= 1 and 0 <= s["changed"] <= 1
    # the held-out scans are all meningiomas: accuracy is the share called meningioma
    for s in r["sets"]["loso"].values():
        assert s["accuracy"] == pytest.approx(s["called"]["meningioma"] / s["n"])
    # seeded: the same figures again
    assert shortcut_probe.main(args)[0]["sets"] == r["sets"]
    assert "| none |" in shortcut_probe.table([r])
    assert r["model"].startswith("loso-sartaj-br35h-")         # never a shipped name
    named = shortcut_probe.main(Namespace(**{**vars(args), "names": ["loso-X"], "limit": 2}))[0]
    assert named["model"] == "loso-X" and (tmp_path / "out" / "loso-X-probe.json").exists()
    with pytest.raises(SystemExit, match="--names"):
        shortcut_probe.main(Namespace(**{**vars(args), "names": ["a", "b"]}))


def test_a_run_without_a_held_out_source_is_refused(folder, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="not a run that held a source out"):
        shortcut_probe.main(Namespace(checkpoints=[loso_checkpoint(tmp_path)], data=folder,
                                      out=tmp_path / "out", batch_size=8, limit=0, threads=1,
                                      device="cpu"))


def test_pictures_are_read_once_and_shifted_alike_each_time(tmp_path):
    from PIL import Image
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(good)
    greys = shortcut_probe.read_greys([good, bad])
    assert greys[1] is None and greys[0].shape == (32, 32)
    assert shortcut_probe.shifted(greys[:1], None)[0] is greys[0]           # as they are
    noisy = shortcut_probe.shifted(greys[:1], shortcut_probe.SHIFTS["rician"])
    assert noisy[0].shape == (32, 32) and not np.array_equal(noisy[0], greys[0])
    assert np.array_equal(noisy[0], shortcut_probe.shifted(greys[:1], shortcut_probe.SHIFTS["rician"])[0])
