"""A one-page PDF report of one finding: scan, overlay, probabilities, model and method,
outcome, date and the disclaimer. A refusal's report names no class and charts no
probabilities (a `Result` for it holds none). Matplotlib's object API only (no pyplot, no UI).

    from brainmri.service import Service
    from brainmri.report import write_report
    svc = Service.from_folder("checkpoints")
    write_report(svc.classify("scan.jpg", "resnet50"), "finding.pdf", source="scan.jpg")

    python -m brainmri classify scans/ --report reports/        # one PDF per readable scan
"""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_pdf import FigureCanvasPdf
from matplotlib.figure import Figure

from .cam import CLASS_AGNOSTIC, LABELS
from .classes import class_label
from .io import ImageLoadError, describe
from .models import MODEL_LABELS
from .outcomes import Outcome
from .service import Result
from .texts import DISCLAIMER, REFUSED, percent

A4 = (8.27, 11.69)                                   # inches, portrait
FOOTER_TOP = 0.08      # figure fraction: the small print's last line sits above the disclaimer
LINE, GAP = 0.015, 0.004                              # the small print's line and paragraph steps
COLOURS = {Outcome.CONFIDENT: "#1b7837", Outcome.CAUTION: "#b35806", Outcome.NOT_MRI: "#b2182b"}


def source_name(path, frame: int | None = None) -> str:
    """A scan's file as a report names it: its name, and for a file of several slices or pages
    the one read (`frame`; None: the file's default, as `load_image` reads it), e.g.
    "head.nii.gz, slice 12 (24 in all)"; "" when `path` is not a path."""
    if not isinstance(path, (str, Path)):
        return ""
    name = Path(path).name
    try:
        info = describe(path)
    except ImageLoadError:
        return name
    if info.frames <= 1:
        return name
    return f"{name}, slice {info.default if frame is None else frame} ({info.frames} in all)"


def _title(result: Result) -> str:
    if result.label is None:
        return REFUSED
    return f"{class_label(result.label)} — {percent(result.probabilities[result.label])}"


def report_figure(result: Result, *, source: str = "", when: dt.datetime | None = None,
                  model_name: str = "") -> Figure:
    """The report page as a matplotlib Figure (A4 portrait). `source`: the scan's file name as
    the user knows it; `when`: the time stated on the page (default: now, UTC); `model_name`:
    the checkpoint's own name, printed beside the model."""
    when = when or dt.datetime.now(dt.timezone.utc)
    fig = Figure(figsize=A4)
    word, colour = result.outcome.words, COLOURS[result.outcome]
    fig.text(0.06, 0.955, "brainmri — report of one finding", fontsize=16, weight="bold")
    fig.text(0.06, 0.93, f"{when:%Y-%m-%d %H:%M %Z}" + (f" · scan: {source}" if source else ""),
             fontsize=9, color="#444444")
    fig.text(0.06, 0.895, f"{word}: ", fontsize=12, color=colour, weight="bold")
    fig.text(0.06, 0.870, _title(result), fontsize=15, weight="bold")
    y = 0.850
    for reason in result.reasons:
        for line in textwrap.wrap(f"• {reason.text}", 100):
            fig.text(0.07, y, line, fontsize=9)
            y -= 0.016

    top = min(y - 0.01, 0.82)
    lines = [textwrap.wrap(text, 105) for text in _details(result, model_name)]
    # The details end above the footer; the pictures and bars shrink (scale) when the
    # reasons above them take the room.
    details_top = FOOTER_TOP + LINE * (sum(map(len, lines)) - 1) + GAP * (len(lines) - 1)
    scale = min(1.0, (top - details_top) / 0.63)
    for i, (image, title) in enumerate(((np.repeat(result.grey[:, :, None], 3, 2), "Scan (as the model reads it)"),
                                        (result.overlay, "Heatmap on the scan" if result.is_mri
                                         else "No heatmap: not a finding"))):
        ax = fig.add_axes((0.06 + i * 0.46, top - 0.36 * scale, 0.42, 0.34 * scale))
        ax.imshow(image, interpolation="bilinear")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():          # a thin frame: a white scan still shows
            spine.set_color("#bbbbbb"), spine.set_linewidth(0.6)

    if result.probabilities:
        ax = fig.add_axes((0.30, top - 0.58 * scale, 0.50, 0.16 * scale))
        ranked = sorted(result.probabilities.items(), key=lambda kv: kv[1])
        values = [v for _, v in ranked]
        ax.barh([class_label(c) for c, _ in ranked], values, color="#4a6fa5")
        for j, v in enumerate(values):
            ax.text(min(v, 1.0) + 0.01, j, percent(v), va="center", fontsize=9)
        ax.set_xlim(0, 1.18)
        ax.set_xticks([0, 0.5, 1.0], ["0", "0.5", "1"])
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title("Probabilities", fontsize=10)
    else:
        fig.text(0.06, top - 0.45 * scale, "No probabilities: the input was refused, so they would not "
                 "be a finding.", fontsize=10)

    y = top - 0.63 * scale
    for wrapped in lines:
        for line in wrapped:
            fig.text(0.06, y, line, fontsize=8.5)
            y -= LINE
        y -= GAP
    fig.text(0.06, 0.055, DISCLAIMER, fontsize=10, weight="bold", color="#b2182b")
    fig.text(0.06, 0.037, "It is a statistical guess about one 2-D slice and must never inform "
             "the care of a person.", fontsize=9, color="#b2182b")
    return fig


