"""train.dilate: the dilated ResNet-50, box geometry for the report, and a tiny run end to end."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri import Predictor
from brainmri.checkpoint import save_checkpoint
from brainmri.classes import CLASSES
from brainmri.models import build_resnet50
from brainmri.presets import EvalPreset
from train import dilate

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402


def test_box_in_input_maps_scan_pixels_into_the_resized_crop():
    # crop (100, 50)-(300, 250) of a scan resized to 100 px: scale 0.5
    assert dilate.box_in_input((150, 100, 200, 150), (100, 50, 300, 250), 100) == (25, 25, 50, 50)
    assert dilate.box_in_input((0, 0, 50, 40), (100, 50, 300, 250), 100) is None   # outside


def test_class_maps_decompose_the_logits():
    """GAP + linear head: logit_c = mean over space of the class map + bias (CAM is exact)."""
    model = build_resnet50(dilate_layer4=True).eval()
    acts = torch.rand(3, 2048, 4, 4)
    labels = torch.tensor([0, 2, 3])
    maps = dilate.class_maps(model, acts, labels)
    logits = model.classify(acts)
    expected = logits[torch.arange(3), labels] - model.head.bias[labels]
    assert torch.allclose(maps.mean(dim=(1, 2)), expected, atol=1e-5)


def test_outside_share_is_the_cam_mass_on_outside_cells():
    model = build_resnet50(dilate_layer4=True).eval()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
    acts = torch.zeros(2, 2048, 4, 4)
    acts[0, :, 0, 0] = 1.0                   # all of sample 0's mass in a corner cell
    acts[1, :, 1:3, 1:3] = 1.0               # all of sample 1's mass in the centre
    outside = torch.zeros(2, 4, 4)
    outside[:, 0, :] = 1.0                   # the top row lies outside the head
    share = dilate.outside_share(model, acts, torch.tensor([0, 1]), outside)
    assert torch.allclose(share, torch.tensor([1.0, 0.0]))
    outside[:, :, :] = 0.5                   # half of every cell outside: half the mass
    assert torch.allclose(dilate.outside_share(model, acts, torch.tensor([0, 1]), outside),
                          torch.tensor([0.5, 0.5]))


def test_outside_cells_come_from_the_head_mask_of_the_crop():
    crop = np.zeros((64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    crop[(yy - 32) ** 2 + (xx - 32) ** 2 < 24 ** 2] = 180        # a bright head, dark corners
    cells = dilate.outside_cells(crop[None], 4)[0]
    assert cells.shape == (4, 4)
    assert cells[0, 0] > 0.5 and cells[3, 3] > 0.5               # corners: mostly outside
    assert cells[1:3, 1:3].max() == 0.0                          # centre: inside


def test_dilated_layer4_doubles_the_map_and_keeps_the_weights():
    plain, dilated = build_resnet50(), build_resnet50(dilate_layer4=True)
    dilated.load_state_dict(plain.state_dict())                    # same tensors, same shapes
    x = torch.rand(1, 3, 64, 64)
    assert plain.trunk(x).shape[-1] == 2 and dilated.trunk(x).shape[-1] == 4


def test_dilation_is_torchvisions_replace_stride_with_dilation():
    from torchvision.models import resnet50
    from brainmri.models import resnet50_trunk_keys
    torch.manual_seed(0)
    reference = resnet50(replace_stride_with_dilation=[False, False, True]).eval()
    ours = build_resnet50(v1_strides=False, dilate_layer4=True).eval()
    prefixes = resnet50_trunk_keys()
    ours.load_state_dict({f"{prefixes[k.split('.')[0]]}.{k.split('.', 1)[1]}": v
                          for k, v in reference.state_dict().items() if k.split(".")[0] in prefixes},
                         strict=False)
    x = torch.rand(1, 3, 64, 64)
    expected = torch.nn.Sequential(*list(reference.children())[:-2])(x)
    assert torch.allclose(ours.trunk(x), expected, atol=1e-5)


@pytest.fixture(scope="module")
def boxed_data(tmp_path_factory) -> Path:
    """Kaggle layout with tumor_boxes.csv: the box around each synthetic scan's lesion."""
    root = tmp_path_factory.mktemp("kaggle") / "brain-tumor-mri"
    rows = ["path,split,class,width,height,x0,y0,x1,y1"]
    for split, n in (("Training", 8), ("Testing", 2)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = synthetic.scan(seed=1000 * c + 100 * (split == "Testing") + i, size=64,
                                     lesion=name != "notumor")
                img.save(folder / f"{name}-{i}.png")
                ys, xs = np.nonzero(np.asarray(img) == 220)
                if name != "notumor" and len(xs):
                    rows.append(f"{split}/{name}/{name}-{i}.png,{split},{name},64,64,"
                                f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
    (root / "tumor_boxes.csv").write_text("\n".join(rows) + "\n")
    return root.parent


def test_dilate_writes_a_dilated_self_describing_checkpoint(boxed_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    meta = {"arch": "resnet50", "arch_kwargs": {"v1_strides": True}, "classes": list(CLASSES),
            "preset": EvalPreset(size=32).to_dict(),
            "args": {"val_fraction": 0.25, "seed": 0, "size": 32}}
    save_checkpoint(start, build_resnet50(), meta)
    args = dilate.get_args_parser().parse_args(
        [str(start), "--data", str(boxed_data), "--out", str(tmp_path / "run"),
         "--epochs", "2", "--batch-size", "8", "--workers", "1", "--threads", "1",
         "--outside-weight", "1.0"])
    path = dilate.main(args)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(0 <= h["val_pointing"] <= 1 for h in history)
    assert all(h["train_loss"] > 0 for h in history[1:])
    assert all(0 <= h["val_outside_head"] <= 1 for h in history)
    assert all(0 <= h["train_outside_head"] <= 1 for h in history[1:])
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.meta["arch_kwargs"] == {"v1_strides": True, "dilate_layer4": True}
    assert predictor.meta["recipe"] == "dilate" and predictor.meta["args"]["dilate"] is True
    assert predictor.meta["args"]["freeze"] == "stem..layer3"
    assert predictor.meta["args"]["outside_weight"] == 1.0
    assert 0 <= predictor.meta["args"]["val_outside_head"] <= 1
    assert predictor.meta["args"]["init_args"]["val_fraction"] == 0.25
    explained = predictor.explain(synthetic.scan(5, size=64), method="gradcam")
    assert explained.heatmap.shape == (64, 64) and 0 <= explained.heatmap.min() <= explained.heatmap.max() <= 1
