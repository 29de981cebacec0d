"""Acquisition and contrast augmentation: so that sequence and scanner are not the cue.

    python -m train.augment --data ../shared/data --out docs/figures/augment.png   # the figure

The Kaggle collection is mostly contrast-enhanced T1 from a few scanners, and its classes
differ in collection as much as in anatomy. `Acquisition` changes what a different sequence,
scanner or export would change, and nothing anatomical:

- `curve`: a random monotone intensity curve (piecewise linear through `knots` random points),
  as a different sequence weights tissues differently while keeping their order;
- `gamma`: a power law on the intensities;
- `invert`: tissue intensities inverted inside the head, the background kept black (a crude
  T2-like contrast, where fluid is bright);
- `bias`: a smooth multiplicative field (coil sensitivity), from a coarse random grid upsampled;
- `resample`: down-sampling by up to `max_down` and back (thicker slices, lower matrix), which
  also blurs;
- `jpeg`: re-encoding at a random quality (exports, screenshots of PACS viewers);
- `noise`: Gaussian noise of random strength.

Each transform fires with its own probability; all randomness comes from one `torch.Generator`,
so a seed reproduces a batch exactly. Input and output: (B, 1, S, S) float32 in [0, 1]. The
geometric part (scale, rotation, mirror) stays in `brainmri.presets.TrainPreset`.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from brainmri.intensity import invert_head, landmarks, match_landmarks

TRANSFORMS = ("curve", "gamma", "invert", "bias", "resample", "jpeg", "noise")


def _uniform(n: int, low: float, high: float, g: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def monotone_curve(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) in [0, 1], (B, K) increasing values from 0 to 1 at K equally spaced inputs
    -> the same images through each one's piecewise-linear curve."""
    b, k = knots.shape
    pos = x.clamp(0, 1) * (k - 1)
    lo = pos.floor().long().clamp(max=k - 2)
    frac = pos - lo
    flat = knots.view(b, 1, 1, 1, k).expand(*x.shape, k)
    y0 = flat.gather(-1, lo[..., None])[..., 0]
    y1 = flat.gather(-1, (lo + 1)[..., None])[..., 0]
    return y0 + frac * (y1 - y0)


def random_knots(n: int, k: int, g: torch.Generator | None) -> torch.Tensor:
    """(n, k) monotone curves from 0 to 1 at k equally spaced inputs: flat-Dirichlet steps
    (exponential variates, normalised), blended with the identity by a random share."""
    inc = -torch.log(torch.rand(n, k - 1, generator=g).clamp_min(1e-6))
    cum = torch.cumsum(inc, 1) / inc.sum(1, keepdim=True)
    curve = torch.cat([torch.zeros(n, 1), cum], 1)
    share = torch.rand(n, 1, generator=g)
    return (1 - share) * torch.linspace(0, 1, k) + share * curve


def bias_field(n: int, size: int, strength: torch.Tensor, g: torch.Generator | None,
               grid: int = 4) -> torch.Tensor:
    """(n, 1, size, size) smooth multiplicative fields exp(strength * noise), noise upsampled
    bicubically from a grid x grid random grid, mean-free per image."""
    coarse = torch.randn(n, 1, grid, grid, generator=g)
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
    field = field - field.mean(dim=(1, 2, 3), keepdim=True)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-6)
    return torch.exp(strength.view(-1, 1, 1, 1) * field)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) in [0, 1] re-encoded as JPEG at each image's quality (OpenCV)."""
    out = torch.empty_like(x)
    for i, (img, q) in enumerate(zip(x, quality.tolist())):
        u8 = (img[0].numpy() * 255).round().astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        out[i, 0] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)).float() / 255
    return out


