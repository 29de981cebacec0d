"""Adding a model is one registry entry: a tiny third architecture, registered here, goes
through one training step, `Predictor`, the service and the app's API."""
from __future__ import annotations

import math
import os
import shutil
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from brainmri import cam as cams
from brainmri.classes import CLASSES
from brainmri.models import ARCHS, MODEL_LABELS, Arch, Classifier, build_model, register
from brainmri.predictor import Predictor
from brainmri.service import Service
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import scan


def build_tiny(num_classes: int = len(CLASSES), in_channels: int = 1, width: int = 8) -> Classifier:
    """Two stride-2 conv blocks and a linear head: the smallest `Classifier` with two maps."""
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU(inplace=True))
    return Classifier(nn.Sequential(block(in_channels, width), block(width, 2 * width)),
                      nn.Linear(2 * width, num_classes))


TINY = Arch("tiny", "Tiny CNN", build_tiny, in_channels=1, size=32,
            description="two conv blocks, for the registry test", stages=("first", "second"),
            mean=(0.5,), std=(0.25,), small={"width": 4})


@pytest.fixture(scope="module")
def tiny_arch():
    """TINY registered for this module's tests, and unregistered after."""
    register(TINY)
    try:
        yield TINY
    finally:
        ARCHS.pop(TINY.name)


@pytest.fixture(scope="module")
def trained(tiny_arch, tmp_path_factory) -> Path:
    """`train.train.main` on a synthetic Kaggle folder for one step, in this process (where
    the registration holds)."""
    from train.train import get_args_parser, main
    root = tmp_path_factory.mktemp("kaggle")
    for c, name in enumerate(CLASSES):
        folder = root / "Training" / name
        folder.mkdir(parents=True)
        for i in range(6):
            scan(seed=100 * c + i, size=64, lesion=name != "notumor").save(folder / f"{i}.png")
    work = tmp_path_factory.mktemp("run")
    out = work / "run"
    args = get_args_parser().parse_args(
        ["--recipe", "baseline", "--model", "tiny", "--data", str(root), "--out", str(out),
         "--size", "32", "--epochs", "1", "--batch-size", "64", "--workers", "1",
         "--val-fraction", "0.25", "--freeze", "first"])
    cwd = Path.cwd()
    try:
        os.chdir(work)                    # the crop cache (.cache/) goes beside the run
        return main(args)
    finally:
        os.chdir(cwd)


def test_registry_fields_drive_freezing_and_presets(tiny_arch):
    assert TINY.blocks_through("none") == 0 and TINY.blocks_through("first") == 1
    assert TINY.blocks_through("all-but-head") == 2
    with pytest.raises(ValueError, match="tiny has no stage 'stem'"):
        TINY.blocks_through("stem+layer1")
    r50 = ARCHS["resnet50"]
    assert (r50.blocks_through("stem+layer1"), r50.blocks_through("stem+layer2")) == (5, 6)
    assert (r50.blocks_before("layer3"), r50.blocks_before("layer4")) == (6, 7)
    assert r50.blocks_through("layer1") == 5 and r50.blocks_through("all-but-head") == 8
    assert TINY.preset().size == 32 and TINY.preset(48).channels == 1
    assert MODEL_LABELS["tiny"] == "Tiny CNN"
    assert build_model("tiny", **TINY.small)(torch.zeros(2, 1, 32, 32)).shape == (2, len(CLASSES))


def test_one_training_step_writes_a_checkpoint(trained):
    from brainmri.checkpoint import load_checkpoint
    model, meta = load_checkpoint(trained)
    assert meta["arch"] == "tiny" and meta["preset"]["size"] == 32 and len(meta["history"]) == 1
    assert meta["args"]["freeze"] == "first"
    torch.manual_seed(0)                        # the run's seed: the weights it started from
    start = build_model("tiny")
    # The frozen first stage kept its initial weights and statistics (kernels are stored as
    # float16); the rest trained.
    for key, value in start.trunk[0].state_dict().items():
        kept = model.trunk[0].state_dict()[key]
        assert torch.equal(kept, value.half().float() if value.ndim > 1 else value), key
    assert not torch.equal(model.trunk[1][0].weight, start.trunk[1][0].weight.half().float())


@pytest.mark.parametrize("method", cams.HOOK_FREE + ("scorecam",))
def test_predictor_explains_with_every_method(trained, method):
    p = Predictor.from_checkpoint(trained, device="cpu")
    e = p.explain(scan(seed=1, size=80), method=method)
    assert e.heatmap.shape == (80, 80) and 0 <= e.heatmap.min() and e.heatmap.max() <= 1
    assert math.isclose(sum(e.prediction.probabilities.values()), 1.0, abs_tol=1e-5)


