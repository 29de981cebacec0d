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
