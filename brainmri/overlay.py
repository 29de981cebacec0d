"""Heatmap colouring and blending: numpy in, uint8 RGB out (no UI code)."""
from __future__ import annotations

import cv2
import numpy as np


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) float in [0, 1] -> (H, W, 3) uint8 RGB with the jet colour map."""
    scaled = np.uint8(np.clip(heatmap, 0.0, 1.0) * 255)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


CLEAR_BELOW, OPAQUE_FROM = 0.2, 0.5     # heatmap values: transparent below, full `alpha` from
DEFAULT_ALPHA = 0.45                    # the heatmap's opacity unless a user sets one


def opacity(heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """(H, W) float32 per-pixel opacity: 0 where the map is under CLEAR_BELOW, `alpha` from
    OPAQUE_FROM, linear between; so low relevance leaves the scan's own background (the jet
    map's navy never covers it) and only the hot regions are coloured."""
    ramp = (np.asarray(heatmap, np.float32) - CLEAR_BELOW) / (OPAQUE_FROM - CLEAR_BELOW)
    return np.clip(ramp, 0.0, 1.0) * float(np.clip(alpha, 0.0, 1.0))


def blend(grey: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Overlay `heatmap` (H, W) in [0, 1] on `grey` (H, W) uint8: (H, W, 3) uint8 RGB, each pixel
    `w * colour + (1 - w) * scan` with w = `opacity(heatmap, alpha)`, alpha in [0, 1]."""
    if grey.shape != heatmap.shape:
        raise ValueError(f"image {grey.shape} and heatmap {heatmap.shape} differ in shape")
    w = opacity(heatmap, alpha)[:, :, None]                           # (H, W, 1)
    scan = np.asarray(grey, np.float32)[:, :, None]
    return np.rint(w * colourise(heatmap) + (1.0 - w) * scan).astype(np.uint8)


def upscale(rgb: np.ndarray, min_side: int = 512) -> np.ndarray:
    """(H, W[, 3]) uint8 enlarged (bicubic) so its longer side is at least `min_side`, for
    display: a 64 px DICOM's overlay should not be a thumbnail. Larger images are returned
    unchanged."""
    h, w = rgb.shape[:2]
    if max(h, w) >= min_side:
        return rgb
    scale = min_side / max(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def with_colour_bar(heatmap: np.ndarray, size: int = 384, bar: int = 18) -> np.ndarray:
    """(H, W) in [0, 1] -> (h, w, 3) uint8 RGB: the map in `colourise`'s colours, its longer
    side scaled to `size`, on white with a colour bar labelled 0, 0.5 and 1 ("relevance").

    OpenCV only, no matplotlib figure: drawn per request, so it must stay cheap.
    """
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32)), 0.0, 1.0)
    if heat.ndim != 2 or min(heat.shape) == 0:
        raise ValueError(f"heatmap must be a non-empty (H, W) array, got shape {heat.shape}")
    scale = size / max(heat.shape)
    h, w = max(1, round(heat.shape[0] * scale)), max(1, round(heat.shape[1] * scale))
    picture = colourise(cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR))
    pad, text_w = 12, 44
    canvas = np.full((h + 2 * pad, w + 3 * pad + bar + text_w, 3), 255, np.uint8)
    canvas[pad:pad + h, pad:pad + w] = picture
    x0 = 2 * pad + w
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar, axis=1)
    canvas[pad:pad + h, x0:x0 + bar] = colourise(ramp)
    cv2.rectangle(canvas, (x0 - 1, pad - 1), (x0 + bar, pad + h), (90, 90, 90), 1)
    font, black = cv2.FONT_HERSHEY_SIMPLEX, (30, 30, 30)
    for value in (1.0, 0.5, 0.0):
        y = pad + round((1.0 - value) * (h - 1))
        cv2.line(canvas, (x0 + bar, y), (x0 + bar + 4, y), black, 1)
        cv2.putText(canvas, f"{value:g}", (x0 + bar + 7, min(pad + h, max(pad + 8, y + 4))),
                    font, 0.4, black, 1, cv2.LINE_AA)
    label = np.full((text_w - 22, h), 255, np.uint8)            # written sideways, then turned
    (tw, _), _ = cv2.getTextSize("relevance", font, 0.4, 1)
    cv2.putText(label, "relevance", (max(0, (h - tw) // 2), 14), font, 0.4, 30, 1, cv2.LINE_AA)
    column = cv2.rotate(label, cv2.ROTATE_90_CLOCKWISE)        # (h, text_w - 22)
    x1 = x0 + bar + 28
    canvas[pad:pad + h, x1:x1 + column.shape[1]] = column[:, :canvas.shape[1] - x1, None]
    return canvas
