"""Training packs (train.pack): a protocol's crops and boxes in one file, training from it, the
ImageNet weights rounded to travel, and batches that are the same for any number of loader
workers (train.train.EpochBatches)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri.models import ARCHS
from brainmri.protocols import build_splits, kaggle_root
from brainmri.presets import TrainPreset

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402
from test_train import ARGS, run  # noqa: E402

from train.core import crops_and_boxes
from train.pack import Pack, boxes_in_crop, dequantise, quantise, write_pack

PROTOCOL = {"val_fraction": 0.25, "seed": 0, "holdout_source": None, "holdout_classes": None}


@pytest.fixture(scope="module")
def boxed(tmp_path_factory) -> Path:
    return synthetic.boxed_kaggle(tmp_path_factory.mktemp("packdata") / "kaggle",
                                  counts=(("Training", 10),), class_step=100, offset=5000)


def test_a_pack_holds_the_protocols_crops_and_boxes(boxed, tmp_path):
    pack_path = tmp_path / "pack.npz"
    meta = write_pack(boxed, pack_path, 32, PROTOCOL, quality=95, workers=1)
    pack = Pack.read(pack_path)
    splits = build_splits(boxed, 0.25, 0, cache_dir=None)
    assert [str(s.path) for s in pack.train] == [str(s.path) for s in splits.train]
    assert [str(s.path) for s in pack.val] == [str(s.path) for s in splits.val]
    assert [s.label for s in pack.train] == [s.label for s in splits.train]
    cache = TrainPreset(eval=ARCHS["resnet50"].preset(32)).cache_size
    assert meta["train_size"] == cache and pack.train_crops.shape == (len(splits.train), cache, cache)
    assert pack.val_crops.shape == (len(splits.val), 32, 32)
    preset = ARCHS["resnet50"].preset(cache)
    crops, crop_boxes = crops_and_boxes([s.path for s in splits.train], preset, 1)
    # JPEG at quality 95: close to the crops a run decodes from the folder, not equal.
    assert np.abs(pack.train_crops.astype(int) - crops).mean() < 3
    want = boxes_in_crop(splits.train, crop_boxes, kaggle_root(boxed), cache)
    assert pack.train_boxes == [None if b is None else pytest.approx(b) for b in want]
    assert any(b is not None for b in pack.train_boxes)
    assert all(b is None for b, s in zip(pack.train_boxes, pack.train) if s.class_name == "notumor")
    assert pack.fingerprint("train", np.arange(len(pack.train))) == meta["fingerprints"]["train"]
    half = pack.boxes_at(np.arange(len(pack.train)), cache // 2)
    assert all((a is None) == (b is None) for a, b in zip(half, pack.train_boxes))


def test_a_pack_refuses_a_run_of_another_protocol(boxed, tmp_path):
    pack_path = tmp_path / "pack.npz"
    write_pack(boxed, pack_path, 32, PROTOCOL, workers=1)
    pack = Pack.read(pack_path)
    pack.check({**PROTOCOL})
    with pytest.raises(SystemExit, match="protocol"):
        pack.check({**PROTOCOL, "seed": 1})
    with pytest.raises(SystemExit, match="protocol"):
        pack.check({**PROTOCOL, "holdout_source": "figshare", "holdout_classes": "meningioma"})
    with pytest.raises(SystemExit, match="standardise"):
        pack.check({**PROTOCOL, "standardise": 1})


def test_a_held_out_source_never_reaches_the_pack(tmp_path):
    from tests.test_protocols import SEEDS
    folder = synthetic.two_source_kaggle(tmp_path / "kaggle", SEEDS)
    protocol = {"val_fraction": 0.34, "seed": 0, "holdout_source": "sartaj-br35h",
                "holdout_classes": "meningioma"}
    write_pack(folder, tmp_path / "pack.npz", 32, protocol, workers=1)
    pack = Pack.read(tmp_path / "pack.npz")
    splits = build_splits(folder, 0.34, 0, cache_dir=None, holdout_source="sartaj-br35h",
                          holdout_classes=["meningioma"])
    held = {str(s.path) for s in splits.loso}
    packed = {str(s.path) for s in pack.train + pack.val}
    assert held and not held & packed
    assert not any(pack.sources[str(s.path)] == "sartaj-br35h" and s.class_name == "meningioma"
                   for s in pack.train + pack.val)


def test_training_from_a_pack_with_loader_workers(boxed, tmp_path):
    """The lesion signals and implants trained from a pack by two loader workers: the run
    finishes and its checkpoint records the pack's fingerprints."""
    pack_path = tmp_path / "pack.npz"
    meta = write_pack(boxed, pack_path, 32, PROTOCOL, workers=1)
    out = tmp_path / "run"
    run([sys.executable, "-m", "train", "--data", str(pack_path), "--out", str(out), *ARGS,
         "--epochs", "1", "--counterfactual", "0.3", "--paint-share", "0.6", "--notumor-repeat", "2",
         "--guidance", "1", "--acquisition", "1", "--implant", "0.5", "--precision", "fp32",
         "--loader-workers", "2"], tmp_path)
    row = json.loads((out / "history.json").read_text())[-1]
    assert 0 <= row["train_outside_box"] <= 1 and math.isfinite(row["train_loss"])
    log = (out / "log.txt").read_text()
    assert "from the pack" in log and '"implant control": {"glioma": 0' in log
    from brainmri.checkpoint import load_checkpoint
    _, ckpt_meta = load_checkpoint(out / "model.safetensors")
    assert ckpt_meta["data"]["train"] == meta["fingerprints"]["train"]
    assert ckpt_meta["data"]["val"] == meta["fingerprints"]["val"]


