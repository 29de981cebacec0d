"""Acquisition shifts for the familiarity bench (`studies.shift_bench`), as plain functions on decoded pictures.

Each takes a grey scan (H, W) uint8 and a seeded `np.random.Generator` and returns a picture
of the same (H, W): uint8 grey, or (H, W, 3) uint8 RGB for `falsecolour`. Deterministic for a
given generator state. Two families, named in docs/familiarity.md before any measurement:

- `BENCH`: transforms that training augmentation does **not** use (the lesion model's
  augmentation: monotone curves, gamma, inversion, bias fields, blur, down-sampling, JPEG,
  Gaussian noise, small rotation/scale); the bench reports on these.
- `DEV`: strong settings of the augmentation kind, used only to choose the familiarity
  statistics (`train.fit_familiarity --compare`), never reported as the bench.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .localisation import head_mask

Shift = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --- bench: not in training augmentation -------------------------------------------------------
def rician(grey: np.ndarray, rng: np.random.Generator, sigma: float = 0.12) -> np.ndarray:
    """Magnitude of (image + n1, n2), n1, n2 ~ N(0, sigma) on the [0, 1] scale (MR magnitude noise)."""
    x = grey.astype(np.float64) / 255.0
    n1, n2 = rng.normal(0, sigma, (2, *grey.shape))
    return _u8(255.0 * np.hypot(x + n1, n2))


def gibbs(grey: np.ndarray, rng: np.random.Generator, keep: float = 0.30) -> np.ndarray:
    """k-space truncation: only the central `keep` of the frequencies of each axis (ringing)."""
    k = np.fft.fftshift(np.fft.fft2(grey.astype(np.float64)))
    h, w = grey.shape
    kh, kw = max(1, round(h * keep / 2)), max(1, round(w * keep / 2))
    mask = np.zeros_like(k, dtype=bool)
    mask[h // 2 - kh:h // 2 + kh, w // 2 - kw:w // 2 + kw] = True
    return _u8(np.abs(np.fft.ifft2(np.fft.ifftshift(np.where(mask, k, 0)))))


def ghosting(grey: np.ndarray, rng: np.random.Generator, share: float = 0.30,
             shift: float = 0.06) -> np.ndarray:
    """Motion ghosting: a random `share` of k-space rows (phase-encode lines) acquired with the
    object moved by `shift` x the height along the phase axis."""
    h, _ = grey.shape
    k = np.fft.fft2(grey.astype(np.float64))
    ky = np.fft.fftfreq(h)[:, None]                                      # cycles per pixel
    moved = rng.random(h) < share
    phase = np.where(moved[:, None], np.exp(-2j * np.pi * ky * shift * h), 1.0)
    return _u8(np.abs(np.fft.ifft2(k * phase)))


def aniso(grey: np.ndarray, rng: np.random.Generator, factor: int = 5) -> np.ndarray:
    """Vertical axis down to 1/`factor` and back (a thick-slice look)."""
    h, w = grey.shape
    small = cv2.resize(grey, (w, max(1, h // factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def clahe(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OpenCV CLAHE, clip limit 4, 8x8 tiles."""
    return cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(grey)


def histeq(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Global histogram equalisation."""
    return cv2.equalizeHist(grey)


def window(grey: np.ndarray, rng: np.random.Generator, centre_pct: float = 70,
           width: float = 0.30) -> np.ndarray:
    """Viewer windowing: centre at the `centre_pct` percentile of head pixels (grey > 40),
    width `width` x 255, values outside clipped."""
    head = grey[grey > 40]
    centre = float(np.percentile(head, centre_pct)) if head.size else 128.0
    lo = centre - width * 255 / 2
    return _u8((grey.astype(np.float64) - lo) / (width * 255) * 255)


def falsecolour(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """OpenCV's JET colour map on the grey picture -> (H, W, 3) RGB."""
    return cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


# --- development: the augmentation kind, strong ------------------------------------------------
def invert(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The head's intensities inverted; the background stays black."""
    head = head_mask(grey)
    return np.where(head, 255 - grey, grey).astype(np.uint8)


def gamma(value: float) -> Shift:
    def shift(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _u8(255.0 * (grey / 255.0) ** value)
    shift.__doc__ = f"Gamma {value}."
    return shift


def blur(grey: np.ndarray, rng: np.random.Generator, sigma: float = 0.01) -> np.ndarray:
    """Gaussian blur, sigma `sigma` x the longer side."""
    return cv2.GaussianBlur(grey, (0, 0), sigma * max(grey.shape))


def down4(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down to 1/4 on both axes and back."""
    h, w = grey.shape
    small = cv2.resize(grey, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg5(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """JPEG re-encoding at quality 5."""
    ok, data = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 5])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


BENCH: dict[str, Shift] = {"rician": rician, "gibbs": gibbs, "ghosting": ghosting, "aniso": aniso,
                           "clahe": clahe, "histeq": histeq, "window": window, "falsecolour": falsecolour}
DEV: dict[str, Shift] = {"invert": invert, "gamma3": gamma(3.0), "gamma0.33": gamma(0.33),
                         "blur": blur, "down4": down4, "jpeg5": jpeg5}
COUNTERFACTUAL = "counterfactual"           # the tumour box painted out (studies.shift_bench)
