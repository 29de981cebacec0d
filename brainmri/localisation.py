"""Does a heatmap point at the tumour, and does it stay inside the head? (numpy + OpenCV only)

Every function takes a heatmap (H, W) float in the input image's own pixels (the
`Explanation.heatmap` contract: values in [0, 1], 0 outside the head crop) and boxes as
(x0, y0, x1, y1) in those pixels with x1, y1 exclusive (PIL's crop box, `tumor_boxes.csv`).

- `pointing_game`: is the heatmap's maximum inside the box grown by a tolerance?
- `energy_in_box`: the share of positive heatmap mass inside the box (energy-based pointing
  game, Wang et al. 2020, Score-CAM).
- null baselines that look at no image: `centred_gaussian` and `random_heatmap`.
- shortcut checks: `head_mask` + `mass_outside`, and `border_mass` (the outer band of a box).
- counterfactuals: `hot_region` (where the map is near its peak), `paint_out` (fill a region
  from the tissue around it) and `share_of_head`, to ask whether a region decided the answer.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

Box = Sequence[int]          # (x0, y0, x1, y1), x1/y1 exclusive
MIN_HEAD_SHARE = 0.05        # a head covers at least this share of the picture; a smaller blob is none


def _positive(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) float32 with negatives and NaN set to 0."""
    heatmap = np.asarray(heatmap, np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {heatmap.shape}")
    return np.where(heatmap > 0, heatmap, np.float32(0))


def box_mask(shape: tuple[int, int], box: Box, grow: int = 0) -> np.ndarray:
    """(H, W) bool, True inside `box` grown by `grow` pixels on every side (clipped)."""
    h, w = shape
    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"empty box {tuple(box)}: needs x0 < x1 and y0 < y1")
    mask = np.zeros((h, w), bool)
    mask[max(0, y0 - grow):max(0, min(h, y1 + grow)), max(0, x0 - grow):max(0, min(w, x1 + grow))] = True
    return mask


def pointing_game(heatmap: np.ndarray, box: Box, tolerance_px: int = 0) -> bool:
    """True when the heatmap's maximum lies inside `box` grown by `tolerance_px` pixels.

    Ties (plateaus after upsampling, flat maps) count as a hit only when more than half of the
    maximal pixels are inside, so a constant or all-zero map does not score.
    """
    heat = _positive(heatmap)
    top = heat.max()
    if top <= 0:
        return False
    peak = heat >= top - 1e-6 * top
    inside = box_mask(heat.shape, box, int(tolerance_px))
    return bool(2 * np.count_nonzero(peak & inside) > np.count_nonzero(peak))


def mass_inside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share in [0, 1] of the positive heatmap mass where `mask` (H, W) is True; nan if none."""
    heat = _positive(heatmap)
    if mask.shape != heat.shape:
        raise ValueError(f"mask {mask.shape} and heatmap {heat.shape} differ in shape")
    total = heat.sum(dtype=np.float64)
    return float(heat[mask].sum(dtype=np.float64) / total) if total > 0 else float("nan")


def mass_outside(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share in [0, 1] of the positive heatmap mass where `mask` is False; nan if none."""
    return 1.0 - mass_inside(heatmap, mask)


def energy_in_box(heatmap: np.ndarray, box: Box) -> float:
    """Share in [0, 1] of the positive heatmap mass inside `box`; nan for an all-zero map."""
    return mass_inside(heatmap, box_mask(np.shape(heatmap), box))


def border_mask(shape: tuple[int, int], band: float = 0.05, box: Box | None = None) -> np.ndarray:
    """(H, W) bool: the outer band of `box` (default: the whole image), `band` of its size wide.

    Use the head-crop box to look at the edge of what the model saw (frame, corner text).
    """
    h, w = shape
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    bx, by = max(1, round(band * (x1 - x0))), max(1, round(band * (y1 - y0)))
    mask = box_mask(shape, (x0, y0, x1, y1))
    mask[y0 + by:y1 - by, x0 + bx:x1 - bx] = False
    return mask


