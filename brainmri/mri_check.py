"""A model-free check that a decoded input could be an MRI slice at all: is it grey?

MRI is a single-channel signal. Exported as RGB, a slice keeps its three channels equal up
to compression noise; a photograph, a colour chart, a stained slide or a rendered heatmap
does not. The feature detector (`brainmri.ood`) sees only luminance, so a colour photo whose
grey version happens to look scan-like would pass it; this check runs on the image *before*
the grey conversion and refuses what is plainly colourful.

Measure: the colourfulness of Hasler & Suesstrunk (2003), M = sqrt(sd(rg)^2 + sd(yb)^2) +
0.3 sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G, yb = (R + G)/2 - B, on 0-255 values, over
a copy at most 256 pixels on a side. Their scale: 0 not colourful, 15 slightly, 33
moderately, 59 quite. Greyscale modes score 0. The limit was set on the validation split
of the Kaggle training scans (never on Testing): see MAX_COLOURFULNESS.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

# Validation split (411 Kaggle Training scans, 2026-11-27): colourfulness 0.0 for every one,
# RGB files included (equal channels). 10 leaves room for a tint or a small coloured marker
# while refusing photographs (skimage cat 38, astronaut 73, coffee 77, a colour ultrasound 49).
MAX_COLOURFULNESS = 10.0
SIDE = 256


@dataclass(frozen=True)
class InputCheck:
    colourfulness: float      # Hasler-Suesstrunk M, 0 for grey
    score: float              # colourfulness / MAX_COLOURFULNESS: over 1 means refused
    ok: bool                  # True: could be an MRI slice as far as this check can tell


def colourfulness(image: Image.Image) -> float:
    """Hasler-Suesstrunk colourfulness of a PIL image (any mode); 0 for greyscale modes."""
    if image.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA", "La"):
        return 0.0
    small = image.copy()
    small.thumbnail((SIDE, SIDE))                     # reduces in place, keeps aspect
    if small.mode in ("RGBA", "PA", "RGBa") or (small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")
        small = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    rgb = np.asarray(small.convert("RGB"), np.float32)            # (h, w, 3)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def check(image: Image.Image) -> InputCheck:
    """The input-level verdict for one decoded image (before any grey conversion)."""
    m = colourfulness(image)
    return InputCheck(m, m / MAX_COLOURFULNESS, m <= MAX_COLOURFULNESS)


def describe() -> dict:
    return {"measure": "Hasler-Suesstrunk colourfulness", "max": MAX_COLOURFULNESS,
            "set_on": "validation split of Kaggle Training"}
