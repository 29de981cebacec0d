"""Print the README results table from evaluation metrics files (never typed by hand).

    python scripts/results_table.py runs/eval/metrics.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

STUDY = {"baseline": "86.84% (study's own split)", "resnet50": "95.10% (Roboflow set)"}
PROTOCOLS = ("val", "official", "clean", "roboflow")


def main(path: str) -> None:
    results = json.loads(Path(path).read_text())
    head = "| model | " + " | ".join(f"{p} acc / macro-F1" for p in PROTOCOLS) + \
           " | clean ROC-AUC | clean ECE (raw -> calibrated) | the study |"
    print(head)
    print("|" + "---|" * (len(PROTOCOLS) + 4))
    for r in results:
        cells = []
        for p in PROTOCOLS:
            m = r["protocols"].get(p)
            cells.append(f"{m['accuracy']:.2%} / {m['macro_f1']:.3f} (n={m['n']})" if m else "-")
        c = r["protocols"].get("clean", {})
        ece = f"{c['ece_uncalibrated']:.3f} -> {c['ece_calibrated']:.3f}" if c else "-"
        auc = f"{c['roc_auc_ovr']:.4f}" if c else "-"
        print(f"| {r['model']} | " + " | ".join(cells) +
              f" | {auc} | {ece} | {STUDY.get(r['model'], '-')} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/eval/metrics.json")