@pytest.fixture(scope="module")
def folder(trained, tmp_path_factory) -> Path:
    """The trained tiny model beside tiny versions of the shipped architectures."""
    out = tmp_path_factory.mktemp("three")
    shutil.copy(trained, out / "tiny.safetensors")
    for arch in ("baseline", "resnet50"):
        make_tiny_checkpoint(out / f"{arch}.safetensors", arch)
    return out


def test_service_loads_and_names_every_registered_model(folder):
    svc = Service.from_folder(folder, device="cpu", warmup=False)
    assert svc.models == ["baseline", "resnet50", "tiny"]
    r = svc.classify(scan(seed=2, size=64), "tiny", "gradcam")
    assert "Tiny CNN" in r.headline and r.label in CLASSES
    c = svc.compare(scan(seed=2, size=64), "layercam")
    assert list(c.results) == svc.models and c.agree in (True, False)
    assert "### Tiny CNN (`tiny`)" in svc.model_card()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_api_serves_the_third_model(folder, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    import app
    service = Service.from_folder(folder, device="cpu", warmup=False)
    demo = app.build_demo(service)
    demo.queue()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        image = tmp_path / "scan.png"
        scan(seed=4, size=96).save(image)
        headline, *_, result = client.predict(gradio_client.handle_file(str(image)), "tiny",
                                              "gradcam", "predicted", 0.45, api_name="/classify")
        assert "Tiny CNN" in headline and result["model"] == "tiny"
        if result["outcome"] == "not_mri":      # refused: no class, no probabilities
            assert result["label"] is None and result["probabilities"] is None
        else:
            assert result["label"] in CLASSES and set(result["probabilities"]) == set(CLASSES)
        out = client.predict(gradio_client.handle_file(str(image)), "gradcam", api_name="/compare")
        assert len(out) == 3 * 3 + 1 and "Tiny CNN" in out[6]
        assert "Tiny CNN" in client.predict(api_name="/model_card")
    finally:
        demo.close()


def test_the_default_model_is_declared_not_implied_by_order(folder):
    """`Arch.default` picks the model offered first, wherever it is registered or loaded."""
    from brainmri.models import default_model
    declared = [n for n, a in ARCHS.items() if a.default]
    assert len(declared) == 1 and not TINY.default
    assert default_model(["tiny", *declared]) == declared[0] == default_model()
    assert default_model(["tiny", "baseline"]) == "tiny"         # none declared: the first given
    svc = Service.from_folder(folder, device="cpu", warmup=False)
    assert svc.default_model == declared[0] and svc.models[-1] == "tiny"
    alone = Service.from_folder(folder, device="cpu", names=["tiny"], warmup=False)
    assert alone.default_model == "tiny" and alone.default_method == alone.engines["tiny"].default_method


def test_space_dry_run_deploys_the_third_model(folder, capsys):
    """The deployer reads the registry and the checkpoints folder: the third model's file goes
    to the Space as checkpoints/tiny.safetensors (dry run, in this process)."""
    from brainmri import space
    assert space.main(["--dry-run", "--checkpoints", str(folder)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()[:-1]]
    assert {f"checkpoints/{n}.safetensors" for n in ("baseline", "resnet50", "tiny")} <= set(listed)
    assert listed == [path for path, _ in space.listing(checkpoints=folder)]


def test_benchmarks_time_the_third_model(trained, tmp_path):
    """The benchmark rows run on whatever model is loaded, named by its registry label."""
    from benchmarks.cases import device_rows
    from benchmarks.context import checkpoints, synthetic_scans
    assert checkpoints(None, tmp_path)["tiny"].random            # a stand-in per registered model
    files = synthetic_scans(2)
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, data in enumerate(files):
        (folder / f"{i}.img").write_bytes(data)
    ps = {"tiny": Predictor.from_checkpoint(trained, device="cpu")}
    rows = device_rows(ps, files, folder, repeats=1, clients=2)
    assert rows[0].what.startswith("Tiny CNN forward, batch 1") and rows[0].ms.median > 0
    assert any(r.what.startswith("Compare: all 1 models") for r in rows)


def test_benchmark_devices_read_the_flag():
    """--devices: "auto" is the CPU first, plus CUDA only when there is one; else the list."""
    import torch
    from benchmarks.context import devices
    assert devices("auto") == ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    assert devices("cuda,cpu") == ["cuda", "cpu"] and devices("cpu") == ["cpu"]