@dataclass(frozen=True)
class Acquisition:
    """Random acquisition and contrast changes; each transform applies with its probability.

    `__call__(x, generator)`: (B, 1, S, S) float32 in [0, 1] -> the same shape and range. With
    `only=name` a single transform always applies (for tests and the figure).
    """
    p_curve: float = 0.5
    knots: int = 6
    p_gamma: float = 0.3
    gamma: float = 0.5            # log-gamma drawn uniformly from [-gamma, gamma]
    p_invert: float = 0.15
    p_bias: float = 0.3
    bias: float = 0.4             # the field's largest log-deviation
    p_resample: float = 0.25
    max_down: float = 3.0
    p_jpeg: float = 0.25
    jpeg_quality: tuple[int, int] = (30, 90)
    p_noise: float = 0.3
    noise_std: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None,
                 only: str | None = None) -> torch.Tensor:
        if only is not None and only not in TRANSFORMS:
            raise ValueError(f"unknown transform {only!r}; known: {', '.join(TRANSFORMS)}")
        g = generator
        b, _, s, _ = x.shape
        x = x.clone()

        def chosen(name: str) -> torch.Tensor:
            draw = torch.rand(b, generator=g)          # drawn every time: the stream is stable
            if only is not None:
                return torch.full((b,), only == name)
            return draw < getattr(self, f"p_{name}")

        pick = chosen("curve")
        knots = random_knots(b, self.knots, g)
        if pick.any():
            x[pick] = monotone_curve(x[pick], knots[pick])
        pick = chosen("gamma")
        gam = torch.exp(_uniform(b, -self.gamma, self.gamma, g))
        if pick.any():
            x[pick] = x[pick].clamp_min(1e-6) ** gam[pick].view(-1, 1, 1, 1)
        pick = chosen("invert")
        if pick.any():
            x[pick] = invert_head(x[pick])
        pick = chosen("bias")
        field = bias_field(b, s, _uniform(b, 0.1, self.bias, g), g)
        if pick.any():
            x[pick] = x[pick] * field[pick]
        pick = chosen("resample")
        down = _uniform(b, 1.25, self.max_down, g)
        for i in torch.nonzero(pick).flatten().tolist():
            small = max(8, round(s / float(down[i])))
            lo = F.interpolate(x[i:i + 1], size=(small, small), mode="area")
            x[i:i + 1] = F.interpolate(lo, size=(s, s), mode="bilinear", align_corners=False)
        x = x.clamp(0, 1)
        pick = chosen("jpeg")
        quality = torch.randint(self.jpeg_quality[0], self.jpeg_quality[1] + 1, (b,), generator=g)
        if pick.any():
            x[pick] = jpeg(x[pick], quality[pick])
        pick = chosen("noise")
        sigma = _uniform(b, 0.0, self.noise_std, g)
        noise = torch.randn(x.shape, generator=g)
        if pick.any():
            x[pick] = x[pick] + noise[pick] * sigma[pick].view(-1, 1, 1, 1)
        return x.clamp(0, 1)


@dataclass
class LookSwap:
    """Render training scans in the intensity *look* of another source (`--look-swap P`).

    Inside the Kaggle collection, source and class are tied (brainmri.protocols): every
    no-tumour scan comes from the non-figshare sources, whose heads are brighter, so a model can
    learn the look instead of the anatomy. With probability `p` a crop's in-head landmarks are
    mapped (`brainmri.intensity.match_landmarks`) onto those of a random training crop from
    another source; anatomy and the order of tissues are kept.

    `marks`: (N, len(LANDMARKS)) landmarks of 1 of every training crop (NaN where no head);
    `sources`: (N,) each crop's source. `__call__(crop, i, rng)`: uint8 crop of training
    picture i -> the crop, swapped or not (`force` always swaps, when another source exists).
    """
    marks: np.ndarray
    sources: np.ndarray
    p: float = 0.5

    @classmethod
    def fit(cls, crops: np.ndarray, sources, p: float = 0.5) -> "LookSwap":
        rows = []
        for crop in crops:
            m = landmarks(np.asarray(crop))
            rows.append(m / 255.0 if m is not None else np.full(5, np.nan))
        return cls(np.array(rows), np.asarray(sources), p)

    def __call__(self, crop: np.ndarray, i: int, rng: np.random.Generator,
                 force: bool = False) -> np.ndarray:
        draw = rng.random()                          # drawn every time: the stream is stable
        if not force and draw >= self.p:
            return crop
        return self.render(crop, self.sources[i], rng)

    def render(self, crop: np.ndarray, source, rng: np.random.Generator) -> np.ndarray:
        """`crop` (of `source`) in the look of a random training crop from another source; as
        it is when there is none."""
        others = np.flatnonzero((self.sources != source) & np.isfinite(self.marks[:, 0]))
        if not len(others):
            return crop
        return match_landmarks(crop, self.marks[int(rng.choice(others))])


