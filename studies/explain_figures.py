"""Tables and the heatmap grid for `studies.explain_eval`. Plotting and formatting only."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from brainmri import localisation as loc  # noqa: E402
from brainmri.cam import LABELS  # noqa: E402
from brainmri.multicam import explain_methods  # noqa: E402
from brainmri.overlay import blend  # noqa: E402


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


def markdown_tables(report: dict) -> str:
    """Markdown: per model and method, localisation, shortcut and faithfulness; then per class."""
    lines = [f"Pointing game (PG, %): heatmap maximum inside the tumour box grown by "
             f"{report['tolerance']:.0%} of the image side; energy (%): heatmap mass inside the box; "
             f"outside head / border (%): mass outside the head mask / in the outer "
             f"{report['band']:.0%} band of the head crop; ROAD: (LeRF - MoRF)/2 of the softmax, "
             "higher = more faithful. `*` = default method chosen on validation.", ""]
    for name, res in report["models"].items():
        sp = res["splits"]
        default = res.get("default_cam", {}).get("method")
        tests = [s for s in ("clean", "official") if s in sp]
        head = ["method"] + [c for s in tests for c in (f"{s} PG", f"{s} energy")]
        head += ["val PG"] if "val" in sp else []
        short = "official" if "official" in sp else (tests or [None])[0]     # notumor scans too
        head += [f"outside head ({short})", f"border ({short})"] if short else []
        head += ["ROAD"] if "faithfulness" in res else []
        ns = ", ".join(f"{s}: {sp[s]['n_boxed']} boxed of {sp[s]['n']}, accuracy "
                       f"{_pct(sp[s]['accuracy'])}%" for s in sp)
        lines += [f"### {name} ({res['arch']}, {res['input_size']} px) - {ns}", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in [*report["methods"], "centre", "random"]:
            label = LABELS.get(m, f"null: {m}") + (" *" if m == default else "")
            row = [label]
            for s in tests:
                a = sp[s]["localisation"][m]["all"]
                row += [_pct(a["pointing"]), _pct(a["energy"])]
            if "val" in sp:
                row.append(_pct(sp["val"]["localisation"][m]["all"]["pointing"]))
            if short:
                sc = sp[short]["shortcut"][m]
                row += [_pct(sc["outside_head"]), _pct(sc["border"])]
            if "faithfulness" in res:
                row.append(_num(res["faithfulness"].get(m, {}).get("road_combined")))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        if default and tests:
            classes = sorted({c for t in tests for c in sp[t]["localisation"][default]["by_class"]})
            lines += [f"{name}, {LABELS[default]}, pointing game % (n) by class and by prediction:", "",
                      "| split | " + " | ".join(classes) + " | correct | incorrect |",
                      "|---|" + "---|" * (len(classes) + 2)]
            for s in tests:
                d = sp[s]["localisation"][default]
                rows = [d["by_class"].get(c, {"pointing": None, "n": 0}) for c in classes]
                rows += [d["correct"], d["incorrect"]]
                lines.append(f"| {s} | " + " | ".join(f"{_pct(v['pointing'])} ({v['n']})" for v in rows) + " |")
            lines.append("")
    return "\n".join(lines)


def _rows(samples, root: Path, boxes: dict, n: int, seed: int, box_for) -> list:
    """`n` boxed scans, cycling through the tumour classes, from a seeded order."""
    by_class: dict[str, list] = {}
    for i in np.random.default_rng(seed).permutation(len(samples)):
        s = samples[i]
        if box_for(s.path, root, boxes):
            by_class.setdefault(s.class_name, []).append(s)
    picked, k = [], 0
    while len(picked) < n and any(k < len(v) for v in by_class.values()):
        picked += [v[k] for v in by_class.values() if k < len(v)][: n - len(picked)]
        k += 1
    return picked


def plot_grid(predictor, samples, root: Path, boxes: dict, methods, args) -> Path | None:
    """Rows: scans (head crop, tumour box in green, heatmap maximum as a white cross);
    columns: methods. Saved as <out>/grid-<model name>.png."""
    from brainmri.boxes import box_for
    rows = _rows(samples, root, boxes, args.grid_rows, args.seed, box_for)
    if not rows:
        return None
    prepared = predictor.prepare([s.path for s in rows])
    maps = explain_methods(predictor, prepared, methods)
    fig, axes = plt.subplots(len(rows), len(methods), figsize=(1.5 * len(methods), 1.55 * len(rows)),
                             squeeze=False)
    for r, (s, p, mm) in enumerate(zip(rows, prepared, maps)):
        (bx0, by0, bx1, by1), _ = box_for(s.path, root, boxes)
        cx0, cy0, cx1, cy1 = p.box
        tol = round(args.tolerance * max(p.grey.shape))
        for c, m in enumerate(methods):
            ax = axes[r, c]
            heat = mm.heatmaps[m]
            ax.imshow(blend(p.grey, heat)[cy0:cy1, cx0:cx1])
            ax.add_patch(Rectangle((bx0 - cx0 - 0.5, by0 - cy0 - 0.5), bx1 - bx0, by1 - by0,
                                   fill=False, edgecolor="lime", linewidth=1))
            py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
            ax.plot(px - cx0, py - cy0, "w+", markersize=7, markeredgewidth=1.5)
            hit = loc.pointing_game(heat, (bx0, by0, bx1, by1), tol)
            ax.text(0.03, 0.97, "hit" if hit else "miss", transform=ax.transAxes, va="top",
                    fontsize=7, color="lime" if hit else "red")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(LABELS[m], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{s.class_name}\npred {mm.prediction.label}", fontsize=7)
    fig.suptitle(f"{predictor.name}: heatmap of the predicted class; green = tumour box", fontsize=9)
    fig.tight_layout()
    path = args.out / f"grid-{predictor.name}.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path
