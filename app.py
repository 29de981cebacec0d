"""Gradio app: classify a brain MRI slice, explain it with a class activation map, compare models.

    python app.py                                   # http://127.0.0.1:7860, checkpoints/
    python app.py --checkpoints DIR --examples ../shared/data/brain-tumor-mri/Testing --port 7861

Research and education only; not a medical device. The handlers live in `brainmri.service`;
this file only lays out components and wires them (the public API endpoints are listed in
docs/app.md; the page's own events are private). Safe to import: nothing loads until
`build_demo` or `main` runs.
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace


def cap_malloc_arenas(arenas: int = 2) -> None:
    """Restart this process with MALLOC_ARENA_MAX=`arenas` unless it is set (glibc only).

    Gradio runs handlers on a pool of threads; glibc gives each busy thread its own heap
    ("arena", up to 8 per core), and images freed in one stay mapped there: under
    benchmarks/load.py resident memory grows far less with two arenas, at the same throughput
    (docs/trust.md). The cap only holds when set before the interpreter starts (a later
    `mallopt` did not hold it), hence the exec.
    """
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)
    os.execv(sys.executable, sys.orig_argv)


if __name__ == "__main__":                  # before the heavy imports, so the exec is cheap
    cap_malloc_arenas()

import cv2  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from brainmri.batch import result_rows, write_csv  # noqa: E402
from brainmri.classes import UnknownClassError, canonical_class  # noqa: E402
from brainmri.io import ACCEPTED, ImageLoadError, describe  # noqa: E402
from brainmri.overlay import DEFAULT_ALPHA, upscale, with_colour_bar  # noqa: E402
from brainmri.report import source_name, strip_figure, write_report, write_scan_report  # noqa: E402
from brainmri.scans import Limits, SeriesChoice, is_archive, is_scan  # noqa: E402
from brainmri.scanmode import OUTSIDE  # noqa: E402
from brainmri.scanview import ScanView, compare_scan, view_scan, view_slice  # noqa: E402
from brainmri.models import MODEL_LABELS  # noqa: E402
from brainmri.service import PREDICTED, Service, class_label  # noqa: E402
from brainmri.texts import REFUSED, percent  # noqa: E402
from brainmri.volumes import ACQUIRED, AXES, axis_of  # noqa: E402

log = logging.getLogger("brainmri.app")
ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm"}
# The About tab's tables scroll sideways on a phone instead of breaking words and numbers (a
# Markdown table has no such option in Gradio), and say so there. The probability bars show
# `percent` in their names (never a rounded 100%), so gr.Label's own whole percent is hidden.
CSS = """
#card table { display: block; overflow-x: auto; }
#card th, #card td { white-space: nowrap; }
#card td:last-child { white-space: normal; min-width: 14em; }
.scroll-hint { display: none; }
@media (max-width: 700px) { .scroll-hint { display: block; } }
#bars dd.confidence, [id^=bars-] dd.confidence { display: none; }
.finding blockquote { border-left: 4px solid #b35806; background: #fff4e5; color: #6b3400;
  margin: 0.4em 0; padding: 0.3em 0.8em; }
"""
# On a phone the columns stack and the answer lands below the screen: bring it into view.
SHOW_ANSWER = ("() => { if (window.innerWidth < 768) document.getElementById('headline')"
               "?.scrollIntoView({block: 'start'}); }")
RECHECK_PROMPT = ("*Paints out the region where the heatmap is at least half its peak, fills it from "
                  "the tissue around it, and runs the model again (one more forward pass).*")
WAITING = "*Drop a scan, or click an example, to see the model's answer.*"
STATE_TTL_S = 3600          # a session's cached result (grey + heatmap, ~1 MB) is dropped after an hour
UPLOADED_SCAN = "a .zip of one DICOM series, a NIfTI volume or a multi-frame DICOM"   # whole scans here
NO_SLICE = -1               # the slice input's value for 2-D images: the file's default
HEATMAP_SIDE = 1024         # the .npy download's longer side at most (the map's detail is the model's grid)
DISPLAY_SIDE = 512          # smaller scans are enlarged for display
# Gradio refuses larger uploads before any handler runs (and the page keeps its last answer):
# the largest whole scan (.zip, NIfTI) that brainmri reads, as the command line does. Between
# MAX_BYTES and this, the handler refuses a single image from its size, with a message, and
# the page is cleared.
UPLOAD_CAP = Limits.upload_bytes

try:                                    # ZeroGPU on Hugging Face Spaces; a no-op elsewhere
    import spaces
    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn


class UserError(gr.Error):
    """A problem with the user's input: shown as one message, logged in one line."""

    def __init__(self, message: str):
        super().__init__(message, title="Cannot use this input", print_exception=False)


