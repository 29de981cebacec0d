"""brainmri.localisation on synthetic maps, brainmri.multicam against explain_batch, and a
smoke run of `python -m studies.explain_eval` on a synthetic Kaggle-layout folder."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.image import scale_cam_image

from brainmri import localisation as loc
from brainmri.checkpoint import read_metadata
from brainmri.classes import CLASSES
from brainmri.multicam import explain_methods
from brainmri.predictor import Predictor

from .conftest import make_tiny_checkpoint
from .synthetic import scan

SHAPE = (120, 160)            # (H, W), not square, so an x/y mix-up shows
BOX = (100, 20, 130, 50)      # x0, y0, x1, y1 (exclusive)


def peak(y: int, x: int, shape=SHAPE, sigma: float = 4.0) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_pointing_game_inside_and_outside():
    assert loc.pointing_game(peak(35, 115), BOX) is True
    assert loc.pointing_game(peak(35, 40), BOX) is False
    assert loc.pointing_game(peak(100, 115), BOX) is False     # right x, wrong y


def test_pointing_game_edges_are_exclusive_and_tolerance_grows_the_box():
    just_right = peak(35, 130)                               # x1 = 130 is outside
    assert loc.pointing_game(just_right, BOX) is False
    assert loc.pointing_game(just_right, BOX, tolerance_px=1) is True
    assert loc.pointing_game(peak(35, 99), BOX) is False
    assert loc.pointing_game(peak(35, 99), BOX, tolerance_px=1) is True
    assert loc.pointing_game(peak(35, 136), BOX, tolerance_px=5) is False
    assert loc.pointing_game(peak(35, 134), BOX, tolerance_px=5) is True


def test_flat_and_empty_maps_do_not_score():
    assert loc.pointing_game(np.zeros(SHAPE), BOX) is False
    assert loc.pointing_game(np.ones(SHAPE), BOX) is False
    assert np.isnan(loc.energy_in_box(np.zeros(SHAPE), BOX))


def test_energy_inside_plus_outside_is_one():
    heat = loc.random_heatmap(SHAPE, np.random.default_rng(1))
    inside = loc.energy_in_box(heat, BOX)
    outside = loc.mass_outside(heat, loc.box_mask(SHAPE, BOX))
    assert 0 < inside < 1 and inside + outside == pytest.approx(1.0)
    assert loc.energy_in_box(np.ones(SHAPE), BOX) == pytest.approx(30 * 30 / (120 * 160))
    assert loc.energy_in_box(peak(35, 115, sigma=2), BOX) > 0.99
    with pytest.raises(ValueError, match="empty box"):
        loc.energy_in_box(heat, (10, 10, 10, 20))


def test_border_mass_of_a_uniform_map():
    band = 0.1
    assert loc.border_mass(np.ones((100, 100)), band) == pytest.approx(1 - 0.8 ** 2)
    inner = (20, 10, 80, 90)                                  # only the band of this box counts
    heat = np.zeros((100, 100))
    heat[10:90, 20:80] = 1
    assert loc.border_mass(heat, band, inner) == pytest.approx(1 - (0.8 * 0.8))
    assert loc.border_mass(peak(50, 50, (100, 100)), band) < 0.01


@pytest.mark.parametrize("make", [lambda s: loc.centred_gaussian(s),
                                  lambda s: loc.random_heatmap(s, np.random.default_rng(0))])
def test_null_baselines_shape_and_range(make):
    heat = make(SHAPE)
    assert heat.shape == SHAPE and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)


def test_centred_gaussian_peaks_in_the_middle_and_noise_is_seeded():
    g = loc.centred_gaussian(SHAPE)
    assert loc.pointing_game(g, (70, 50, 90, 70))
    a, b = (loc.random_heatmap(SHAPE, np.random.default_rng(3)) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, loc.random_heatmap(SHAPE, np.random.default_rng(4)))


def test_place_puts_a_map_in_its_box():
    full = loc.place(np.ones((30, 30), np.float32), BOX, SHAPE)
    assert full.shape == SHAPE and full.sum() == 900 and full[20:50, 100:130].all()
    with pytest.raises(ValueError, match="does not fit"):
        loc.place(np.ones((5, 5)), BOX, SHAPE)


def test_head_mask_covers_the_synthetic_head():
    grey = np.asarray(scan(3, size=256))
    mask = loc.head_mask(grey)
    head = grey > 0
    assert mask.shape == grey.shape and mask.dtype == bool
    assert (mask & head).sum() / head.sum() > 0.97              # covers the head, dark texture too
    assert (mask & ~head).sum() / (~head).sum() < 0.03          # and little background
    assert not mask[:8].any() and not mask[:, :8].any()         # corners are background
    heat = np.zeros(grey.shape, np.float32)
    heat[:10, :10] = 1                                          # all mass in a corner
    assert loc.mass_outside(heat, mask) == pytest.approx(1.0)


def test_head_mask_of_a_blank_image_is_everything():
    assert loc.head_mask(np.zeros((64, 64), np.uint8)).all()
    with pytest.raises(ValueError, match="uint8"):
        loc.head_mask(np.zeros((64, 64), np.float32))


def test_multicam_matches_explain_batch(tiny_checkpoints):
    predictor = Predictor.from_checkpoint(tiny_checkpoints["resnet50"], device="cpu")
    images = [np.asarray(scan(i, size=96)) for i in range(2)]
    methods = ("gradcam", "layercam", "eigencam", "layercamfused")
    maps = explain_methods(predictor, predictor.prepare(images), methods)
    for m in methods:
        for got, ref in zip(maps, predictor.explain_batch(images, method=m)):
            assert got.target == ref.target and got.prediction.label == ref.prediction.label
            assert got.prediction.probabilities == pytest.approx(ref.prediction.probabilities)
            np.testing.assert_allclose(got.heatmaps[m], ref.heatmap, atol=1e-5)
    with pytest.raises(ValueError, match="hook-free"):
        explain_methods(predictor, predictor.prepare(images), ("scorecam",))


def test_thin_svd_eigencam_is_the_library_projection(tiny_checkpoints):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from brainmri.cam import eigen_projection
    predictor = Predictor.from_checkpoint(tiny_checkpoints["resnet50"], device="cpu")
    prepared = predictor.prepare([np.asarray(scan(i, size=96)) for i in range(3)])
    acts = predictor.features(torch.stack([p.tensor for p in prepared])).numpy()   # (3, 2048, 2, 2)
    np.testing.assert_allclose(eigen_projection(acts), get_2d_projection(acts), rtol=1e-4, atol=1e-4)


# -- the CLI on a synthetic Kaggle-layout folder -------------------------------------------
def synthetic_kaggle(root, per_class: int = 3) -> None:
    """Training/ and Testing/ with `per_class` scans per class and a boxes CSV of the lesions."""
    rows = ["path,split,class,width,height,x0,y0,x1,y1"]
    seed = 0
    for split in ("Training", "Testing"):
        for cls in CLASSES:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                seed += 1
                image = scan(seed, size=96 + 8 * i, lesion=cls != "notumor")
                rel = f"{split}/{cls}/{split[:2]}-{cls[:2]}_{i:04d}.png"
                image.save(root / rel)
                ys, xs = np.nonzero(np.asarray(image) == 220)
                if cls != "notumor" and len(xs):
                    rows.append(f"{rel},{split},{cls},{image.width},{image.height},"
                                f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
    (root / "tumor_boxes.csv").write_text("\n".join(rows) + "\n")


def run_cli(tmp_path, ckpt, data, out, *extra):
    from studies.explain_eval import get_args_parser, main
    return main(get_args_parser().parse_args([
        str(ckpt), "--data", str(data), "--out", str(out), "--methods", "gradcam,layercam,layercamfused",
        "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), *extra]))


def test_explain_eval_cli_smoke(tmp_path):
    data = tmp_path / "brain-tumor-mri"
    synthetic_kaggle(data)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline", size=48)
    out = tmp_path / "out"
    report = run_cli(tmp_path, ckpt, data, out, "--faithfulness", "2", "--grid-rows", "2",
                     "--workers", "0", "--write-default")
    saved = json.loads((out / "explain_metrics.json").read_text())
    assert saved["methods"] == ["gradcam", "layercam", "layercamfused"] and saved["tolerance"] == 0.02
    (res,) = saved["models"].values()
    for split in ("official", "clean", "val"):
        assert split in res["splits"]
    official = res["splits"]["official"]
    assert official["n"] == 12 and official["n_boxed"] == 9
    for name in ("gradcam", "layercam", "layercamfused", "centre", "random"):
        a = official["localisation"][name]["all"]
        assert a["n"] == 9 and 0 <= a["pointing"] <= 1 and 0 <= a["energy"] <= 1
        assert set(official["localisation"][name]["by_class"]) == {"glioma", "meningioma", "pituitary"}
        sc = official["shortcut"][name]
        assert sc["n"] == 12 and 0 <= sc["outside_head"] <= 1 and 0 <= sc["border"] <= 1
    assert official["localisation"]["centre"]["all"]["energy"] > 0
    faith = res["faithfulness"]
    assert faith["gradcam"]["n"] == 2 and np.isfinite(faith["random"]["road_combined"])
    choice = res["default_cam"]
    assert choice["chosen_on"] == "val" and choice["method"] in ("gradcam", "layercam", "layercamfused")
    meta = read_metadata(ckpt)
    assert meta["default_cam"] == choice["method"]
    assert set(meta["cam_scores"]) == {"gradcam", "layercam", "layercamfused"}
    assert (out / "grid-tiny-baseline.png").stat().st_size > 1000
    assert "| Grad-CAM" in (out / "tables.md").read_text()
    assert report["models"].keys() == saved["models"].keys()

    # Worker processes and the saved split lists give the same numbers, without Training/.
    again = run_cli(tmp_path, ckpt, data, tmp_path / "again", "--faithfulness", "0", "--grid-rows",
                    "0", "--workers", "1", "--samples", str(out / "samples.json"))
    (res2,) = again["models"].values()
    assert res2["splits"] == res["splits"]


def test_explain_eval_rejects_bad_arguments(tmp_path):
    from studies.explain_eval import get_args_parser, main
    base = ["x.safetensors", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    for extra, message in [(["--split", "test"], "--split"), (["--methods", "scorecam"], "app's methods"),
                           (["--methods", "nope"], "unknown CAM method"),
                           (["--split", "clean", "--write-default"], "val split")]:
        with pytest.raises(SystemExit, match=message):
            main(get_args_parser().parse_args(base + extra))


def test_cam_layers_scores_sets_and_matches_the_fused_method(tmp_path):
    from brainmri import cam as cams
    from studies.cam_layers import block_maps, get_args_parser, main
    data = tmp_path / "brain-tumor-mri"
    synthetic_kaggle(data, per_class=10)   # a few boxed validation scans
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline", size=48)
    out = tmp_path / "layers.json"
    result = main(get_args_parser().parse_args([
        str(ckpt), "--data", str(data), "--sets", "2", "0+2", "--cache-dir", str(tmp_path / "c"),
        "--out", str(out), "--batch-size", "4"]))
    assert set(result) == {"2", "0+2"}
    for r in result.values():
        assert r["n"] > 0 and 0 <= r["pointing"] <= 1 and 0 <= r["outside_head"] <= 1
    assert json.loads(out.read_text())["split"] == "val"
    # The pair the app offers is the same map as `layercamfused`.
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    batch = torch.stack([p.tensor for p in predictor.prepare([np.asarray(scan(i, size=96)) for i in range(2)])])
    j = cams.fusion_index(predictor.model, batch.shape[-2:])
    maps = block_maps(predictor, batch, [j, 2])
    fused = predictor.fused(batch)[3]
    pair = scale_cam_image(np.mean([maps[j], maps[2]], axis=0))
    assert np.abs(pair - fused).max() < 1e-4
    with pytest.raises(SystemExit, match="trunk indices"):
        main(get_args_parser().parse_args([str(ckpt), "--data", str(data), "--sets", "9"]))
    contrast = main(get_args_parser().parse_args([
        str(ckpt), "--data", str(data), "--sets", "2", "--versus", "notumor",
        "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--batch-size", "4"]))
    assert contrast["2"]["n"] == result["2"]["n"] and json.loads(out.read_text())["versus"] == "notumor"
    with pytest.raises(SystemExit, match="--versus"):
        main(get_args_parser().parse_args([str(ckpt), "--data", str(data), "--sets", "2", "--versus", "cat"]))
    blurred = main(get_args_parser().parse_args([
        str(ckpt), "--data", str(data), "--sets", "2", "--blur", "0", "0.05", "--halves",
        "--cache-dir", str(tmp_path / "c"), "--out", str(out), "--batch-size", "4"]))
    assert set(blurred) == {"2", "2 blur 0.05"}
    assert blurred["2"]["pointing"] == result["2"]["pointing"]      # blur 0: the map as it is
    for r in blurred.values():      # the halves split the scans: even and odd positions
        assert r["half_A"]["n"] + r["half_B"]["n"] == r["n"] and abs(r["half_A"]["n"] - r["half_B"]["n"]) <= 1
        assert r["n"] * r["pointing"] == pytest.approx(
            r["half_A"]["n"] * r["half_A"]["pointing"] + r["half_B"]["n"] * r["half_B"]["pointing"])
    assert json.loads(out.read_text())["blur"] == [0.0, 0.05]
    with pytest.raises(SystemExit, match="--blur"):
        main(get_args_parser().parse_args([str(ckpt), "--data", str(data), "--sets", "2", "--blur", "-1"]))


def test_paint_out_removes_a_bright_lesion_and_the_control_box_avoids_it():
    from studies.lesion_masked import control_box, paint_out
    grey = np.asarray(scan(4, size=128))
    ys, xs = np.nonzero(grey == 220)                         # the synthetic lesion
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    out = paint_out(grey, box)
    x0, y0, x1, y1 = box
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert grey[y0:y1, x0:x1].mean() > out[y0:y1, x0:x1].mean() + 40       # the lesion is gone
    outside = np.ones(grey.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(out[outside], grey[outside])                    # nothing else changed
    head = loc.head_mask(grey)
    rng = np.random.default_rng(0)
    for _ in range(20):
        cx0, cy0, cx1, cy1 = control_box(head, box, rng)
        assert (cx1 - cx0, cy1 - cy0) == (x1 - x0, y1 - y0)              # the same size
        assert cx1 <= x0 or cx0 >= x1 or cy1 <= y0 or cy0 >= y1           # not on the lesion
        assert head[cy0, cx0] and head[cy1 - 1, cx1 - 1]
    assert control_box(head, (0, 0, 128, 128), rng) is None               # nothing fits


def test_lesion_masked_cli_reports_each_version_per_class(tmp_path, capsys):
    from studies.lesion_masked import VERSIONS, get_args_parser, main
    data = tmp_path / "brain-tumor-mri"
    synthetic_kaggle(data, per_class=6)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline", size=48)
    out = tmp_path / "masked.json"
    result = main(get_args_parser().parse_args([
        str(ckpt), "--data", str(data), "--split", "val,official", "--batch-size", "4",
        "--cache-dir", str(tmp_path / "c"), "--out", str(out)]))
    assert set(result) == {"val", "official"}
    official = result["official"]
    assert official["scans"] + official["skipped"] == 18        # 3 tumour classes x 6
    assert official["classes"]["all"]["n"] == official["scans"] > 0
    assert sum(c["n"] for name, c in official["classes"].items() if name != "all") == official["scans"]
    for c in official["classes"].values():
        for v in VERSIONS:
            assert 0 <= c[v]["accuracy"] <= 1 and 0 <= c[v]["p_true"] <= 1
        assert 0 <= c["needed"] <= c["n"] and 0 <= c["pointing"] <= 1
        parts = [(c["needed"], c["pointing_needed"]), (c["n"] - c["needed"], c["pointing_not_needed"])]
        assert sum(n * p for n, p in parts if n) == pytest.approx(c["n"] * c["pointing"])
        assert 0 <= c["hot region out"]["accuracy"] <= 1 and 0 <= c["hot_changed"] <= c["n"]
        assert 0 < c["hot_share_of_head"] <= 1
        assert 0 <= c["control_unchanged"] <= 1
        # A control answer that is right where the original was right is unchanged.
        assert c["control_unchanged"] >= c["control"]["accuracy"] + c["original"]["accuracy"] - 1 - 1e-9
    assert json.loads(out.read_text())["splits"]["official"] == official
    printed = capsys.readouterr().out
    assert printed.count("| official | all |") == 2          # both tables
    with pytest.raises(SystemExit, match="--split"):
        main(get_args_parser().parse_args([str(ckpt), "--data", str(data), "--split", "test"]))


def test_hot_region_is_the_connected_half_maximum_around_the_peak():
    heat = np.zeros((40, 60), np.float32)
    heat[5:15, 5:20] = 1.0               # the peak's region
    heat[8, 10] = 1.2                    # the maximum, inside it
    heat[25:35, 40:55] = 0.9             # as hot, but apart
    heat[20, 30] = 0.55                  # above half the peak, isolated
    region = loc.hot_region(heat)
    assert region[5:15, 5:20].all() and region.sum() == 10 * 15
    assert not region[25:35, 40:55].any() and not region[20, 30]
    assert loc.hot_region(heat, level=0.9).sum() == 1                    # only the maximum
    head = np.zeros(heat.shape, bool)
    head[:, :30] = True                                                   # 1,200 pixels
    assert loc.share_of_head(region, head) == 150 / 1200
    assert loc.share_of_head(region, np.zeros_like(head)) == 1.0          # the region counts as head
    assert not loc.hot_region(np.zeros((4, 4))).any()
    with pytest.raises(ValueError, match="uint8"):
        loc.paint_out(np.zeros((4, 4), np.float32), np.ones((4, 4), bool))


def test_paint_out_fills_a_large_image_from_a_smaller_copy():
    yy, xx = np.mgrid[:3000, :2000]
    grey = np.where(((yy - 1500) / 1400) ** 2 + ((xx - 1000) / 900) ** 2 < 1, 100, 0).astype(np.uint8)
    grey[1000:1400, 800:1200] = 240                                       # a bright lesion
    mask = np.zeros(grey.shape, bool)
    mask[990:1410, 790:1210] = True
    out = loc.paint_out(grey, mask)
    assert out.shape == grey.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], grey[~mask])                         # nothing else changed
    assert abs(float(out[mask].mean()) - 100) < 15                          # filled like the tissue