def consistency_loss(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between the answers to two views of the same scans (rows),
    averaged over rows: 0 when the answers are identical, at most log 2."""
    pa, pb = F.softmax(logits_a.float(), 1), F.softmax(logits_b.float(), 1)
    mean = (0.5 * (pa + pb)).clamp_min(1e-12).log()
    return 0.5 * (F.kl_div(mean, pa, reduction="batchmean") + F.kl_div(mean, pb, reduction="batchmean"))


class MixStyle:
    """Mix the feature *style* of scans within a training batch (`--mixstyle P`).

    MixStyle (Zhou et al., "Domain generalization with MixStyle", ICLR 2021): after the chosen
    trunk blocks, each scan's channel means and standard deviations (its style: intensity,
    contrast, texture energy) are replaced, with probability `p` per batch and block, by a
    mix `lam * own + (1 - lam) * another scan's`, `lam ~ Beta(alpha, alpha)`, the other scan a
    random one of the batch. Inside the Kaggle collection the style of the early features
    carries the source, and the source the class; mixed across the batch, a figshare tumour
    is also seen with a no-tumour scan's statistics and the other way round. No parameters:
    the checkpoint and inference are unchanged (the hooks fire only while the model trains).
    Randomness comes from `seed` alone. `__call__(x)`: (B, C, H, W) -> the same shape and dtype.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.1, seed: int = 0, eps: float = 1e-6):
        self.p, self.alpha, self.eps = p, alpha, eps
        self.rng = np.random.default_rng([seed, 23])
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        draw = self.rng.random()                     # drawn every time: the stream is stable
        if draw >= self.p or len(x) < 2:
            return x
        xf = x.float()
        mu = xf.mean((2, 3), keepdim=True).detach()
        sig = (xf.var((2, 3), keepdim=True) + self.eps).sqrt().detach()
        lam = torch.as_tensor(self.rng.beta(self.alpha, self.alpha, (len(x), 1, 1, 1)),
                              dtype=torch.float32, device=x.device)
        perm = torch.randperm(len(x), generator=self.gen).to(x.device)
        mixed = ((xf - mu) / sig * (lam * sig + (1 - lam) * sig[perm])
                 + lam * mu + (1 - lam) * mu[perm])
        return mixed.to(x.dtype)

    def attach(self, model: torch.nn.Module, blocks) -> list:
        """Mix after each of `model.trunk[i]`, i in `blocks`, while `model` trains (frozen
        blocks kept in eval mode still mix); returns the hook handles."""
        def hook(_module, _inputs, out):
            return self(out) if model.training else out
        return [model.trunk[i].register_forward_hook(hook) for i in blocks]


def mixstyle_blocks(stages, count: int = 2) -> list[int]:
    """Trunk indices after which MixStyle mixes: the last block of each of the first `count`
    stages after the stem (the shallow features, where style lives)."""
    names = [s for s in dict.fromkeys(stages) if s != "stem"][:count]
    return [max(i for i, s in enumerate(stages) if s == name) for name in names]


# Named settings for `python -m train --acquisition 1 --acquisition-kind NAME`. "wide" draws
# contrast and export changes more often and further (half the scans inverted inside the
# head), so that intensity and export carry less of the source than in "standard".
ACQUISITIONS = {
    "standard": Acquisition(),
    "wide": Acquisition(p_curve=0.8, p_gamma=0.5, gamma=0.8, p_invert=0.5, p_bias=0.5,
                        p_resample=0.5, p_jpeg=0.5, p_noise=0.5),
}


def figure(crops: list[np.ndarray], out: Path, seed: int = 0, size: int = 192) -> Path:
    """A grid: one row per scan, the original then each transform alone (seeded)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aug = Acquisition()
    cols = ("original",) + TRANSFORMS
    fig, axes = plt.subplots(len(crops), len(cols), figsize=(1.6 * len(cols), 1.7 * len(crops)))
    axes = np.atleast_2d(axes)
    for r, crop in enumerate(crops):
        x = torch.from_numpy(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)).float()[None, None] / 255
        for c, name in enumerate(cols):
            g = torch.Generator().manual_seed(seed + r)
            img = x if name == "original" else aug(x, g, only=name)
            axes[r, c].imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(name, fontsize=9)
    fig.suptitle("train.augment.Acquisition: each transform alone (python -m train.augment)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=60)
    plt.close(fig)
    return out


def main(argv=None) -> Path:
    from brainmri.classes import CLASSES
    from brainmri.io import load_image, to_grey
    from brainmri.presets import EvalPreset
    from brainmri.protocols import build_splits

    p = argparse.ArgumentParser(description="Figure of each acquisition transform on validation scans.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/figures/augment.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    val = build_splits(args.data).val
    preset = EvalPreset()
    picks = [next(s for s in val if s.class_name == c) for c in CLASSES]
    crops = [preset.crop(to_grey(load_image(s.path)))[0] for s in picks]
    return figure(crops, args.out, args.seed)


if __name__ == "__main__":
    print(main())
