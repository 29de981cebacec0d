"""After stage 11 (measured, decides nothing): are painted-out tumours still called their class
because a neighbouring slice of the same patient is in training? For each boxed `val` scan of
the shipped split: the nearest training scan of its class by the duplicate finder's 32 px
head-crop correlation (best of plain and mirrored, `brainmri.dedup`), and each shipped model's
answer with the tumour painted out as `studies.lesion_masked` paints it (grow 0.02).
    PYTHONPATH=. .venv/bin/python logs/baseline-stage11/neighbours.py ../shared/data [CKPT...]
(the checkpoints default to every shipped one in checkpoints/)
"""
import sys
from pathlib import Path

import numpy as np

from brainmri.boxes import box_for, load_boxes
from brainmri.dedup import compute_signatures
from brainmri.predictor import Predictor
from brainmri.protocols import kaggle_root, run_splits
from studies.lesion_masked import versions

BINS = [(0, .85), (.85, .90), (.90, .93), (.93, 1.01)]


def rows_for(checkpoint: str, data: str) -> list[dict]:
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    root = kaggle_root(data)
    boxes = load_boxes(root / "tumor_boxes.csv")
    splits = run_splits(data, predictor.meta.get("args", {}))
    train = list(splits.protocol("train"))
    val = [(s, box_for(s.path, root, boxes)) for s in splits.protocol("val")]
    val = [(s, b) for s, b in val if b is not None]
    t = compute_signatures([s.path for s in train]).thumbs[:, 0].astype(np.float32)
    v = compute_signatures([s.path for s, _ in val]).thumbs.astype(np.float32)
    r = np.maximum(v[:, 0] @ t.T, v[:, 1] @ t.T)
    train_class = np.array([s.class_name for s in train])
    rows = []
    for i, (s, (box, (w, h))) in enumerate(val):
        found = versions(s.path, box, 0.02)
        if found is None or found[0]["original"].shape != (h, w):
            continue
        out = predictor.predict_batch([found[0]["lesion out"]])[0]
        rows.append({"class": s.class_name, "out": out.label,
                     "r_same": float(r[i][train_class == s.class_name].max())})
    return rows


def main(data: str, checkpoints: list[str]) -> None:
    print("| model | class | nearest same-class training scan, r | n | tumour out, still called |")
    print("|---|---|---|---|---|")
    for checkpoint in checkpoints:
        name = Path(checkpoint).stem
        rows = rows_for(checkpoint, data)
        for c in ("glioma", "meningioma", "pituitary"):
            for lo, hi in BINS:
                chosen = [x for x in rows if x["class"] == c and lo <= x["r_same"] < hi]
                if chosen:
                    still = 100 * np.mean([x["out"] == c for x in chosen])
                    print(f"| {name} | {c} | {lo:.2f}-{min(hi, 1):.2f} | {len(chosen)} | {still:.1f}% |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data",
         sys.argv[2:] or [str(p) for p in sorted(Path("checkpoints").glob("*.safetensors"))])