def user_errors(fn):
    """Errors reach the user as a readable `gr.Error`, never a stack trace or a server path;
    the server logs a user error in one line and anything else with its traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as error:
            log.info("%s: %s", fn.__name__, error.message)
            raise
        except (ImageLoadError, ValueError) as error:
            log.info("%s refused the input: %s", fn.__name__, error)
            raise UserError(str(error)) from None
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error("Something went wrong while processing this image; "
                           "the server log has the details.", print_exception=False) from None
    return wrapper


class Files:
    """Per-process folder for heatmaps and reports; old files are pruned, all removed at exit."""

    def __init__(self, keep_s: float = 3600):
        self.dir = Path(tempfile.mkdtemp(prefix="brainmri-app-"))
        self.keep_s = keep_s
        atexit.register(shutil.rmtree, self.dir, True)

    def new(self, name: str) -> Path:
        now = time.time()
        for old in self.dir.rglob("*"):
            if old.is_file() and now - old.stat().st_mtime > self.keep_s:
                old.unlink(missing_ok=True)
        folder = self.dir / uuid.uuid4().hex[:12]          # the file keeps a readable name
        folder.mkdir()
        return folder / name

    def save_heatmap(self, heatmap: np.ndarray) -> str:
        """float16 .npy of the map in [0, 1], at the scan's pixels, its longer side at most
        HEATMAP_SIDE; the shape is in the file name (the page shows the file's size)."""
        h, w = heatmap.shape
        if max(h, w) > HEATMAP_SIDE:
            scale = HEATMAP_SIDE / max(h, w)
            heatmap = cv2.resize(heatmap, (max(1, round(w * scale)), max(1, round(h * scale))),
                                 interpolation=cv2.INTER_AREA)
        path = self.new(f"heatmap-{heatmap.shape[0]}x{heatmap.shape[1]}-float16.npy")
        np.save(path, np.clip(heatmap, 0, 1).astype(np.float16))
        return str(path)


def display_pair(r) -> tuple[np.ndarray, np.ndarray]:
    """(scan, overlay) as RGB for the before/after slider, enlarged when small."""
    return upscale(np.repeat(r.grey[:, :, None], 3, 2), DISPLAY_SIDE), upscale(r.overlay, DISPLAY_SIDE)


def probability_bars(r) -> dict[str, float] | None:
    """gr.Label's value: probability by "<class name> <percent>", most probable first; None
    for a refused input (its probabilities are not a finding)."""
    if not r.is_mri or not r.probabilities:
        return None
    ranked = sorted(r.probabilities.items(), key=lambda kv: -kv[1])
    return {f"{class_label(c)} {percent(p)}": float(p) for c, p in ranked}


def example_captions(folder: Path) -> dict[str, str]:
    """File name -> "True class: Glioma · Kaggle Testing Te-gl_0079.jpg", from the table in
    `folder`/ATTRIBUTION.md (columns: file here, original `<class>/<file>`, ...); {} without one."""
    notes = folder / "ATTRIBUTION.md"
    if not notes.is_file():
        return {}
    captions = {}
    for line in notes.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or "/" not in cells[1]:
            continue
        try:
            label = class_label(canonical_class(cells[1].split("/")[0]))
        except UnknownClassError:
            continue
        captions[cells[0]] = f"True class: {label} · Kaggle Testing {cells[1].split('/')[-1]}"
    return captions


def pick_examples(folder: str | Path | None, per_class: int = 2,
                  limit: int = 8) -> list[tuple[Path, str]]:
    """(copy, caption) for a few images per class folder (Kaggle-style `<class>/<file>`) or
    from a flat folder; the caption says the true class and source (`example_captions`), else
    the class from the folder or a `<class>-...` file name, else the stem. Copied to a
    temporary folder so no operator path is ever served."""
    if not folder or not Path(folder).is_dir():
        return []
    folder = Path(folder)
    images = lambda d: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    def caption(name: str) -> str:
        try:
            return class_label(canonical_class(name))
        except UnknownClassError:
            return ""
    chosen = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if caption(sub.name):
            chosen += [(p, caption(sub.name)) for p in images(sub)[:per_class]]
    chosen = (chosen or [(p, caption(p.stem.split("-")[0])) for p in images(folder)])[:limit]
    if not chosen:
        return []
    noted = example_captions(folder)
    chosen = [(p, noted.get(p.name) or (f"True class: {c}" if c else p.stem)) for p, c in chosen]
    target = Path(tempfile.mkdtemp(prefix="brainmri-examples-"))
    atexit.register(shutil.rmtree, target, True)
    copies = []
    for i, (p, caption) in enumerate(chosen):           # the file name is the user's hint
        (target / f"{i:02d}").mkdir()
        copies.append((Path(shutil.copy2(p, target / f"{i:02d}" / p.name)), caption))
    return copies


def frame_of(slice_no) -> int | None:
    """The slice input's value as a frame number; None for a 2-D image (NO_SLICE)."""
    return None if slice_no is None or slice_no < 0 else int(slice_no)


def remember(r, target, scan=None, slice_no=NO_SLICE) -> dict:
    """A session's memory of its last one-slice result: the result, the class explained, and
    the file and slice it came from (for the report's source line)."""
    return {"result": r, "target": target, "file": scan, "slice_no": slice_no}


def slice_chooser(scan) -> tuple[gr.Slider, int]:
    """(the slice input, the slice to classify) for a file: a chooser over a volume's slices
    at its default one, hidden (NO_SLICE) for a 2-D image."""
    info = describe(scan)
    if info.frames > 1:
        return gr.Slider(minimum=0, maximum=info.frames - 1, value=info.default, step=1, visible=True,
                         label=f"Slice ({info.format}, {info.frames} in all)"), info.default
    return no_chooser()


def no_chooser() -> tuple[gr.Slider, int]:
    """The slice input hidden: a 2-D image, or a scan read whole."""
    return gr.Slider(visible=False, value=NO_SLICE, minimum=NO_SLICE), NO_SLICE


def api_slice() -> gr.Number:
    """An endpoint's slice input: any whole number, checked against the file by the library
    (the page's chooser has the bounds of the file on show, so it cannot serve the API)."""
    return gr.Number(NO_SLICE, precision=0, label="slice_no")


def adopt_example(scan):
    """After an example click: the example is the scan in use; the drop zone empties."""
    return None, scan, gr.Slider(visible=False, value=NO_SLICE, minimum=NO_SLICE), None


class Handlers:
    """Every event's handler, over one `service` and one `Files`; nothing here lays out a page.

    The GPU handlers are wrapped per instance, so ZeroGPU's `spaces.GPU` sees a bound method
    (the service travels with it, as with the closures this replaces), never as an argument.
    """
    GPU = ("classify", "classify_upload", "recheck", "compare")

    def __init__(self, service: Service, files: Files):
        self.service, self.files = service, files
        for name in self.GPU:
            setattr(self, name, gpu(getattr(self, name)))

    def outputs_of(self, r, target, scan=None, slice_no=NO_SLICE):
        figure = with_colour_bar(r.heatmap) if r.is_mri else None
        heat = self.files.save_heatmap(r.heatmap) if r.is_mri else None
        return (r.headline, probability_bars(r), display_pair(r), figure,
                heat, r.as_dict(), remember(r, target, scan, slice_no))

    def run_model(self, scan, model, method, target, alpha, slice_no):
        if scan is None:
            raise UserError("Drop a brain MRI slice first (or click an example).")
        if is_archive(scan):        # the page sends these to the scan handlers; the API can't
            raise UserError("This is a .zip archive: a whole scan, not one slice. The "
                            "classify_scan endpoint reads a .zip of one DICOM series.")
        return self.service.classify(scan, model, method, target, alpha, frame=frame_of(slice_no))

    @user_errors
    def classify(self, scan, model, method, target, alpha, slice_no=NO_SLICE, progress=gr.Progress()):
        """Classify one brain MRI slice and explain the answer with a heatmap. Gives the finding
        (markdown), the probabilities, the scan and the heatmap on it, the heatmap with its
        colour bar, the raw heatmap (.npy) and the result as data. Research and education
        only: not a diagnosis.

        Args:
            scan: the image file: JPEG, PNG, BMP, TIFF, WebP, DICOM or NIfTI.
            model: the key of a loaded model, e.g. "resnet50" (the model card lists them).
            method: the heatmap method, e.g. "gradcam".
            target: the class the heatmap explains, or "predicted".
            alpha: the heatmap's opacity on the scan, 0 to 1.
            slice_no: the slice of a volume (DICOM frame, NIfTI slice in the plane it was acquired in) or the page of a multi-page TIFF, from 0; -1: its default.
        """
        progress(0.1, desc=f"Running {MODEL_LABELS.get(model, model)}")
        return self.outputs_of(self.run_model(scan, model, method, target, alpha, slice_no), target,
                               scan, slice_no)

    @user_errors
    def classify_upload(self, scan, model, method, target, alpha, progress=gr.Progress()):
        """A dropped file becomes the scan in use (the drop zone empties, ready for the next);
        a volume offers its slices; then its default slice is classified."""
        if scan is None:
            return (gr.skip(),) * 10
        chooser, slice_no = slice_chooser(scan)
        progress(0.1, desc=f"Running {MODEL_LABELS.get(model, model)}")
        found = self.outputs_of(self.run_model(scan, model, method, target, alpha, slice_no), target,
                                scan, slice_no)
        return (None, scan, chooser, *found)

    def classify_example(self, _thumb, _caption, scan, model, method, target, alpha):
        return self.classify(scan, model, method, target, alpha)[:-1]      # no session state

    def remembered(self, cached, scan, model, method, target, alpha, slice_no):
        """The session's last result; recomputed from the scan when the session has none
        (an example answered from Gradio's cache, or an expired state)."""
        if cached and "result" in cached:
            return cached
        if scan is None:
            raise UserError("Classify a scan first.")
        return remember(self.run_model(scan, model, method, target, alpha, slice_no), target,
                        scan, slice_no)

    @user_errors
    def reblend(self, alpha, cached):
        if not cached or "result" not in cached:
            raise UserError("Classify a scan first: there is no heatmap in this session to re-blend.")
        r = cached["result"]
        return display_pair(r)[0], upscale(
            self.service.reblend(r.grey, r.heatmap, alpha if r.is_mri else 0.0), DISPLAY_SIDE)

    @user_errors
    def reblend_ui(self, alpha, cached, scan, model, method, target, slice_no):
        if scan is None:
            return gr.skip(), cached
        cached = self.remembered(cached, scan, model, method, target, alpha, slice_no)
        return self.reblend(alpha, cached), cached

    @user_errors
    def recheck(self, cached, alpha, scan=None, model=None, method=None, target=PREDICTED,
                slice_no=NO_SLICE):
        if (not cached or "result" not in cached) and scan is None:
            raise UserError("Classify a scan first: the check paints out the hot region of its heatmap.")
        cached = self.remembered(cached, scan, model, method, target, alpha, slice_no)
        r = cached["result"]
        if not r.is_mri:
            raise UserError(f"{REFUSED}: there is no finding to check.")
        c = self.service.recheck(r.grey, r.heatmap, r.model, r.probabilities, cached["target"],
                                 r.method, alpha)
        return c.summary, upscale(c.painted.overlay, DISPLAY_SIDE)

    @user_errors
    def report(self, cached, scan=None, model=None, method=None, target=PREDICTED, alpha=DEFAULT_ALPHA,
               slice_no=NO_SLICE):
        if (not cached or "result" not in cached) and scan is None:
            raise UserError("Classify a scan first: the report describes its finding.")
        cached = self.remembered(cached, scan, model, method, target, alpha, slice_no)
        r = cached["result"]
        meta = getattr(self.service.engines[r.model], "meta", {})
        path = self.files.new(f"brainmri-report-{time.strftime('%Y%m%d-%H%M%S')}.pdf")
        if isinstance(cached.get("scan"), ScanView):       # a whole scan: its slice, then its strip
            return str(write_scan_report(cached["scan"], path,
                                         source=Path(scan).name if isinstance(scan, str) else "",
                                         model_name=meta.get("name", "")))
        source = source_name(cached.get("file") or scan, frame_of(cached.get("slice_no", slice_no)))
        return str(write_report(r, path, source=source, model_name=meta.get("name", "")))

    @user_errors
    def compare(self, scan, method, slice_no=NO_SLICE, series=None, plane=None, progress=gr.Progress()):
        """Classify one brain MRI slice with every model and say whether they agree. Gives, per
        model, the finding (markdown), the probabilities and the heatmap on the scan; then one
        line on agreement. Research and education only: not a diagnosis.

        A whole scan (a .zip of one DICOM series, a NIfTI volume, a multi-frame DICOM) is
        read whole: each model's finding is the scan's, shown on its most probable slice, and
        the agreement is the scans' findings'.

        Args:
            scan: the image file: JPEG, PNG, BMP, TIFF, WebP, DICOM; or a whole scan.
            method: the heatmap method, e.g. "gradcam".
            slice_no: the page of a multi-page TIFF; -1: its default (a whole scan: ignored).
            series: for an archive of several series, the number or key of the one to read.
            plane: a volume's slices (`brainmri.volumes.PLANE_CHOICES`; None: as acquired).
        """
        if scan is None:
            raise UserError("Drop a brain MRI slice first (or classify one in the Classify tab).")
        if is_scan(scan):
            return self.compare_whole(scan, method, series, plane, progress)
        progress(0.1, desc="Running every model")
        c = self.service.compare(scan, method, frame=frame_of(slice_no))
        out = []
        for r in c.results.values():
            out += [r.headline, probability_bars(r), upscale(r.overlay, DISPLAY_SIDE)]
        return (*out, c.summary)

    def compare_whole(self, scan, method, series, plane, progress):
        """A whole scan on Compare: every model reads every slice (`brainmri.scanview.compare_scan`);
        per model the scan's finding and its chosen slice with bars and map; then the scan-level
        agreement. An archive of several series needs `series`, and a volume is cut in `plane`
        (both picked in Classify)."""
        def tick(model, done, total):
            progress(done / total, desc=f"{MODEL_LABELS.get(model, model)}: slice {done} of {total}")
        try:
            c = compare_scan(self.service, scan, method, series=series or None, axis=axis_of(plane),
                             progress=tick)
        except SeriesChoice as choice:
            raise UserError(f"This archive holds {len(choice.series)} series: Compare reads one "
                            "series. Drop it in the Classify tab, pick one there, then open Compare.") from None
        out = []
        for v in c.views.values():
            r = v.chosen
            if r is None:
                out += [v.headline, None, None]
            else:
                out += [f"{v.headline}\n\n---\n\n**Slice {v.result.chosen}:**\n\n{r.headline}",
                        probability_bars(r), upscale(r.overlay, DISPLAY_SIDE)]
        return (*out, c.summary)

    @user_errors
    def compare_upload(self, scan, method):
        """A file dropped on Compare: its slice chooser, then every model on its default slice."""
        if scan is None:
            return (gr.skip(),) * (3 * len(self.service.models) + 4)
        chooser, slice_no = no_chooser() if is_scan(scan) else slice_chooser(scan)
        return (None, chooser, *self.compare(scan, method, slice_no), (scan, method, slice_no, None, None))

    @user_errors
    def compare_if_new(self, scan, method, slice_no, done, series=None, plane=None):
        """The Compare tab opened: compare the scan in use (at its slice, or its series and
        plane, in Classify), once; the tab's slice chooser follows."""
        key = (scan, method, slice_no, series or None, plane if plane in AXES else None)
        if scan is None or done == key:
            return (gr.skip(),) * (3 * len(self.service.models) + 3)
        chooser, _ = no_chooser() if is_scan(scan) else slice_chooser(scan)
        if slice_no is not None and slice_no != NO_SLICE and chooser.visible:
            chooser = gr.Slider(minimum=0, maximum=chooser.maximum, value=slice_no, step=1,
                                visible=True, label=chooser.label)
        return (chooser, *self.compare(scan, method, slice_no, key[3], key[4]), key)

    @user_errors
    def compare_again(self, done, scan, method, slice_no=NO_SLICE, series=None, plane=None):
        """Compare again, with `method` and the tab's slice: the scan last compared (in its
        series and plane), else the scan in use (in the series and plane picked in Classify)."""
        if done:
            scan, series, plane = done[0], done[3], done[4]
        else:
            series = series or None
        if scan is None:
            raise UserError("Drop a brain MRI slice first (or classify one in the Classify tab).")
        return (*self.compare(scan, method, slice_no, series, plane), (scan, method, slice_no, series, plane))


@dataclasses.dataclass
class Session:
    """What the Classify and Compare tabs share: the settings (laid out in Classify, unrendered
    until then) and the session's scan in use and its last result."""
    model: gr.Dropdown
    method: gr.Dropdown
    target: gr.Dropdown
    alpha: gr.Slider
    current: gr.State                   # the scan in use: an uploaded file's path
    cached: gr.State                    # its last result, for re-blending
    slice_no: gr.Slider | None = None   # set by classify_tab
    series: gr.Dropdown | None = None   # set by classify_tab: the series picked in an archive
    plane: gr.Radio | None = None       # set by classify_tab: the plane a volume is cut in

    @property
    def settings(self) -> list:
        return [self.model, self.method, self.target, self.alpha]


def session(service: Service) -> Session:
    models = [(MODEL_LABELS.get(m, m), m) for m in service.models]
    targets = [("predicted class", PREDICTED)] + [(class_label(c), c) for c in service.classes]
    return Session(
        model=gr.Dropdown(models, value=service.default_model, label="Model", render=False),
        method=gr.Dropdown(service.method_choices(), value=service.default_method,
                           label="Explanation method", info=service.METHOD_INFO, elem_id="method",
                           render=False),
        target=gr.Dropdown(targets, value=PREDICTED, label="Explain which class", render=False),
        alpha=gr.Slider(0.0, 1.0, value=DEFAULT_ALPHA, step=0.05, label="Heatmap opacity",
                        elem_id="opacity", render=False),
        current=gr.State(time_to_live=STATE_TTL_S),
        cached=gr.State(time_to_live=STATE_TTL_S))


def classify_layout(s: Session) -> SimpleNamespace:
    """The Classify tab's components: the drop zone and settings left, the answer right."""
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            # Any file is accepted: the library reads the format from the content
            # (a browser would refuse .dcm/.nii in an image box) and says what is wrong.
            scan = gr.File(label="Drop a scan here, or click to pick one", type="filepath",
                           file_count="single", height=130, elem_id="scan")
            s.slice_no = gr.Slider(NO_SLICE, 0, value=NO_SLICE, step=1, label="Slice",
                                   visible=False, elem_id="slice")
            thumb = gr.Image(type="filepath", visible=False, label="Example scan")
            caption = gr.Textbox(visible=False, label="About this example")
            example_box = gr.Column()
            run = gr.Button("Classify", variant="primary", elem_id="run")
            with gr.Accordion("Model and explanation settings", open=False):
                s.model.render()
                s.method.render()
                s.target.render()
        with gr.Column(scale=2, min_width=300):
            headline = gr.Markdown(WAITING, label="Finding", elem_id="headline",
                                   elem_classes="finding")   # CSS: its quote is the caution line
            scan_ui = scan_layout()
            bars = gr.Label(label="Probabilities", show_heading=False, elem_id="bars")
            # The heatmap shows whole at first (the handle at the left edge): drag it right to
            # uncover the plain scan.
            pair = gr.ImageSlider(label="Heatmap on the scan (drag the handle right to see the "
                                  "plain scan)", type="numpy", format="png", interactive=False,
                                  elem_id="slider", max_height=560, slider_position=0)
            s.alpha.render()
            with gr.Row():
                figure = gr.Image(label="Heatmap alone, with its colour bar", format="png",
                                  interactive=False, elem_id="heatmap", height=240)
                with gr.Column():
                    heat_file = gr.File(label="Raw heatmap (.npy: float16 in [0, 1], the "
                                        f"scan's pixels, longer side at most {HEATMAP_SIDE})",
                                        interactive=False, height=90, elem_id="heatmap-file")
                    report_run = gr.Button("Make a one-page PDF report", elem_id="report-run")
                    report_file = gr.File(label="Report (PDF)", interactive=False,
                                          height=90, elem_id="report")
                    scan_ui.table.render()
            with gr.Accordion("Result as data (what the API returns)", open=False):
                result = gr.JSON(label="Result", elem_id="result")
            with gr.Accordion("Did the highlighted region decide? Paint it out and ask again",
                              open=False):
                check = gr.Button("Paint out the hot region and classify again",
                                  elem_id="recheck-run")
                check_text = gr.Markdown(RECHECK_PROMPT, label="Check", elem_id="recheck")
                check_overlay = gr.Image(label="The scan with the hot region painted out, "
                                         "and its new heatmap", format="png",
                                         interactive=False, elem_id="recheck-overlay")
    return SimpleNamespace(scan=scan, thumb=thumb, caption=caption, example_box=example_box, run=run,
                           pair=pair, report_run=report_run, report_file=report_file, scan_ui=scan_ui,
                           check=check, check_text=check_text, check_overlay=check_overlay,
                           outputs=[headline, bars, pair, figure, heat_file, result, s.cached])


def classify_examples(h: Handlers, s: Session, ui: SimpleNamespace,
                      examples: list[tuple[Path, str]]) -> None:
    """Example scans under the drop zone, each with its true class and source; a click answers
    (cached) and makes it the scan in use."""
    with ui.example_box:
        shown = gr.Examples([[str(p), caption, str(p), h.service.default_model,
                              h.service.default_method, PREDICTED, DEFAULT_ALPHA] for p, caption in examples],
                            inputs=[ui.thumb, ui.caption, ui.scan, *s.settings],
                            outputs=ui.outputs[:-1], fn=h.classify_example, visible_columns=[0, 1],
                            cache_examples=True, cache_mode="lazy", examples_per_page=8,
                            label="Examples (Kaggle Testing scans; examples/ATTRIBUTION.md)",
                            elem_id="examples", api_visibility="private")
    shown.load_input_event.then(adopt_example, ui.scan, [ui.scan, s.current, s.slice_no, s.cached],
                                api_visibility="private", queue=False).then(
        None, js=SHOW_ANSWER, api_visibility="private")


def classify_tab(h: Handlers, s: Session, examples: list[tuple[Path, str]] | None) -> None:
    """The Classify tab: one scan, one model, one map; re-blend, recheck, report; and the
    documented endpoints (a file in, or the API session's own last result)."""
    ui = classify_layout(s)
    s.series, s.plane = ui.scan_ui.series, ui.scan_ui.plane
    outputs, settings = ui.outputs, s.settings
    if examples:
        classify_examples(h, s, ui, examples)
    cleared = (WAITING, "", None, None, None, None, None)
    clear = lambda: (None, None, *cleared)
    sh, scan_out = ScanHandlers(h), ui.scan_ui.outputs
    ui_events = [
        ui.scan.upload(sh.upload, [ui.scan, *settings], [ui.scan, s.current, s.slice_no] + outputs
                       + scan_out, api_name="classify_upload", api_visibility="private"),
        gr.on([ui.run.click, s.model.input, s.method.input, s.target.input, s.slice_no.release],
              sh.classify, [s.current, *settings, s.slice_no, ui.scan_ui.series, ui.scan_ui.plane],
              outputs + scan_out,
              api_name="classify_ui", api_visibility="private", trigger_mode="always_last")]
    ui_events += scan_events(sh, s, ui)
    for event in ui_events:
        # One message (the error) and nothing left of the previous scan's answer.
        event.failure(clear, None, [ui.scan, s.current] + outputs, api_visibility="private",
                      queue=False)
    ui_events[0].then(None, js=SHOW_ANSWER, api_visibility="private")
    s.current.change(lambda: (RECHECK_PROMPT, None, None), None,
                     [ui.check_text, ui.check_overlay, ui.report_file], api_visibility="private",
                     queue=False)
    ui.check.click(h.recheck, [s.cached, s.alpha, s.current, *settings[:3], s.slice_no],
                   [ui.check_text, ui.check_overlay], api_name="recheck_ui", api_visibility="private")
    s.alpha.change(h.reblend_ui, [s.alpha, s.cached, s.current, *settings[:3], s.slice_no],
                   [ui.pair, s.cached], api_name="reblend_ui", api_visibility="private",
                   trigger_mode="always_last")
    ui.report_run.click(h.report, [s.cached, s.current, *settings, s.slice_no], ui.report_file,
                        api_name="report_ui", api_visibility="private")
    with gr.Row(visible=False):
        api_scan = gr.File(label="scan", type="filepath")
        api_buttons = [gr.Button(n) for n in ("classify", "reblend", "recheck", "report")]
        slice_no = api_slice()
    api_buttons[0].click(h.classify, [api_scan, *settings, slice_no], outputs, api_name="classify")
    api_buttons[1].click(h.reblend, [s.alpha, s.cached], ui.pair, api_name="reblend")
    api_buttons[2].click(h.recheck, [s.cached, s.alpha], [ui.check_text, ui.check_overlay],
                         api_name="recheck")
    api_buttons[3].click(h.report, [s.cached], ui.report_file, api_name="report")
    with gr.Row(visible=False):
        api_volume = gr.File(label="scan", type="filepath")
        api_series = gr.Textbox(label="series")
        api_plane = gr.Textbox(ACQUIRED, label="plane")
        api_scan_button = gr.Button("classify_scan")
    api_scan_button.click(sh.classify_scan_api, [api_volume, s.model, s.method, api_series, api_plane],
                          outputs[5], api_name="classify_scan")


# ----------------------------------------------------------------------------- whole scans
PLANE_RADIO = [("As acquired", ACQUIRED)] + [(p.capitalize(), p) for p in AXES]


def plane_chooser(scan, plane: str | None) -> gr.Radio:
    """The plane chooser: shown for a volume (`Scan.volume`, which can be cut in any plane),
    naming the plane it was acquired in; hidden and reset for anything else."""
    if scan is None or not scan.volume:
        return gr.Radio(visible=False, value=ACQUIRED)
    return gr.Radio(visible=True, value=plane or ACQUIRED,
                    label=f"Slices of this volume (acquired {scan.acquired})")


def scan_layout() -> SimpleNamespace:
    """Under the headline, hidden until a whole scan is in use: the series to pick (an archive
    of several), the plane to cut a volume in, the class probabilities along the slices, a
    slider to walk the slices; and every slice's answer as a CSV, shown beside the report."""
    series = gr.Dropdown([], label="This archive holds several series: pick one", visible=False,
                         elem_id="series")
    plane = gr.Radio(PLANE_RADIO, value=ACQUIRED, label="Slices of this volume", visible=False,
                     elem_id="plane")
    strip = gr.Image(label="Class probabilities along the slices", format="png", visible=False,
                     interactive=False, elem_id="strip", height=220)
    walk = gr.Slider(0, 1, value=0, step=1, label="Slice", visible=False, elem_id="scan-slice")
    table = gr.File(label="Every slice's answer as a table (CSV, as the batch command writes it)",
                    interactive=False, visible=False, height=90, elem_id="scan-table",
                    render=False)                # laid out beside the report (classify_layout)
    view = gr.State(time_to_live=STATE_TTL_S)
    return SimpleNamespace(series=series, strip=strip, walk=walk, view=view, plane=plane, table=table,
                           outputs=[series, strip, walk, view, plane, table])


def strip_image(view: ScanView) -> np.ndarray:
    """The strip (`brainmri.report.strip_figure`) as an (H, W, 3) uint8 RGB picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(strip_figure(view.strip, view.result.classes, view.result.chosen,
                                          size=(8.0, 2.4)))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def hidden_scan() -> tuple:
    """The scan components hidden and emptied: a single slice is in use."""
    return (gr.Dropdown(visible=False, choices=[], value=None), gr.Image(visible=False, value=None),
            gr.Slider(visible=False), None, plane_chooser(None, None), gr.File(visible=False, value=None))


class ScanHandlers:
    """The handlers of a whole scan (`brainmri.scanview`) in the Classify tab: a dropped .zip
    of DICOM files, NIfTI volume or multi-frame DICOM is read whole, every slice classified,
    and the chosen slice shown first with its map; the slider walks the other slices."""
    GPU = ("run_scan", "walk")

    def __init__(self, h: Handlers):
        self.h, self.service = h, h.service
        for name in self.GPU:
            setattr(self, name, gpu(getattr(self, name)))

    def slice_outputs(self, view: ScanView, r, index: int, target) -> list:
        """The single-slice outputs for slice `index` of `view` (`r`: its Result, None when it
        lies outside the head): the headline is the scan's, then the slice's."""
        if r is None:
            grey = np.asarray(view.scan.slices[index].convert("L"))
            plain = upscale(np.repeat(grey[:, :, None], 3, axis=2), DISPLAY_SIDE)
            text = f"{view.headline}\n\n---\n\n**Slice {index}:** {OUTSIDE}."
            return [text, None, (plain, plain), None, None, view.as_dict(), None]
        found = list(self.h.outputs_of(r, target))
        found[0] = f"{view.headline}\n\n---\n\n**Slice {index}:**\n\n{r.headline}"
        found[5] = {**view.as_dict(), "shown_slice": index}
        found[6] = {**found[6], "scan": view}
        return found

    def run_scan(self, scan, model, method, target, alpha, series=None, plane=ACQUIRED,
                 progress=gr.Progress()):
        progress(0.0, desc="Reading the scan")
        try:
            view = view_scan(self.service, scan, model, method, alpha, series=series, axis=axis_of(plane),
                             progress=lambda d, t: progress(d / t, desc=f"Slice {d} of {t}"))
        except SeriesChoice as choice:
            text = (f"### This archive holds {len(choice.series)} series\nPick the one to classify "
                    "below (by its description); each series is one scan.")
            pick = gr.Dropdown(choices=[(x.label(), x.key) for x in choice.series], value=None,
                               visible=True)
            return [text, None, None, None, None, None, None,
                    pick, gr.Image(visible=False, value=None), gr.Slider(visible=False), None,
                    plane_chooser(None, None), gr.File(visible=False, value=None)]
        chosen, shown = view.result.chosen, view.chosen
        if chosen is None:        # no slice classified: the first with a head, with its refusal
            chosen = next((i for i, s in enumerate(view.result.slices) if s.brain), 0)
            shown = view_slice(self.service, view, chosen, method, alpha)
        walk = gr.Slider(minimum=0, maximum=max(len(view.scan) - 1, 1), value=chosen, step=1,
                         visible=True, interactive=len(view.scan) > 1,
                         label=f"Slice ({len(view.scan)} in all; the answer's slice first)")
        return [*self.slice_outputs(view, shown, chosen, target),
                gr.Dropdown(visible=series is not None), gr.Image(value=strip_image(view), visible=True),
                walk, view, plane_chooser(view.scan, plane),
                gr.File(value=self.table(scan, view), visible=True)]

    def table(self, scan, view: ScanView) -> str:
        """The scan's rows (`brainmri.batch.result_rows`) written as the batch command's CSV."""
        name = Path(scan).name if isinstance(scan, (str, os.PathLike)) else "scan"
        path = self.h.files.new(f"{name.split('.')[0] or 'scan'}-slices.csv")
        for _ in write_csv(path, result_rows(name, view.scan, view.result), view.result.classes):
            pass
        return str(path)

    @user_errors
    def upload(self, scan, model, method, target, alpha, progress=gr.Progress()):
        """A dropped file: a whole scan (`is_scan`) is read and classified slice by slice;
        anything else is one slice, as before."""
        if scan is not None and is_scan(scan):
            return (None, scan, gr.Slider(visible=False, value=NO_SLICE, minimum=NO_SLICE),
                    *self.run_scan(scan, model, method, target, alpha, progress=progress))
        return (*self.h.classify_upload(scan, model, method, target, alpha, progress), *hidden_scan())

    @user_errors
    def classify(self, scan, model, method, target, alpha, slice_no=NO_SLICE, series=None,
                 plane=ACQUIRED, progress=gr.Progress()):
        """The Classify button or a changed setting: the scan in use again, whole or one slice
        (a volume in the plane chosen)."""
        if scan is not None and is_scan(scan):
            return tuple(self.run_scan(scan, model, method, target, alpha, series or None, plane, progress))
        return (*self.h.classify(scan, model, method, target, alpha, slice_no, progress), *hidden_scan())

    @user_errors
    def replane(self, scan, model, method, target, alpha, slice_no=NO_SLICE, series=None,
                plane=ACQUIRED, view=None, progress=gr.Progress()):
        """The plane chooser moved: the scan in use cut in that plane. A plane it cannot be
        shown in (too few slices across it, say) is a warning, and the scan stays as shown,
        the chooser back on its plane, rather than an error that clears the page."""
        try:
            return tuple(self.run_scan(scan, model, method, target, alpha, series or None, plane, progress))
        except ImageLoadError as error:
            if not isinstance(view, ScanView):
                raise
            text = str(error)
            gr.Warning(text[:1].upper() + text[1:])
            shown = view.scan.plane if view.scan.plane != view.scan.acquired else ACQUIRED
            answer, scan_parts = (gr.skip(),) * 7, (gr.skip(),) * 4   # as shown; series to view
            return (*answer, *scan_parts, plane_chooser(view.scan, shown), gr.skip())

    @user_errors
    def walk(self, view, index, method, target, alpha):
        """The slider moved: slice `index` of the scan in use, answered as a single upload."""
        if not isinstance(view, ScanView):
            raise UserError("Drop a whole scan first: the slider walks its slices.")
        index = int(index)
        return tuple(self.slice_outputs(view, view_slice(self.service, view, index, method, alpha),
                                        index, target))

    def follow(self, scan):
        """The scan in use changed: the scan components stay for a whole scan, else hide."""
        if scan is not None and is_scan(scan):
            return (gr.skip(),) * 6
        return hidden_scan()

    @user_errors
    def classify_scan_api(self, scan, model, method, series="", plane=""):
        """Classify every slice of a whole scan and summarise it: the finding (class), the
        slices labelled with it, the most probable slice and its answer, per-slice
        probabilities (null outside the head). Research and education only: not a diagnosis.

        Args:
            scan: a .zip of one DICOM series, a NIfTI volume (.nii, .nii.gz) or a multi-frame DICOM.
            model: the key of a loaded model, e.g. "resnet50" (the model card lists them).
            method: the heatmap method of the chosen slice, e.g. "gradcam".
            series: for an archive holding several series, the number or key of the one to read.
            plane: a NIfTI volume's slices: "sagittal", "coronal" or "axial"; "" (or
                "acquired"): the plane it was acquired in.
        """
        if scan is None:
            raise UserError(f"Give a whole scan: {UPLOADED_SCAN}.")
        return view_scan(self.service, scan, model, method, series=series or None,
                         axis=axis_of(plane)).as_dict()


def scan_events(sh: ScanHandlers, s: Session, ui: SimpleNamespace) -> list:
    """Wire the scan components: pick a series or a volume's plane, walk the slices; hide them
    for a single slice."""
    scan_ui, outputs = ui.scan_ui, ui.outputs
    private = {"api_visibility": "private"}
    s.current.change(sh.follow, s.current, scan_ui.outputs, queue=False, api_name="scan_follow_ui",
                     **private)
    return [
        scan_ui.series.input(sh.classify, [s.current, *s.settings, s.slice_no, scan_ui.series, scan_ui.plane],
                             outputs + scan_ui.outputs, api_name="scan_series_ui", **private),
        scan_ui.plane.input(sh.replane, [s.current, *s.settings, s.slice_no, scan_ui.series, scan_ui.plane,
                                         scan_ui.view], outputs + scan_ui.outputs,
                            api_name="scan_plane_ui", **private),
        scan_ui.walk.release(sh.walk, [scan_ui.view, scan_ui.walk, s.method, s.target, s.alpha],
                             outputs, api_name="scan_walk_ui", trigger_mode="always_last", **private)]


def compare_tab(h: Handlers, s: Session, tab: gr.Tab) -> None:
    """The Compare tab: every model on the scan in use (when the tab opens) or on one dropped
    here, side by side, and whether they agree. Its method follows the Classify tab's; a
    volume gets a slice chooser; an error clears every panel."""
    with gr.Row():
        with gr.Column():
            gr.Markdown("Every loaded model on the scan in use in the Classify tab, or drop another here.")
            c_scan = gr.File(label="Drop another scan to compare", type="filepath",
                             file_count="single", height=110, elem_id="compare-scan")
            c_slice = gr.Slider(NO_SLICE, 0, value=NO_SLICE, step=1, label="Slice",
                                visible=False, elem_id="compare-slice")
        with gr.Column():
            c_method = gr.Dropdown(h.service.method_choices(), value=h.service.default_method,
                                   label="Explanation method", info=h.service.METHOD_INFO,
                                   elem_id="compare-method")
            c_run = gr.Button("Compare again", variant="primary")
            agreement = gr.Markdown(label="Agreement", elem_id="agreement")
    c_outputs = []
    with gr.Row():
        for m in h.service.models:
            name = MODEL_LABELS.get(m, m)
            with gr.Column(min_width=280):
                gr.Markdown(f"## {name}")
                c_outputs += [gr.Markdown(label=f"{name} finding", elem_id=f"finding-{m}",
                                          elem_classes="finding"),
                              gr.Label(label=f"{name} probabilities", show_heading=False,
                                       elem_id=f"bars-{m}"),
                              gr.Image(label=f"{name} heatmap on the scan", format="png",
                                       interactive=False, elem_id=f"overlay-{m}")]
    compared = gr.State()                       # (scan, method, slice, series, plane) last compared
    c_all = c_outputs + [agreement]
    cleared = lambda: (None, gr.Slider(visible=False, value=NO_SLICE, minimum=NO_SLICE),
                       *[None, None, None] * len(h.service.models), "", None)
    private = dict(api_visibility="private")
    events = [
        c_scan.upload(h.compare_upload, [c_scan, c_method], [c_scan, c_slice, *c_all, compared],
                      api_name="compare_upload", **private),
        tab.select(h.compare_if_new, [s.current, c_method, s.slice_no, compared, s.series, s.plane],
                   [c_slice, *c_all, compared], api_name="compare_on_select", **private),
        gr.on([c_run.click, c_method.input, c_slice.release], h.compare_again,
              [compared, s.current, c_method, c_slice, s.series, s.plane], [*c_all, compared],
              api_name="compare_again", trigger_mode="always_last", **private)]
    for event in events:          # one message, and nothing left of the previous answer
        event.failure(cleared, None, [c_scan, c_slice, *c_all, compared], queue=False, **private)
    s.method.change(lambda m: m, s.method, c_method, queue=False, **private)
    with gr.Row(visible=False):
        api_c_scan = gr.File(label="scan", type="filepath")
        api_compare = gr.Button("compare")
        slice_no = api_slice()
    api_compare.click(h.compare, [api_c_scan, c_method, slice_no], c_all, api_name="compare")


ABOUT = """## In plain words
This page runs a computer model that looks at **one picture of a slice through the brain** (an
MRI scan) and guesses whether it shows one of three kinds of brain tumour (glioma, meningioma,
pituitary tumour) or none. It colours the parts of the picture that pushed its guess the most
(the *heatmap*). It learnt from about 7,000 pictures from one public collection, many of them
copies of each other, so it is often wrong on pictures from elsewhere. Every tumour it saw was
on one kind of MRI picture (T1-weighted), so on other kinds (T2, FLAIR) it can miss a tumour
and still sound sure. It says *treat with caution* when a picture is unlike the ones it learnt
from, when it hesitates, or when the models trained to check it give another answer, and
refuses pictures that do not look like a brain MRI slice. **It is
a teaching and research tool: it must never be used to decide anything about a person's
health.**

