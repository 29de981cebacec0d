"""Is this a brain MRI slice? A detector on the pooled target-layer features.

Two detectors, fitted on the training scans' pooled features, each scoring how far an image's
features lie from them (higher = less like a training scan):
- `MahalanobisOOD` ("mahalanobis-pca"): class means and one shared covariance after a PCA;
  one Gaussian per class, so scan styles that are rare in training (T2, FLAIR, coronal
  slices) lie far from every mean.
- `KNNOOD` ("knn-cosine", Sun et al. 2022, "Out-of-distribution detection with deep nearest
  neighbors"): distance from the L2-normalised feature to its k-th nearest training scan;
  no shape is assumed, so a rare style is near its own kind.
A checkpoint's metadata names the one it carries; how the two compare: docs/trust.md.
The threshold is set on validation scans so that a chosen share of them would be refused. Both reuse the features of the forward pass that makes the prediction.
Stored in the checkpoint as tensors `ood.*` plus `meta["ood"]` (method, threshold, quantile);
`from_checkpoint` picks the class from `meta["ood"]["method"]`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

PREFIX = "ood."


def _pca(x: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) -> the mean (K,) and the first `dims` principal directions (K, D)."""
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    return mean, v[: min(dims, v.shape[0])].T


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
        mean, components = _pca(x, dims)
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


class KNNOOD:
    def __init__(self, mean: torch.Tensor, components: torch.Tensor, bank: torch.Tensor,
                 k: torch.Tensor | int = 10, threshold: float = float("inf")):
        self.mean = mean.float()                  # (K,)   mean of the normalised features
        self.components = components.float()      # (K, D) PCA projection
        self.bank = bank.float()                  # (N, D) projected training features
        self.k = int(k)
        self.threshold = float(threshold)

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray | None = None, dims: int = 128,
            k: int = 10) -> "KNNOOD":
        """`features` (N, K) pooled activations; `labels` unused (the bank keeps every scan)."""
        x = cls._normalise(torch.as_tensor(features, dtype=torch.float64))
        mean, components = _pca(x, dims)
        return cls(mean, components, (x - mean) @ components, min(k, len(x)))

    def score(self, features: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, K) pooled features -> (N,) distance to the k-th nearest training scan."""
        x = self._normalise(torch.as_tensor(features, dtype=torch.float32).cpu())
        z = (x - self.mean) @ self.components                              # (N, D)
        d = torch.cdist(z, self.bank)                                      # (N, bank)
        return d.topk(self.k, dim=1, largest=False).values[:, -1].numpy()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + "mean": self.mean.contiguous(),
                PREFIX + "components": self.components.contiguous(),
                PREFIX + "bank": self.bank.half().contiguous(), PREFIX + "k": torch.tensor(self.k)}


DETECTORS = {"mahalanobis-pca": MahalanobisOOD, "knn-cosine": KNNOOD}
DEFAULT_DETECTOR = "mahalanobis-pca"   # what training fits and `train.fit_ood` refits by default
DEFAULT_QUANTILE = 0.995               # share of validation scans the threshold accepts


def fit(method: str, features: np.ndarray, labels: np.ndarray, **kwargs) -> MahalanobisOOD | KNNOOD:
    if method not in DETECTORS:
        raise ValueError(f"unknown OOD method {method!r}; choose from {sorted(DETECTORS)}")
    return DETECTORS[method].fit(features, labels, **kwargs)


def from_checkpoint(path: str | Path, meta: dict) -> MahalanobisOOD | KNNOOD | None:
    """The detector stored in a checkpoint, or None when it has none."""
    if "ood" not in meta:
        return None
    with safe_open(str(path), framework="pt") as f:
        t = {k[len(PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(PREFIX)}
    if not t:
        return None
    method = meta["ood"].get("method", "mahalanobis-pca")
    if method not in DETECTORS:
        raise ValueError(f"{Path(path).name}: unknown OOD method {method!r}")
    return DETECTORS[method](**t, threshold=meta["ood"]["threshold"])
