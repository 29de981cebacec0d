"""Is this a brain MRI slice? A Mahalanobis detector on the pooled target-layer features.

Fitted on the training scans' features (class means, one shared covariance after a PCA), it
scores how far an image's features lie from every class; the threshold is set on validation
scans so that a chosen share of real scans (e.g. 0.5%) would be refused. It reuses the
features of the forward pass that makes the prediction, so it costs nothing extra.
Stored in the checkpoint as tensors `ood.*` plus `meta["ood"]` (threshold, quantile).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

PREFIX = "ood."


class MahalanobisOOD:
    def __init__(self, mean: torch.Tensor, components: torch.Tensor, class_means: torch.Tensor,
                 precision: torch.Tensor, threshold: float = float("inf")):
        self.mean = mean.float()                  # (K,)   feature mean
        self.components = components.float()      # (K, D) PCA projection
        self.class_means = class_means.float()    # (C, D)
        self.precision = precision.float()        # (D, D) shared inverse covariance
        self.threshold = float(threshold)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, dims: int = 128) -> "MahalanobisOOD":
        """`features` (N, K) pooled activations, `labels` (N,) class indices."""
        from sklearn.covariance import LedoitWolf
        x = torch.as_tensor(features, dtype=torch.float64)
        mean = x.mean(0)
        _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
        components = v[: min(dims, v.shape[0])].T                        # (K, D)
        z = ((x - mean) @ components).numpy()
        labels = np.asarray(labels)
        class_means = np.stack([z[labels == c].mean(0) for c in np.unique(labels)])
        centred = z - class_means[np.searchsorted(np.unique(labels), labels)]
        precision = LedoitWolf().fit(centred).precision_
        return cls(mean.float(), components.float(), torch.as_tensor(class_means),
                   torch.as_tensor(precision))

    def score(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, K) pooled features -> (N,) squared Mahalanobis distance to the nearest class."""
        x = torch.as_tensor(features, dtype=torch.float32).cpu()
        z = (x - self.mean) @ self.components                              # (N, D)
        d = z[:, None, :] - self.class_means[None]                         # (N, C, D)
        m = torch.einsum("ncd,de,nce->nc", d, self.precision, d)
        return m.min(dim=1).values.numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: getattr(self, k).contiguous()
                for k in ("mean", "components", "class_means", "precision")}

    @classmethod
    def from_checkpoint(cls, path: str | Path, meta: dict) -> "MahalanobisOOD | None":
        if "ood" not in meta:
            return None
        with safe_open(str(path), framework="pt") as f:
            t = {k[len(PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(PREFIX)}
        if not t:
            return None
        return cls(**t, threshold=meta["ood"]["threshold"])
