"""train.dilate, the trainer's cached-tail stage: the dilated ResNet-50, box geometry for the
report, and a tiny run end to end through `python -m train --recipe dilate`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainmri import Predictor
from brainmri.checkpoint import load_checkpoint, save_checkpoint
from brainmri.classes import CLASSES
from brainmri.models import ARCHS, build_resnet50
from brainmri.presets import EvalPreset
from train import core, dilate
from train.train import get_args_parser, main as train_main

sys.path.insert(0, str(Path(__file__).parent))
import synthetic  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402


def test_box_in_input_maps_scan_pixels_into_the_resized_crop():
    # crop (100, 50)-(300, 250) of a scan resized to 100 px: scale 0.5
    assert core.box_in_input((150, 100, 200, 150), (100, 50, 300, 250), 100) == (25, 25, 50, 50)
    assert core.box_in_input((0, 0, 50, 40), (100, 50, 300, 250), 100) is None   # outside


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
    synthetic.boxed_kaggle(root)
    return root.parent


def test_dilate_writes_a_dilated_self_describing_checkpoint(boxed_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    meta = {"arch": "resnet50", "arch_kwargs": {"v1_strides": True}, "classes": list(CLASSES),
            "preset": EvalPreset(size=32).to_dict(),
            "args": {"val_fraction": 0.25, "seed": 0, "size": 32}}
    save_checkpoint(start, build_resnet50(), meta)
    args = get_args_parser().parse_args(
        ["--recipe", "dilate", "--init", str(start), "--data", str(boxed_data), "--out", str(tmp_path / "run"),
         "--epochs", "2", "--batch-size", "8", "--workers", "1", "--threads", "1",
         "--outside-weight", "1.0"])
    path = train_main(args)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert all(0 <= h["val_pointing"] <= 1 for h in history)
    assert all(h["train_loss"] > 0 for h in history[1:])
    for h in history[1:]:       # the logged objective is cross-entropy + 1.0 x the outside-head share
        assert h["train_loss"] == pytest.approx(h["train_ce"] + 1.0 * h["train_outside_head"], rel=1e-5)
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


def test_input_layercam_is_pytorch_grad_cams_layercam_on_layer2():
    """Dense gradients (torchvision strides): the library's LayerCAM on layer2, exactly."""
    from pytorch_grad_cam import LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    model = build_resnet50(v1_strides=False, dilate_layer4=True).eval()
    x = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([1, 3])
    frozen = dilate.frozen_blocks(ARCHS["resnet50"], "layer3-4")
    with torch.no_grad():
        layer2 = model.trunk[:frozen](x)
    logits, acts, cam = dilate.input_layercam(model, model.trunk[frozen:], layer2, labels)
    assert torch.allclose(logits, model(x), atol=1e-4)
    assert cam.shape == (2, 8, 8) and acts.shape[-1] == 4
    with LayerCAM(model=model, target_layers=[model.trunk[frozen - 1]]) as reference:
        expected = reference(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in labels])
    ours = scale_cam_image(scale_cam_image(cam.detach().numpy(), (64, 64)))   # the library scales twice
    assert np.abs(ours - expected).max() < 1e-4


def test_input_layercam_is_the_apps_finer_map_with_v1_strides():
    """v1 strides (the shipped model): the gradient on layer2 lives on a lattice and is spread,
    as the app's fused Layer-CAM spreads it."""
    from brainmri import cam as cams
    torch.manual_seed(0)
    model = build_resnet50(dilate_layer4=True).eval()
    x = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([0, 2])
    frozen = dilate.frozen_blocks(ARCHS["resnet50"], "layer3-4")
    with torch.no_grad():
        layer2 = model.trunk[:frozen](x)
    cam = dilate.input_layercam(model, model.trunk[frozen:], layer2, labels)[2]
    assert cams.fusion_index(model, (64, 64)) == frozen - 1
    _, _, _, maps = cams.layercam_blocks(model, x, [frozen - 1], lambda _: labels.tolist())
    ours = scale_cam_image(cam.detach().numpy(), (64, 64))
    assert np.abs(ours - maps[frozen - 1]).max() < 1e-4
    assert (cam > 0).float().mean() > 0.5                   # spread: not one cell in four


def test_lattice_cells_spread_each_lattice_point_over_its_cell():
    from brainmri import cam as cams
    g = np.zeros((1, 1, 5, 4), np.float32)
    g[0, 0, 1::2, 0::2] = np.arange(1, 5).reshape(2, 2)
    rows, cols = cams.lattice_cells(g[0, 0] != 0)
    assert rows.tolist() == [1, 1, 1, 3, 3] and cols.tolist() == [0, 0, 2, 2]
    assert cams.spread_lattice(g)[0, 0].tolist() == [[1, 1, 2, 2]] * 3 + [[3, 3, 4, 4]] * 2
    assert cams.lattice_cells(np.ones((4, 4), bool)) is None


