"""Synthetic brain-like test images: deterministic, no dataset needed."""
from __future__ import annotations

import numpy as np
from PIL import Image


def scan(seed: int = 0, size: int = 256, rgb: bool = False, lesion: bool = True) -> Image.Image:
    """A dark background, an elliptical 'head' with texture, and optionally a bright lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)
    head = ((yy - cy) / 0.42) ** 2 + ((xx - cx) / 0.36) ** 2 < 1
    img = np.zeros((size, size), np.float32)
    img[head] = 90 + 30 * np.sin(xx[head] * 25 + seed) + rng.normal(0, 8, head.sum())
    if lesion:
        ly, lx = cy + rng.uniform(-0.2, 0.2), cx + rng.uniform(-0.15, 0.15)
        blob = ((yy - ly) ** 2 + (xx - lx) ** 2) < rng.uniform(0.004, 0.01)
        img[blob & head] = 220
    img = np.clip(img, 0, 255).astype(np.uint8)
    pil = Image.fromarray(img, "L")
    return pil.convert("RGB") if rgb else pil


def boxed_kaggle(root, counts=(("Training", 8), ("Testing", 2)), classes=("glioma", "meningioma", "notumor", "pituitary"),
                 class_step: int = 1000, offset: int = 0):
    """A Kaggle-layout folder of synthetic scans under `root` with a tumor_boxes.csv: the
    bounding box of each tumour scan's lesion. Scan i of class c has the seed
    offset + class_step * c + 100 * (split == "Testing") + i. Returns `root`."""
    from pathlib import Path
    root = Path(root)
    rows = ["path,split,class,width,height,x0,y0,x1,y1"]
    for split, n in counts:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = scan(seed=offset + class_step * c + 100 * (split == "Testing") + i, size=64,
                           lesion=name != "notumor")
                img.save(folder / f"{name}-{i}.png")
                ys, xs = np.nonzero(np.asarray(img) == 220)
                if name != "notumor" and len(xs):
                    rows.append(f"{split}/{name}/{name}-{i}.png,{split},{name},64,64,"
                                f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
    (root / "tumor_boxes.csv").write_text("\n".join(rows) + "\n")
    return root
