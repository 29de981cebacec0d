"""train.plots: the figures train.evaluate writes beside its metrics."""
from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt
from PIL import Image

from brainmri.cam import LABELS
from brainmri.checkpoint import load_checkpoint, save_checkpoint
from brainmri.predictor import Predictor
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import scan
from train import plots


def test_the_example_grid_names_the_map_it_shows(tmp_path, monkeypatch):
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.safetensors", "baseline")
    model, meta = load_checkpoint(ckpt)
    save_checkpoint(ckpt, model, {**meta, "default_cam": "layercam"})
    predictor = Predictor.from_checkpoint(ckpt, "cpu")
    paths = []
    for k in range(4):
        paths.append(tmp_path / f"scan{k}.png")
        scan(seed=k, size=80).save(paths[-1])
    labels, pred = np.array([0, 1, 2, 3]), np.array([0, 1, 3, 2])   # two right, two wrong
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    plots.prediction_grid(predictor, paths, labels, pred, 2, tmp_path / "grid.png")
    (fig,) = figures
    assert fig._suptitle.get_text() == f"correct (top) and incorrect (bottom) predictions, {LABELS['layercam']} overlay"
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 4 and sum("pred" in t for t in titles) == 4
    assert Image.open(tmp_path / "grid.png").size[0] > 0