def test_finer_penalty_reaches_layer3_weights_and_moves_the_mass_inside():
    """create_graph: the share of the layer2 map outside the head is differentiable in layer3."""
    torch.manual_seed(0)
    model = build_resnet50(dilate_layer4=True).eval()
    frozen = dilate.frozen_blocks(ARCHS["resnet50"], "layer3-4")
    tail = model.trunk[frozen:]
    with torch.no_grad():
        layer2 = model.trunk[:frozen](torch.rand(4, 3, 64, 64))
    labels = torch.tensor([0, 1, 2, 3])
    outside = torch.zeros(4, 8, 8)
    outside[:, :2, :] = 1.0                                   # top quarter outside the head
    params = [p for p in tail.parameters()] + list(model.head.parameters())
    opt = torch.optim.SGD(params, lr=0.05)

    def share():
        return dilate.mass_share(dilate.input_layercam(model, tail, layer2, labels, create_graph=True)[2],
                                 outside).mean()
    before = share()
    opt.zero_grad()
    before.backward()
    assert tail[0][0].conv1.weight.grad.abs().sum() > 0       # layer3's first conv gets a gradient
    for _ in range(5):
        opt.zero_grad()
        share().backward()
        opt.step()
    assert share().item() < before.item()


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA GPU on this machine"))])
def test_layer3_4_run_reports_the_finer_share(boxed_data, tmp_path, monkeypatch, device):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    meta = {"arch": "resnet50", "arch_kwargs": {"v1_strides": True, "dilate_layer4": True},
            "classes": list(CLASSES), "preset": EvalPreset(size=32).to_dict(),
            "args": {"val_fraction": 0.25, "seed": 0, "size": 32}}
    model = build_resnet50(dilate_layer4=True)
    save_checkpoint(start, model, meta)
    args = get_args_parser().parse_args(
        ["--recipe", "dilate", "--init", str(start), "--data", str(boxed_data), "--out", str(tmp_path / "run"), "--epochs", "1",
         "--batch-size", "8", "--workers", "1", "--threads", "1", "--train-blocks", "layer3-4",
         "--outside-weight", "1.0", "--finer-weight", "1.0", "--device", device])
    path = train_main(args)
    assert json.loads((tmp_path / "run" / "args.json").read_text())["device"] == device
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert all(0 <= h["val_outside_head_finer"] <= 1 for h in history)
    assert 0 <= history[1]["train_outside_head_finer"] <= 1
    trained, _ = load_checkpoint(path)
    before = load_checkpoint(start)[0].state_dict()           # both as stored (half precision)
    after = trained.state_dict()
    assert torch.equal(after["trunk.5.0.conv1.weight"], before["trunk.5.0.conv1.weight"])      # layer2 frozen
    assert not torch.equal(after["trunk.6.0.conv1.weight"], before["trunk.6.0.conv1.weight"])  # layer3 trained
    assert torch.equal(after["trunk.6.0.bn1.running_mean"], before["trunk.6.0.bn1.running_mean"])
    assert Predictor.from_checkpoint(path, device="cpu").meta["args"]["freeze"].startswith("stem..layer2")


def test_finer_weight_needs_layer3_4(tmp_path):
    start = tmp_path / "start.safetensors"
    save_checkpoint(start, build_resnet50(), {"arch": "resnet50", "arch_kwargs": {}, "classes": list(CLASSES),
                                              "preset": EvalPreset(size=32).to_dict(),
                                              "args": {"val_fraction": 0.25, "seed": 0}})
    args = get_args_parser().parse_args(
        ["--recipe", "dilate", "--init", str(start), "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--finer-weight", "1"])
    with pytest.raises(SystemExit, match="layer3-4"):
        train_main(args)
    assert not (tmp_path / "run").exists()                 # refused before writing anything


def test_class_maps_are_the_librarys_layercam_and_gradcam():
    """The training-time torch maps of the last block (`class_maps`, which `outside_share`
    penalises) are brainmri.cam's Layer-CAM (positive weights) and Grad-CAM, up to scale."""
    from brainmri import cam as cams
    torch.manual_seed(0)
    model = build_resnet50(dilate_layer4=True).eval()
    x = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([1, 2])
    with torch.no_grad():
        acts = model.trunk(x)
    leaf = acts.clone().requires_grad_(True)
    chosen = model.classify(leaf)[torch.arange(2), labels]
    grads, = torch.autograd.grad(chosen.sum(), leaf)
    for positive, method in ((True, "layercam"), (False, "gradcam")):
        with torch.no_grad():
            cam = dilate.class_maps(model, acts, labels, positive=positive).numpy()
        ours = scale_cam_image(scale_cam_image(np.maximum(cam, 0), (64, 64)))
        expected = cams.cam_from_activations(method, acts, grads, (64, 64))
        assert np.abs(ours - expected).max() < 1e-4, method