### Words used below
- **Accuracy**: the share of test pictures whose class the model got right.
- **Macro F1**: accuracy's stricter cousin: it averages how well each class is found, so a rare
  class counts as much as a common one (1 is perfect).
- **ROC AUC**: how well the probabilities rank the right class above the others (1 is perfect,
  0.5 is chance).
- **ECE** (expected calibration error): how far the stated probabilities are from how often the
  model is right (0 is perfect: of answers given at 80%, 80% are right).
- **Calibration / temperature scaling**: one number fitted after training so the probabilities
  mean what they say.
- **Protocol**: which test pictures a figure was measured on (*clean* is the honest one: no
  copies of training pictures).
- **Pointing game**: how often a heatmap's hottest point falls inside the tumour's box.
- **Grad-CAM, Layer-CAM, ...**: ways of computing the heatmap from the model's inner layers.
- **Not-an-MRI check (mahalanobis-pca)**: a distance from the training pictures, measured inside
  the model, above which an input is refused.
- **Familiarity**: how much a picture resembles the training pictures of the class the model
  chose; too little means *treat with caution*.
- **Checkers**: other models trained on the same pictures (for less time, on smaller pictures),
  asked about each answer the model is sure of; if any gives another class, the answer becomes
  *treat with caution*.
- **Checkpoint**: the saved model: its learnt numbers plus what it was trained on and measured to do.
"""


def about_tab(service: Service) -> gr.Markdown:
    """The About tab: a plain summary and a glossary, then the model card (re-read on each
    page load)."""
    gr.Markdown(ABOUT, elem_id="about")
    gr.Markdown("*On a narrow screen the tables below scroll sideways: swipe them.*",
                elem_id="scroll-hint", elem_classes="scroll-hint")
    return gr.Markdown(service.model_card(), label="Model card", elem_id="card")


def build_demo(service: Service, examples: list[tuple[Path, str]] | None = None) -> gr.Blocks:
    """The whole UI: the tabs, laid out and wired. Handlers call `service`; nothing here
    computes a prediction."""
    files = Files()
    # Gradio caches example results on first use; one folder per process, so a cache made
    # with other checkpoints is never served.
    os.environ.setdefault("GRADIO_EXAMPLES_CACHE", str(files.dir / "examples-cache"))
    h = Handlers(service, files)
    with gr.Blocks(title="brainmri: brain-tumour MRI classifier with explanations",
                   analytics_enabled=False) as demo:
        gr.Markdown("# Brain-tumour MRI slice classifier, with heatmap explanations\n"
                    "**Research and education only — not a medical device, not for diagnosis.** "
                    f"One 2-D brain MRI slice ({ACCEPTED}), or a whole scan: {UPLOADED_SCAN}.")
        s = session(service)
        with gr.Tab("Classify"):
            classify_tab(h, s, examples)
        with gr.Tab("Compare") as tab:
            compare_tab(h, s, tab)
        with gr.Tab("About"):
            card = about_tab(service)
        demo.load(service.model_card, None, card, api_name="model_card", queue=False)
    return demo


def get_args_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    on_space = bool(env("SPACE_ID"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default=env("BRAINMRI_HOST") or ("0.0.0.0" if on_space else "127.0.0.1"),
                   help="address to bind (env BRAINMRI_HOST; 0.0.0.0 on a Hugging Face Space)")
    p.add_argument("--port", type=int,
                   default=int(env("BRAINMRI_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                   help="port (env BRAINMRI_PORT or GRADIO_SERVER_PORT)")
    p.add_argument("--checkpoints", type=Path, default=Path(env("BRAINMRI_CHECKPOINTS") or "checkpoints"),
                   help="folder with " + " and/or ".join(f"{n}.safetensors" for n in MODEL_LABELS)
                        + ", one per registered model (env BRAINMRI_CHECKPOINTS)")
    p.add_argument("--examples", type=Path, default=env("BRAINMRI_EXAMPLES") or EXAMPLES,
                   help="folder of example scans, <class>/<file> or flat (env BRAINMRI_EXAMPLES); "
                        "a few per class are shown; a missing folder: no examples")
    p.add_argument("--device", default=None, help="torch device; default: cuda if available")
    p.add_argument("--batch", type=int, default=int(env("BRAINMRI_BATCH") or 8),
                   help="concurrent requests per model that share one forward pass, and the "
                        "number of requests handled at once (env BRAINMRI_BATCH; 1: no batching)")
    p.add_argument("--batch-workers", type=int, default=int(env("BRAINMRI_BATCH_WORKERS") or 1),
                   help="batches in flight at once per model (env BRAINMRI_BATCH_WORKERS)")
    p.add_argument("--mcp", action="store_true", default=env("BRAINMRI_MCP", "") not in ("", "0"),
                   help="also serve the API as an MCP server, each endpoint a tool for AI "
                        "assistants, at /gradio_api/mcp/ (env BRAINMRI_MCP=1; needs gradio[mcp])")
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log.info("MALLOC_ARENA_MAX=%s", os.environ.get("MALLOC_ARENA_MAX", "unset"))
    try:
        # ZeroGPU lends a GPU only inside `spaces.GPU` handlers, to the handler's own thread:
        # no warm-up forward at start, and no batching thread.
        zero_gpu = bool(os.environ.get("SPACES_ZERO_GPU"))
        service = Service.from_folder(args.checkpoints, device=args.device, warmup=not zero_gpu,
                                      batch=1 if zero_gpu else max(1, args.batch),
                                      workers=max(1, args.batch_workers))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    demo = build_demo(service, pick_examples(args.examples))
    demo.queue(default_concurrency_limit=max(2, args.batch))
    demo.launch(server_name=args.host, server_port=args.port, share=False, css=CSS,
                max_file_size=UPLOAD_CAP, show_error=False, mcp_server=args.mcp)


if __name__ == "__main__":
    main()