def test_epoch_batches_do_not_depend_on_the_number_of_workers():
    from train.train import EpochBatches, loader, plain_batch
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (24, 37, 37), dtype=np.uint8)
    labels = rng.integers(0, 4, 24).astype(np.int64)
    preset = TrainPreset(eval=ARCHS["baseline"].preset(32))
    from functools import partial
    make = partial(plain_batch, crops, labels, preset, {"batch_size": 8}, None, None)
    chunks = [np.arange(s, s + 8) for s in range(0, 24, 8)]
    one = [b[0] for b in loader(EpochBatches(make, chunks, (0, 1, 0)), 0, False)]
    two = [b[0] for b in loader(EpochBatches(make, chunks, (0, 1, 0)), 2, False)]
    assert len(one) == 3 and all(torch.equal(a, b) for a, b in zip(one, two))
    other = [b[0] for b in loader(EpochBatches(make, chunks, (0, 2, 0)), 0, False)]
    assert not torch.equal(one[0], other[0])          # another epoch, other draws


def test_rounded_weights_stay_within_half_a_step():
    g = torch.Generator().manual_seed(0)
    state = {"big.weight": torch.randn(64, 32, 3, 3, generator=g),
             "small.weight": torch.randn(8, 3, 3, 3, generator=g), "bn.bias": torch.randn(64, generator=g)}
    packed = quantise(state, min_elements=4096)
    assert packed["big.weight.q"].dtype == torch.int8 and packed["small.weight"].dtype == torch.float16
    back = dequantise(packed)
    assert set(back) == set(state) and all(back[k].dtype == torch.float32 for k in back)
    step = state["big.weight"].reshape(64, -1).abs().amax(1) / 127
    err = (back["big.weight"] - state["big.weight"]).reshape(64, -1).abs().amax(1)
    assert bool((err <= step / 2 + 1e-6).all())
    assert torch.equal(back["bn.bias"], state["bn.bias"])        # 1-D tensors travel exactly
    big_var = {"bn1.running_var": torch.tensor([83614.7, 1.0])}   # over float16's range
    assert torch.equal(dequantise(quantise(big_var, 4096))["bn1.running_var"], big_var["bn1.running_var"])


def test_the_pack_cli_reports_what_it_wrote(boxed, tmp_path):
    out = tmp_path / "p.npz"
    result = subprocess.run([sys.executable, "-m", "train.pack", "data", "--data", str(boxed),
                             "--out", str(out), "--size", "32", "--val-fraction", "0.25",
                             "--workers", "1"], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout and out.is_file()