def _details(result: Result, model_name: str) -> list[str]:
    """The report's small print under the pictures: model, explanation, outcome, scope."""
    if result.target is None:
        explained = ("Explanation: none; a refused input has no finding to explain.")
    else:
        about = ("the same map for every class" if result.method in CLASS_AGNOSTIC else
                 f"explaining {class_label(result.target)}")
        explained = (f"Explanation: {LABELS.get(result.method, result.method)}, {about}; a class "
                     "activation map shows which regions moved the score, at coarse resolution, "
                     "and can highlight a shortcut as confidently as a tumour.")
    return [f"Model: {MODEL_LABELS.get(result.model, result.model)}"
            + (f" (checkpoint {model_name})" if model_name else ""),
            explained,
            f"Outcome: {result.outcome.value}. Model time: {result.time_ms:.0f} ms.",
            (f"Classes: {', '.join(class_label(c) for c in result.probabilities)}; t" if
             result.probabilities else "T") + "rained on the public Kaggle Brain Tumor MRI "
            "Dataset (2-D slices). Other diseases, body parts and imaging types are out of scope."]


def write_report(result: Result, path: str | Path, **kwargs) -> Path:
    """Write `report_figure(result, **kwargs)` as a one-page PDF at `path`; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = report_figure(result, **kwargs)
    FigureCanvasPdf(fig).print_pdf(str(path))
    return path


# ----------------------------------------------------------------------------- whole scans
CLASS_COLOURS = {"glioma": "#d95f02", "meningioma": "#7570b3", "notumor": "#1b9e77",
                 "pituitary": "#e7298a"}


def draw_strip(ax, probabilities: np.ndarray, classes, chosen: int | None = None) -> None:
    """The class probabilities along a scan's slices on a matplotlib Axes: one line per class
    over the slice index, grey bands where slices were not classified (NaN rows), the chosen
    slice marked. `probabilities`: (slices, classes) as `ScanResult.probabilities()`."""
    probs = np.asarray(probabilities, float)
    x = np.arange(len(probs))
    for j, c in enumerate(classes):
        ax.plot(x, probs[:, j], marker="o", markersize=2.5, linewidth=1.4,
                color=CLASS_COLOURS.get(c), label=class_label(c))
    for i in np.flatnonzero(np.isnan(probs).all(axis=1)):
        ax.axvspan(i - 0.5, i + 0.5, color="#dddddd", linewidth=0)
    if chosen is not None:
        ax.axvline(chosen, color="black", linestyle="--", linewidth=1)
        ax.annotate(f"slice {chosen}", (chosen, 1.02), ha="center", fontsize=8,
                    annotation_clip=False)
    ax.set_xlim(-0.5, max(len(probs) - 0.5, 0.5))
    ax.set_ylim(0, 1)
    ax.set_xlabel("slice (grey: outside the head, not classified)", fontsize=8)
    ax.set_ylabel("probability", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=7, ncols=len(classes), loc="upper center", bbox_to_anchor=(0.5, -0.22),
              frameon=False)


def strip_figure(probabilities: np.ndarray, classes, chosen: int | None = None,
                 size: tuple[float, float] = (8.0, 2.6)) -> Figure:
    """`draw_strip` alone on a figure of `size` inches (for the app)."""
    fig = Figure(figsize=size, layout="constrained")
    draw_strip(fig.add_subplot(), probabilities, classes, chosen)
    return fig


def scan_page(view, *, source: str = "", when: dt.datetime | None = None) -> Figure:
    """The report's page for a whole scan (`brainmri.scanview.ScanView`): the finding along
    the slices, the strip, what was not classified, the scan's notes."""
    when = when or dt.datetime.now(dt.timezone.utc)
    r, scan = view.result, view.scan
    fig = Figure(figsize=A4)
    fig.text(0.06, 0.955, "brainmri — the whole scan", fontsize=16, weight="bold")
    fig.text(0.06, 0.93, f"{when:%Y-%m-%d %H:%M %Z}" + (f" · scan: {source}" if source else ""),
             fontsize=9, color="#444444")
    lines = [f"{scan.source}" + (f", {scan.description}" if scan.description else "")
             + (f", {scan.plane}" if scan.plane else "") + f": {len(scan)} slices"
             + (f", {scan.spacing:.1f} mm apart" if np.isfinite(scan.spacing) else ""),
             f"Model: {MODEL_LABELS.get(view.model, view.model)}; every slice classified on its own."]
    for line in view.headline.splitlines():
        line = line.strip("#_ ").replace("**", "").replace("⚠ ", "")
        if line:
            lines.append(line)
    y = 0.90
    for text in lines:
        for line in textwrap.wrap(text, 100):
            fig.text(0.06, y, line, fontsize=9.5)
            y -= 0.018
    ax = fig.add_axes((0.09, y - 0.30, 0.84, 0.25))
    draw_strip(ax, r.probabilities(), r.classes, r.chosen)
    ax.set_title("Class probabilities along the slices", fontsize=10, pad=14)   # above the slice mark
    fig.text(0.06, 0.055, DISCLAIMER, fontsize=10, weight="bold", color="#b2182b")
    fig.text(0.06, 0.037, "Each slice is a statistical guess about one 2-D picture; the scan's "
             "summary must never inform the care of a person.", fontsize=9, color="#b2182b")
    return fig


def write_scan_report(view, path: str | Path, source: str = "", model_name: str = "",
                      when: dt.datetime | None = None) -> Path:
    """A two-page PDF for a whole scan: the chosen slice's report (`report_figure`), then the
    scan's page with the strip (`scan_page`). A scan with no classified slice: the scan's page only."""
    from matplotlib.backends.backend_pdf import PdfPages
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with PdfPages(str(path)) as pdf:
        if view.chosen is not None:
            slice_source = f"{source or view.scan.description}, slice {view.result.chosen}"
            pdf.savefig(report_figure(view.chosen, source=slice_source, when=when,
                                      model_name=model_name))
        pdf.savefig(scan_page(view, source=source, when=when))
    return path
