"""How far a GPU's faster number formats move predictions and heatmaps (a measurement, not a test).

    python -m benchmarks.precision --checkpoint checkpoints/resnet50.safetensors \\
        --images DIR --device cuda --out precision.json

Every scan is explained (batch 1, as a click in the app) with every hook-free method three ways:
float32 with TF32 off (the strict reference), float32 with TF32 on for convolutions and
matrix products (PyTorch's default turns it on for cuDNN convolutions only, so this is the
looser of the two) and bfloat16 autocast (`Predictor(precision="bf16")`). Against the strict
way it reports, per method: predictions that change, the largest change of a calibrated
probability, each scan's largest heatmap difference (median, 95th percentile, max) and how
often the heatmap's peak moves by more than 5% of the image side. It also checks the strict
fast path against pytorch-grad-cam's hooked path on the same device, and times `explain` of a prepared scan each way.
The rule that turns these figures into the GPU default is in docs/gpu.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from brainmri import cam as cams
from brainmri.models import default_model
from brainmri.predictor import Predictor

from .context import scan_files
from .timing import interleaved, machine

METHODS = cams.FAST_METHODS + cams.FUSED_METHODS
WAYS = ("fp32", "tf32", "bf16")


@contextmanager
def tf32(allowed: bool):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def explain_way(ps: dict[str, Predictor], way: str, prepared, method: str):
    with tf32(way != "fp32"):
        return ps["bf16" if way == "bf16" else "fp32"].explain_batch(prepared=[prepared], method=method)[0]


def peak(heat: np.ndarray) -> np.ndarray:
    return np.array(np.unravel_index(int(np.argmax(heat)), heat.shape), float)


def compare(ref, other) -> dict:
    side = max(ref.heatmap.shape)
    return {"label_changed": ref.prediction.label != other.prediction.label,
            "dprob": max(abs(ref.prediction.probabilities[k] - other.prediction.probabilities[k])
                         for k in ref.prediction.probabilities),
            "heat_max": float(np.abs(ref.heatmap - other.heatmap).max()),
            "heat_mean": float(np.abs(ref.heatmap - other.heatmap).mean()),
            "peak_moved": float(np.linalg.norm(peak(ref.heatmap) - peak(other.heatmap)) / side) > 0.05}


def summarise(rows: list[dict]) -> dict:
    heat = [r["heat_max"] for r in rows]
    return {"scans": len(rows), "labels_changed": sum(r["label_changed"] for r in rows),
            "max_dprob": max(r["dprob"] for r in rows),
            "heat_max_median": statistics.median(heat), "heat_max_p95": float(np.percentile(heat, 95)),
            "heat_max_max": max(heat), "heat_mean_median": statistics.median(r["heat_mean"] for r in rows),
            "peaks_moved": sum(r["peak_moved"] for r in rows)}


def library_check(p: Predictor, prepared, count: int) -> dict[str, float]:
    """Strict float32: largest |fast - pytorch-grad-cam| per one-pass method over `count` scans."""
    x = torch.stack([q.tensor for q in prepared[:count]]).to(p.device)
    out = {}
    with tf32(False):
        logits, acts = p.logits_and_features(x)
        targets = logits.argmax(1).tolist()
        _, grads = p.classify(acts, targets)
        for method in cams.FAST_METHODS:
            fast = cams.cam_from_activations(method, acts, grads, x.shape[-2:])
            out[method] = float(np.abs(fast - cams.reference_cam(p.model, method, x, targets)).max())
    p.model.zero_grad(set_to_none=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=f"checkpoints/{default_model()}.safetensors")
    parser.add_argument("--images", required=True, help="folder of scans (validation scans)")
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=20, help="timed clicks per way")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    ps = {w: Predictor.from_checkpoint(args.checkpoint, args.device, precision=w, checked=False) for w in ("fp32", "bf16")}
    files, source = scan_files(args.images, args.count)
    prepared = ps["fp32"].prepare(files)
    result = {"machine": machine(), "checkpoint": args.checkpoint, "images": source,
              "default_method": ps["fp32"].default_method, "methods": {}}
    for method in METHODS:
        rows: dict[str, list[dict]] = {w: [] for w in WAYS[1:]}
        for q in prepared:
            ref = explain_way(ps, "fp32", q, method)
            for way in WAYS[1:]:
                rows[way].append(compare(ref, explain_way(ps, way, q, method)))
        result["methods"][method] = {way: summarise(r) for way, r in rows.items()}
        print(method, json.dumps(result["methods"][method]), flush=True)
    result["library_max_abs_diff_fp32"] = library_check(ps["fp32"], prepared, 16)
    default = cams.canonical_method(ps["fp32"].default_method)
    clicks = {f"{way}-{m}": (lambda i, w=way, m=m: explain_way(ps, w, prepared[i % len(prepared)], m))
              for way in WAYS for m in dict.fromkeys(["gradcam", default])}
    times = interleaved(clicks, args.repeats, 3, args.device)
    result["explain_prepared_ms_median"] = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({k: result[k] for k in ("library_max_abs_diff_fp32", "explain_prepared_ms_median")}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
