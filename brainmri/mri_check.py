"""Model-free checks that a decoded input could be an MRI slice at all.

The feature detector (`brainmri.ood`) sees only the luminance crop the model sees, and it
lets through some photographs (a grey astronaut, a coffee cup) whose features happen to lie
near the scans'. These checks look at the whole decoded picture, before the grey conversion:

1. grey: MRI is a single-channel signal; exported as RGB its channels stay equal, a
   photograph's do not. Measure: Hasler & Suesstrunk (2003) colourfulness
   M = sqrt(sd(rg)^2 + sd(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G,
   yb = (R + G)/2 - B (0 for grey; 15 "slightly", 33 "moderately colourful").
2. dark surround: a head slice sits on the scanner's black background, so most of the image
   border is dark. Measure: the share of the outer frame (a tenth of the shorter side wide)
   darker than 40/255 after the grey conversion.
3. DICOM Modality: a DICOM file that declares CT, ultrasound, X-ray... is not MRI, whatever
   it looks like (secondary captures, OT/SC, and files without a Modality pass).

Limits were set on the validation split of the Kaggle training scans (never on Testing):
411 scans, colourfulness 0.0 for every one (RGB files included), dark border share 0.466 at
the lowest (median 0.92). Both checks run on a copy at most 256 pixels on a side (~2 ms).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_COLOURFULNESS = 10.0     # photographs score 38-77 here; room left for a tint or a marker
MIN_DARK_BORDER = 0.35       # three quarters of the lowest validation value (0.466)
DARK = 40                    # grey level counted as background
MRI_MODALITIES = ("MR", "OT", "SC", "")
SIDE = 256


@dataclass(frozen=True)
class InputCheck:
    colourfulness: float      # Hasler-Suesstrunk M, 0 for grey
    dark_border: float        # share of the border frame darker than DARK, in [0, 1]
    modality: str             # DICOM Modality, "" when not DICOM
    score: float              # the worst check relative to its limit: over 1 means refused
    ok: bool                  # True: could be an MRI slice as far as these checks can tell


def _small(image: Image.Image) -> Image.Image:
    small = image.copy()
    small.thumbnail((SIDE, SIDE))                     # in place, keeps the aspect ratio
    if small.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")                  # transparent = black, as in to_grey
        small = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return small


def colourfulness(image: Image.Image) -> float:
    """Hasler-Suesstrunk colourfulness of a PIL image (any mode); 0 for greyscale modes."""
    if image.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA", "La"):
        return 0.0
    rgb = np.asarray(_small(image).convert("RGB"), np.float32)       # (h, w, 3)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def dark_border(image: Image.Image) -> float:
    """Share of the outer frame (1/10 of the shorter side wide) darker than DARK/255."""
    from .io import to_grey
    grey = to_grey(_small(image))                                    # (h, w) uint8
    w = max(1, min(grey.shape) // 10)
    frame = np.concatenate([grey[:w].ravel(), grey[-w:].ravel(),
                            grey[w:-w, :w].ravel(), grey[w:-w, -w:].ravel()])
    return float((frame < DARK).mean())


def check(image: Image.Image) -> InputCheck:
    """The input-level verdict for one decoded image (before any grey conversion)."""
    m, d = colourfulness(image), dark_border(image)
    modality = str(image.info.get("modality", "")).upper()
    score = max(m / MAX_COLOURFULNESS, MIN_DARK_BORDER / max(d, 1e-3),
                0.0 if modality in MRI_MODALITIES else 1e3)
    ok = m <= MAX_COLOURFULNESS and d >= MIN_DARK_BORDER and modality in MRI_MODALITIES
    return InputCheck(m, d, modality, score, ok)


def describe() -> dict:
    return {"max_colourfulness": MAX_COLOURFULNESS, "min_dark_border": MIN_DARK_BORDER,
            "dark_level": DARK, "modalities": list(MRI_MODALITIES),
            "set_on": "validation split of Kaggle Training"}