def border_mass(heatmap: np.ndarray, band: float = 0.05, box: Box | None = None) -> float:
    """Share of positive heatmap mass in the outer `band` of `box` (a uniform map: 1-(1-2b)^2)."""
    return mass_inside(heatmap, border_mask(np.shape(heatmap), band, box))


# -- null baselines: maps that never look at the image ----------------------------------------
def centred_gaussian(shape: tuple[int, int], sigma: float = 0.25) -> np.ndarray:
    """(H, W) float32 in [0, 1]: a Gaussian at the centre, std `sigma` times each side."""
    h, w = shape
    yy = (np.arange(h) + 0.5 - h / 2) / (sigma * h)
    xx = (np.arange(w) + 0.5 - w / 2) / (sigma * w)
    g = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2))
    return (g / g.max()).astype(np.float32)


def random_heatmap(shape: tuple[int, int], rng: np.random.Generator, smooth: float = 0.08) -> np.ndarray:
    """(H, W) float32 in [0, 1]: white noise blurred by a Gaussian of std `smooth` x the longer side,
    min-max scaled (blobs about the size of an upsampled CAM's). Made on a <= 64 px grid, then
    resized: the same blobs at a fraction of the cost."""
    h, w = shape
    scale = min(1.0, 64.0 / max(h, w))
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    noise = rng.standard_normal((sh, sw)).astype(np.float32)
    sigma = max(0.5, smooth * max(sh, sw))
    blurred = cv2.GaussianBlur(noise, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if (sh, sw) != (h, w):
        blurred = cv2.resize(blurred, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(blurred.min()), float(blurred.max())
    return ((blurred - lo) / (hi - lo) if hi > lo else np.zeros_like(blurred)).astype(np.float32)


def place(heatmap: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Put an (h, w) map made for `box` into an (H, W) zero image (as CAMs are: 0 outside the crop)."""
    x0, y0, x1, y1 = box
    if heatmap.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"map {heatmap.shape} does not fit box {tuple(box)}")
    full = np.zeros(shape, np.float32)
    full[y0:y1, x0:x1] = heatmap
    return full


# -- the head ------------------------------------------------------------------------------
def largest_bright_blob(grey: np.ndarray) -> tuple[np.ndarray | None, float, tuple[int, int]]:
    """(contour, scale, (h, w)) of the largest bright blob of an (H, W) uint8 scan, found on a
    blurred copy at most 256 px on its longer side (`scale` <= 1, of size (h, w)), bright
    meaning above 0.3 x Otsu's threshold and at least 10. Contour None when nothing is bright.
    The one head finder behind `presets.head_box` (the crop) and `head_mask` (the metrics)."""
    h, w = grey.shape
    scale = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else grey
    small = cv2.GaussianBlur(small, (5, 5), 0)
    otsu, _ = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, bright = cv2.threshold(small, max(10.0, 0.3 * otsu), 255, cv2.THRESH_BINARY)
    contours, _ = cv2.findContours(bright, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    blob = max(contours, key=cv2.contourArea) if contours else None
    return blob, scale, small.shape[:2]


def filled_head(grey: np.ndarray) -> tuple[np.ndarray | None, float]:
    """(filled, scale): the largest bright blob of `largest_bright_blob` with its holes filled,
    uint8 0/255 at the blob's working size (`scale` <= 1 of the scan's), or None when nothing
    is bright."""
    blob, scale, small_shape = largest_bright_blob(grey)
    if blob is None:
        return None, scale
    filled = np.zeros(small_shape, np.uint8)
    cv2.drawContours(filled, [blob], -1, 255, thickness=cv2.FILLED)
    return filled, scale


def head_share(grey: np.ndarray) -> float:
    """Share of an (H, W) uint8 scan covered by its head (`filled_head`); 0.0 without one."""
    filled, _ = filled_head(grey)
    return 0.0 if filled is None else float(np.count_nonzero(filled) / filled.size)


def head_mask(grey: np.ndarray, min_share: float = MIN_HEAD_SHARE) -> np.ndarray:
    """(H, W) uint8 scan -> (H, W) bool, True on the head: the largest bright blob, holes filled.

    The blob of `largest_bright_blob`, as `presets.head_box` crops to. When no blob covers
    `min_share` of the image, the whole image counts as head.
    """
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8:
        raise ValueError(f"head_mask needs an (H, W) uint8 image, got {grey.shape} {grey.dtype}")
    h, w = grey.shape
    filled, scale = filled_head(grey)
    if filled is None or np.count_nonzero(filled) < min_share * filled.size:
        return np.ones((h, w), bool)
    if scale < 1:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    return filled >= 128


def boxes_overlap(a: Box, b: Box) -> bool:
    """Whether two (x0, y0, x1, y1) boxes, x1/y1 exclusive, share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def fit_box(head: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
            avoid: Box | None = None, first: tuple[int, int] | None = None,
            tries: int = 200) -> Box | None:
    """A box of `size` (width, height) with its four corners and its centre on the `head` mask
    (H, W) bool, not overlapping `avoid`: at `first` (x0, y0, clipped into the image) if that
    fits, else at random places (x0 then y0 drawn from `rng`); None when `tries` places fail or
    the box is as large as the image."""
    h, w = head.shape
    bw, bh = size
    if bw >= w or bh >= h:
        return None
    for t in range(tries):
        if t == 0 and first is not None:
            x0, y0 = min(max(0, first[0]), w - bw), min(max(0, first[1]), h - bh)
        else:
            x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        box = (x0, y0, x0 + bw, y0 + bh)
        if avoid is not None and boxes_overlap(box, avoid):
            continue
        points = [(y0, x0), (y0, x0 + bw - 1), (y0 + bh - 1, x0), (y0 + bh - 1, x0 + bw - 1),
                  (y0 + bh // 2, x0 + bw // 2)]
        if all(head[y, x] for y, x in points):
            return box
    return None


# -- counterfactuals: paint a region out and ask again ----------------------------------------
def hot_region(heatmap: np.ndarray, level: float = 0.5) -> np.ndarray:
    """(H, W) bool: the connected region around the heatmap's maximum where it is at least
    `level` x that maximum (8-connected). All False for an all-zero map."""
    heat = _positive(heatmap)
    top = float(heat.max())
    if top <= 0:
        return np.zeros(heat.shape, bool)
    _, labels = cv2.connectedComponents(np.uint8(heat >= level * top), connectivity=8)
    peak = np.unravel_index(int(heat.argmax()), heat.shape)
    return labels == labels[peak]


def share_of_head(region: np.ndarray, head: np.ndarray) -> float:
    """The share in [0, 1] of the head (`head` mask, with `region` counted in) that `region`
    (H, W) bool covers: how much of the scan a counterfactual painted out."""
    return float(np.count_nonzero(region) / max(1, np.count_nonzero(head | region)))


def paint_out(grey: np.ndarray, mask: np.ndarray, radius: int = 5, max_side: int = 1024) -> np.ndarray:
    """`grey` (H, W) uint8 with the pixels of `mask` (H, W) filled from the tissue around them
    (OpenCV's Telea inpainting); every other pixel unchanged. Images longer than `max_side`
    are filled from a copy scaled down to it (Telea's time grows with the area), the fill
    scaled back up."""
    grey = np.asarray(grey)
    if grey.ndim != 2 or grey.dtype != np.uint8 or np.shape(mask) != grey.shape:
        raise ValueError(f"paint_out needs an (H, W) uint8 image and a mask of its shape, got "
                         f"{grey.shape} {grey.dtype} and {np.shape(mask)}")
    mask = np.asarray(mask, bool)
    h, w = grey.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return cv2.inpaint(grey, np.uint8(mask) * 255, radius, cv2.INPAINT_TELEA)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(np.uint8(mask) * 255, size, interpolation=cv2.INTER_NEAREST)
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))      # cover the mask's edges
    fill = cv2.resize(cv2.inpaint(small, small_mask, radius, cv2.INPAINT_TELEA), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    out = grey.copy()
    out[mask] = fill[mask]
    return out
