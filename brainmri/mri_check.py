"""Model-free checks that a decoded input could be an MRI slice at all.

The feature detector (`brainmri.ood`) sees only the luminance crop the model sees, and it
lets through some photographs (a grey astronaut, a coffee cup) whose features happen to lie
near the scans'. These checks look at the whole decoded picture, before the grey conversion:

1. grey: MRI is a single-channel signal; exported as RGB its channels stay equal, apart from
   a tint or a small coloured banner or marker. Measure: the share of pixels whose channels
   differ by more than 40/255 (max - min), at most MAX_COLOUR_SHARE.
2. dark corners: a head slice is roughly elliptical and sits on the scanner's black
   background, so the image corners are dark even when the crop is tight. Measure: the share
   of the four corner squares (an eighth of the shorter side each) darker than 40/255 after
   the grey conversion, at least MIN_DARK_CORNERS.
3. DICOM Modality: a DICOM file that declares CT, ultrasound, X-ray... is not MRI, whatever it
   looks like (secondary captures, OT/SC, and files without a Modality pass).

What a picture says about itself is also carried on: a slice cut across a volume's thicker
slices (`volumes.declared_cut`) is an MRI slice, but one the models were never shown,
so its answer is a caution (`outcomes.input_reasons`), not a refusal.

The limits sit between the Kaggle *Training* scans (train and validation splits; nothing is
fitted on them) and photographs, never set on Testing; the measured values: docs/trust.md.
Both run on a copy at most SIDE pixels on a side, so their cost does not grow with the upload.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import volumes

MAX_COLOUR_SHARE = 0.2       # above every Training scan, below photographs (docs/trust.md)
MIN_DARK_CORNERS = 0.4       # below all but the rarest Training scans (docs/trust.md)
DARK = 40                    # grey level counted as background; also the chroma step
MRI_MODALITIES = ("MR", "OT", "SC", "")
SIDE = 256


@dataclass(frozen=True)
class InputCheck:
    colour_share: float       # share of clearly coloured pixels, in [0, 1]
    dark_corners: float       # share of corner pixels darker than DARK, in [0, 1]
    modality: str             # DICOM Modality, "" when not DICOM
    score: float              # the worst check relative to its limit: over 1 means refused
    ok: bool                  # True: could be an MRI slice as far as these checks can tell
    cut: tuple[str, str, float] | None = None   # cut across thicker slices: `volumes.cut_across`


def thumbnail(image: Image.Image) -> Image.Image:
    """A copy at most SIDE pixels on a side (aspect kept), transparency composited on black."""
    small = image.copy()
    small.thumbnail((SIDE, SIDE))                     # in place, keeps the aspect ratio
    if small.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
            small.mode == "P" and "transparency" in small.info):
        rgba = small.convert("RGBA")                  # transparent = black, as in to_grey
        small = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return small


def colour_share(image: Image.Image, small: Image.Image | None = None) -> float:
    """Share of pixels whose RGB channels differ by more than DARK; 0 for greyscale modes.
    `small`: `thumbnail(image)` when the caller already has it."""
    if image.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "LA", "La"):
        return 0.0
    small = small if small is not None else thumbnail(image)
    rgb = np.asarray(small.convert("RGB"))                            # (h, w, 3) uint8
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]     # channel-wise: quicker than max(-1)
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float(np.count_nonzero(spread > DARK) / spread.size)


def dark_corners(image: Image.Image, small: Image.Image | None = None) -> float:
    """Share of the four corner squares (1/8 of the shorter side) darker than DARK/255."""
    from .io import to_grey
    grey = to_grey(small if small is not None else thumbnail(image))    # (h, w) uint8
    k = max(1, min(grey.shape) // 8)
    corners = np.concatenate([grey[:k, :k].ravel(), grey[:k, -k:].ravel(),
                              grey[-k:, :k].ravel(), grey[-k:, -k:].ravel()])
    return float((corners < DARK).mean())


def check(image: Image.Image) -> InputCheck:
    """The input-level verdict for one decoded image (before any grey conversion)."""
    small = thumbnail(image)                             # one thumbnail for both checks
    c, d = colour_share(image, small), dark_corners(image, small)
    modality = volumes.declared_modality(image)
    mri = modality in MRI_MODALITIES
    score = max(c / MAX_COLOUR_SHARE, MIN_DARK_CORNERS / max(d, 1e-3), 0.0 if mri else 1e3)
    return InputCheck(c, d, modality, score, c <= MAX_COLOUR_SHARE and d >= MIN_DARK_CORNERS and mri,
                      volumes.declared_cut(image))


def describe() -> dict:
    return {"max_colour_share": MAX_COLOUR_SHARE, "min_dark_corners": MIN_DARK_CORNERS,
            "dark_level": DARK, "modalities": list(MRI_MODALITIES),
            "set_on": "Kaggle Training scans (train + validation splits)"}
