"""Which trunk blocks should Layer-CAM fuse? Pointing game per set of blocks, on validation only.

    python -m studies.cam_layers checkpoints/resnet50.safetensors --data ../shared/data \\
        --sets 7 5 5+7 6+7 5+6 5+6+7 4+5+6+7 4+5+7 4+5 --out runs/cam_layers.json

Sets are '+'-joined trunk indices (ResNet-50: 4..7 = layer1..layer4; the baseline: 0..2).
Each scan's predicted class is explained by pytorch-grad-cam's Layer-CAM math on every block
of every set from one forward and one input-gradient backward (no hooks), the finer blocks'
lattice gradients spread as in `brainmri.cam.spread_lattice`; a set's map is the library's
mean of its blocks' maps. Scored like `studies.explain_eval` (pointing game with the same
tolerance, energy in the box, mass outside the head) on the checkpoint's own validation
scans with tumour boxes. This is how the pair of `layercamfused` was chosen; Testing is never
read.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam.utils.image import scale_cam_image

from brainmri import cam as cams
from brainmri.boxes import box_for, boxes_csv, load_boxes
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, kaggle_root, run_splits

from .explain_eval import measure_scan

log = logging.getLogger("cam_layers")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Validation pointing game of Layer-CAM per set of trunk blocks.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--sets", nargs="+", required=True, help="'+'-joined trunk indices, e.g. 7 5+7")
    p.add_argument("--versus", default=None,
                   help="a class name: contrastive maps, the predicted class's logit minus this "
                        "class's (scans predicted as it keep the plain map)")
    p.add_argument("--blur", type=float, nargs="+", default=[0.0],
                   help="also score each set's map blurred by a Gaussian of std B x the side "
                        "(brainmri.cam.smooth_maps); 0: as it is")
    p.add_argument("--halves", action="store_true",
                   help="also print the tables for half A (even positions in path order) and "
                        "half B (odd) of the scans: choose on one, confirm on the other")
    p.add_argument("--tolerance", type=float, default=0.02)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=0, help="at most N boxed validation scans (0: all)")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p


def block_maps(predictor: Predictor, batch: torch.Tensor, blocks: list[int],
               versus: int | None = None) -> dict[int, np.ndarray]:
    """{trunk index: (B, S, S) Layer-CAM of the predicted class (against class `versus`, if
    given), scaled like the library}."""
    x = batch.to(predictor.device).contiguous(memory_format=torch.channels_last)
    return cams.layercam_blocks(predictor.model, x, blocks, lambda logits: logits.argmax(1).tolist(),
                                versus=versus)[3]


def summarise(rows: list[tuple[int, str, bool, float, float]]) -> dict:
    """(position, class, hit, energy, outside head) per scan -> means overall and by class."""
    classes = sorted({r[1] for r in rows})
    return {"n": len(rows), "pointing": float(np.mean([r[2] for r in rows])),
            "energy": float(np.mean([r[3] for r in rows])),
            "outside_head": float(np.mean([r[4] for r in rows])),
            "by_class": {c: float(np.mean([r[2] for r in rows if r[1] == c])) for c in classes}}


def print_table(result: dict) -> None:
    classes = sorted({c for r in result.values() for c in r["by_class"]})
    print("| blocks | n | val PG | energy | outside head | " + " | ".join(classes) + " |")
    print("|---|---|---|---|---|" + "---|" * len(classes))
    for name, r in result.items():
        print(f"| {name} | {r['n']} | {100 * r['pointing']:.1f} | {100 * r['energy']:.1f} | "
              f"{100 * r['outside_head']:.1f} | "
              + " | ".join(f"{100 * r['by_class'].get(c, float('nan')):.1f}" for c in classes) + " |")


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sets = {s: [int(i) for i in s.split("+")] for s in args.sets}
    if any(b < 0 for b in args.blur):
        raise SystemExit(f"--blur: values must be >= 0; got {args.blur}")
    rows_of = {(s if b == 0 else f"{s} blur {b:g}"): (s, b) for s in sets for b in args.blur}
    predictor = Predictor.from_checkpoint(args.checkpoint, device="cpu", checked=False)
    depth = len(predictor.model.trunk)
    bad = [s for s, idx in sets.items() if not all(0 <= i < depth for i in idx)]
    if bad:
        raise SystemExit(f"--sets: trunk indices run 0..{depth - 1}; got {bad}")
    if args.versus is not None and args.versus not in predictor.classes:
        raise SystemExit(f"--versus: {args.versus!r} is not one of {', '.join(predictor.classes)}")
    versus = None if args.versus is None else predictor.classes.index(args.versus)
    root = kaggle_root(args.data)
    boxes = load_boxes(boxes_csv(root))
    train_args = predictor.meta.get("args", {})
    splits = run_splits(args.data, train_args, cache_dir=args.cache_dir)
    val = [s for s in splits.protocol("val") if box_for(s.path, root, boxes)]
    val = val[:args.limit] if args.limit > 0 else val
    blocks = sorted({i for idx in sets.values() for i in idx})
    scores: dict[str, list[tuple[int, str, bool, float, float]]] = {r: [] for r in rows_of}
    for start in range(0, len(val), args.batch_size):
        chunk = val[start:start + args.batch_size]
        prepared = predictor.prepare([s.path for s in chunk])
        maps = block_maps(predictor, torch.stack([p.tensor for p in prepared]), blocks, versus)
        found = [box_for(s.path, root, boxes) for s in chunk]
        for name, (set_name, blur) in rows_of.items():
            fused = cams.smooth_maps(scale_cam_image(np.mean([maps[i] for i in sets[set_name]], axis=0)), blur)
            for i, (s, p, (box, (w, h))) in enumerate(zip(chunk, prepared, found)):
                if (h, w) != p.grey.shape:
                    continue
                m = measure_scan(p.grey, p.box, {"x": fused[i]}, box, s.path.name, 0, args.tolerance, 0.05)["x"]
                scores[name].append((start + i, s.class_name, m["pointing"], m["energy"], m["outside_head"]))
        log.info("  %d/%d validation scans", min(start + args.batch_size, len(val)), len(val))
    result = {name: summarise(rows) for name, rows in scores.items()}
    print_table(result)
    if args.halves:
        for half, parity in (("A", 0), ("B", 1)):
            result_half = {name: summarise([r for r in rows if r[0] % 2 == parity])
                           for name, rows in scores.items()}
            print(f"\nhalf {half} ({'even' if parity == 0 else 'odd'} positions):")
            print_table(result_half)
            for name in result:
                result[name][f"half_{half}"] = result_half[name]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "split": "val",
                                        "tolerance": args.tolerance, "versus": args.versus, "blur": args.blur,
                                        "sets": result}, indent=1))
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
