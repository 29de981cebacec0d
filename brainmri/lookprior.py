"""Does a scan's look alone give its answer? The look prior.

Inside the Kaggle collection a scan's *look* (its in-head brightness and contrast, its
sharpness, how the head fills the picture) is tied to its class: every T2 and FLAIR scan is a
"no tumour", nearly every glioma and pituitary tumour is a figshare slice
(docs/generalisation.md). A model can learn the look instead of the anatomy, and an answer that
the look alone would give cannot show that it read the anatomy.

The look prior measures that tie for one scan, without the model: of the `k` training scans
whose look is nearest this one's (standardised `FEATURES`, Euclidean), what share has each
class? A high share for the class the model gave means the look alone gives the answer.

    prior = LookPrior.fit(train_features, train_labels)          # (N, F), (N,)
    share = prior.shares(look_features(unit, framing)[None])    # (1, classes)

`look_features` reads the picture the model sees (the head crop at the model's size, uint8)
and the crop's share of the whole picture. The prior is model-independent: it depends only on
the training scans' looks and labels.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .intensity import HEAD_LEVEL_U8

PERCENTILES = (1, 10, 25, 50, 75, 90, 99)
FEATURES = tuple(f"p{q}" for q in PERCENTILES) + ("head_share", "framing", "sharpness")
DEFAULT_K = 25


def look_features(unit: np.ndarray, framing: float) -> np.ndarray:
    """(S, S) uint8 head crop at the model's input and the crop's share of the picture's area
    -> (len(FEATURES),) float64: in-head intensity percentiles (of 1), the head's share of the
    crop, `framing`, and sharpness (mean absolute Laplacian inside the head, of 1). A picture
    with almost no head (under 64 pixels) gives zeros for the in-head features."""
    unit = np.asarray(unit)
    if unit.dtype != np.uint8 or unit.ndim != 2:
        raise ValueError(f"expected an (S, S) uint8 picture, got {unit.dtype} {unit.shape}")
    head = unit > HEAD_LEVEL_U8
    out = np.zeros(len(FEATURES))
    out[len(PERCENTILES)] = head.mean()
    out[len(PERCENTILES) + 1] = float(framing)
    if int(head.sum()) >= 64:
        out[:len(PERCENTILES)] = np.percentile(unit[head], PERCENTILES) / 255.0
        lap = np.abs(cv2.Laplacian(unit.astype(np.float32) / 255.0, cv2.CV_32F, ksize=3))
        out[-1] = float(lap[head].mean())
    return out


class LookPrior:
    """The training scans' looks (standardised) and classes; `shares` gives, for each scan,
    each class's share among its `k` nearest training looks."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, classes: int, k: int = DEFAULT_K):
        from sklearn.neighbors import KNeighborsClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        features, labels = np.asarray(features, np.float64), np.asarray(labels, np.int64)
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError("features (N, F) and labels (N,) must describe the same scans")
        if not 1 <= k <= len(labels):
            raise ValueError(f"k must be between 1 and the number of training scans, not {k}")
        self.classes, self.k = int(classes), int(k)
        self.model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=self.k))
        self.model.fit(features, labels)

    @classmethod
    def fit(cls, features: Sequence[np.ndarray] | np.ndarray, labels, classes: int | None = None,
            k: int = DEFAULT_K) -> "LookPrior":
        labels = np.asarray(labels)
        return cls(np.asarray(features), labels, int(labels.max()) + 1 if classes is None else classes, k)

    def shares(self, features: np.ndarray) -> np.ndarray:
        """(B, F) looks -> (B, classes): each class's share among the `k` nearest training
        looks (rows sum to 1; a class absent from training has share 0)."""
        proba = self.model.predict_proba(np.atleast_2d(np.asarray(features, np.float64)))
        out = np.zeros((len(proba), self.classes))
        out[:, self.model.classes_] = proba
        return out

    def answer_shares(self, features: np.ndarray, predicted: Sequence[int]) -> np.ndarray:
        """(B, F) looks and the class given to each -> (B,) that class's share."""
        return self.shares(features)[np.arange(len(predicted)), np.asarray(predicted)]
