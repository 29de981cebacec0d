"""Print the README results table from evaluation metrics files (never typed by hand).

    python scripts/results_table.py runs/eval/metrics.json --lesion MODEL=JSON ...
    (README's Results section has the command with the shipped checkpoints' files)

`--lesion MODEL=JSON` adds, from `studies.lesion_masked`'s JSON, two validation columns: how often
a scan with its tumour painted out is still called that tumour (glioma / meningioma / pituitary),
and how often painting out a control box of the same size leaves the answer unchanged.
`--loso MODEL=JSON[,JSON...]` adds, from `studies.generalisation`'s JSON of leave-one-source-out
runs of that model's recipe, the held-out scans' recall, each run's held-out part named, and
the share of its confident answers that are right.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train.recipes import STUDY_REPORTED  # noqa: E402
PROTOCOLS = ("val", "official", "clean", "roboflow")
TUMOURS = ("glioma", "meningioma", "pituitary")


def lesion_cells(path: Path | None, split: str = "val") -> list[str]:
    """[tumour out still called, g / m / p in %; control out unchanged, %] or dashes."""
    if path is None:
        return ["-", "-"]
    classes = json.loads(path.read_text())["splits"][split]["classes"]
    still = " / ".join(f"{100 * classes[c]['lesion out']['accuracy']:.0f}" for c in TUMOURS)
    unchanged = classes["all"].get("control_unchanged")
    return [f"{still}%", "-" if unchanged is None else f"{100 * unchanged:.1f}%"]


def loso_cells(paths: list[Path] | None) -> list[str]:
    """[held-out recall per run, as "classes from source: recall% (confident right%)"] or a dash."""
    if not paths:
        return ["-"]
    parts = []
    for path in paths:
        r = json.loads(path.read_text())
        s = r["sets"]["loso"]
        held = f"{r.get('holdout_classes') or 'all'} from {r['holdout_source']}"
        parts.append(f"{held}: {s['accuracy']:.1%} ({s['confident']['right']:.1%})")
    return ["; ".join(parts)]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("metrics", nargs="?", default="runs/eval/metrics.json")
    p.add_argument("--lesion", action="append", default=[], metavar="MODEL=JSON")
    p.add_argument("--loso", action="append", default=[], metavar="MODEL=JSON[,JSON...]")
    args = p.parse_args(argv)
    lesion = {k: Path(v) for k, v in (item.split("=", 1) for item in args.lesion)}
    loso = {k: [Path(x) for x in v.split(",")] for k, v in (item.split("=", 1) for item in args.loso)}
    results = json.loads(Path(args.metrics).read_text())
    extra = " | val: tumour out, still called (gl / me / pi) | val: control out, unchanged" if lesion else ""
    extra += " | leave one source out: held-out recall (confident right)" if loso else ""
    head = "| model | " + " | ".join(f"{p} acc / macro-F1" for p in PROTOCOLS) + \
           " | clean ROC-AUC | clean ECE (raw -> calibrated)" + extra + " | the study |"
    print(head)
    print("|" + "---|" * (len(PROTOCOLS) + 4 + (2 if lesion else 0) + (1 if loso else 0)))
    for r in results:
        cells = []
        for proto in PROTOCOLS:
            m = r["protocols"].get(proto)
            cells.append(f"{m['accuracy']:.2%} / {m['macro_f1']:.3f} (n={m['n']})" if m else "-")
        c = r["protocols"].get("clean", {})
        ece = f"{c['ece_uncalibrated']:.3f} -> {c['ece_calibrated']:.3f}" if c else "-"
        auc = f"{c['roc_auc_ovr']:.4f}" if c else "-"
        cells += [auc, ece] + (lesion_cells(lesion.get(r["model"])) if lesion else [])
        cells += loso_cells(loso.get(r["model"])) if loso else []
        print(f"| {r['model']} | " + " | ".join(cells) + f" | {STUDY_REPORTED.get(r['model'], '-')} |")


if __name__ == "__main__":
    main()
