"""Gradio app: classify a brain MRI slice, explain it with a class activation map, compare models.

    python app.py                                   # http://127.0.0.1:7860, checkpoints/
    python app.py --checkpoints DIR --examples ../shared/data/brain-tumor-mri/Testing --port 7861

Research and education only; not a medical device. The handlers live in `brainmri.service`;
this file only lays out components and wires them (every event is an API endpoint, see
docs/app.md). Safe to import: nothing loads until `build_demo` or `main` runs.
"""
from __future__ import annotations

import argparse
import atexit
import base64
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

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from brainmri.classes import UnknownClassError, canonical_class  # noqa: E402
from brainmri.io import MAX_BYTES, ImageLoadError, load_image, to_grey  # noqa: E402
from brainmri.overlay import with_colour_bar  # noqa: E402
from brainmri.service import MODEL_LABELS, PREDICTED, Service, class_label  # noqa: E402

log = logging.getLogger("brainmri.app")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dcm"}
MEDICAL_SUFFIXES = [".dcm", ".dicom", ".ima", ".nii", ".gz"]     # the browser's image box refuses these
CSS = ".flagged { opacity: 0.45; filter: grayscale(1); }"
RECHECK_PROMPT = ("*Paints out the region where the heatmap is at least half its peak, fills it from "
                  "the tissue around it, and runs the model again (one more forward pass).*")
STATE_TTL_S = 3600          # a session's cached result (grey + heatmap, ~1 MB) is dropped after an hour

try:                                    # ZeroGPU on Hugging Face Spaces; a no-op elsewhere
    import spaces
    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn


def scan_input(**kwargs) -> gr.Image:
    """`gr.Image` (drag/drop, paste, pick) that hands the handler the uploaded file untouched.

    gr.Image would open it with PIL first; here the library decides the format by content
    (DICOM included) and reports a bad file in words. The handler gets a path, bytes or None.
    The override is per instance: a subclass would make gradio write an `app.pyi` stub.
    """
    image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], **kwargs)
    image.preprocess = raw_upload
    return image


def raw_upload(payload):
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        return base64.b64decode(payload.url.split(",", 1)[1])
    return payload.path


def user_errors(fn):
    """Errors reach the user as a readable `gr.Error`, never a stack trace or a server path."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageLoadError, ValueError) as error:
            raise gr.Error(str(error), title="Cannot use this input", print_exception=False) from None
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error("Something went wrong while processing this image; "
                           "the server log has the details.") from None
    return wrapper


class Files:
    """Per-process folder for heatmaps and slice previews; old files are pruned, all removed
    at exit."""

    def __init__(self, keep_s: float = 3600):
        self.dir = Path(tempfile.mkdtemp(prefix="brainmri-app-"))
        self.keep_s = keep_s
        atexit.register(shutil.rmtree, self.dir, True)

    def new(self, stem: str, suffix: str) -> Path:
        now = time.time()
        for old in self.dir.iterdir():
            if now - old.stat().st_mtime > self.keep_s:
                old.unlink(missing_ok=True)
        return self.dir / f"{stem}-{uuid.uuid4().hex[:12]}{suffix}"

    def save_heatmap(self, heatmap: np.ndarray) -> str:
        path = self.new("heatmap", ".npy")
        np.save(path, heatmap.astype(np.float32))
        return str(path)

    def save_slice(self, source) -> str:
        """A DICOM/NIfTI (or any) file -> PNG of the 8-bit slice `load_image` reads from it:
        the same pixels the model gets, in a form the browser can show."""
        image = load_image(source)
        if image.mode not in ("L", "RGB"):
            image = Image.fromarray(to_grey(image))
        path = self.new("slice", ".png")
        image.save(path)
        return str(path)


def flag_bars(*is_mri: bool) -> gr.Label | tuple[gr.Label, ...]:
    """Style only (value untouched): probability bars greyed and relabelled when a model says
    the input is not a brain MRI slice, so they cannot be read as a finding."""
    out = tuple(gr.Label(label="Probabilities", elem_classes=[]) if ok is not False else
                gr.Label(label="Probabilities — not like a brain MRI slice: not a finding",
                         elem_classes=["flagged"]) for ok in is_mri)
    return out[0] if len(out) == 1 else out


def pick_examples(folder: str | Path | None, per_class: int = 2,
                  limit: int = 8) -> list[tuple[Path, str]]:
    """(copy, caption) for a few images per class folder (Kaggle-style `<class>/<file>`) or
    from a flat folder; copied to a temporary folder so no operator path is ever served."""
    if not folder or not Path(folder).is_dir():
        return []
    folder = Path(folder)
    images = lambda d: sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            caption = class_label(canonical_class(sub.name))
        except UnknownClassError:
            continue
        chosen += [(p, caption) for p in images(sub)[:per_class]]
    chosen = (chosen or [(p, p.stem) for p in images(folder)])[:limit]
    if not chosen:
        return []
    target = Path(tempfile.mkdtemp(prefix="brainmri-examples-"))
    atexit.register(shutil.rmtree, target, True)
    return [(Path(shutil.copy2(p, target / f"{i:02d}{p.suffix}")), caption)
            for i, (p, caption) in enumerate(chosen)]


def file_input(image: gr.Image, name: str, files: Files) -> None:
    """DICOM / NIfTI upload: shown as its slice in `image`, which then drives every event."""
    @user_errors
    def open_file(path):
        return gr.skip() if path is None else files.save_slice(path)

    with gr.Accordion("DICOM or NIfTI file", open=False):
        medical = gr.File(label="DICOM (.dcm) or NIfTI (.nii, .nii.gz): one slice is read",
                          file_types=MEDICAL_SUFFIXES, type="filepath", elem_id=f"{name}-file")
    medical.upload(open_file, medical, image, api_name=f"{name.replace('-', '_')}_open_file",
                   api_visibility="undocumented")


def classify_tab(service: Service, files: Files, examples: list[tuple[Path, str]] | None) -> None:
    """The Classify tab: one scan, one model, one map; re-blend and the painted-out recheck."""
    models = [(MODEL_LABELS.get(m, m), m) for m in service.models]
    targets = [("predicted class", PREDICTED)] + [(class_label(c), c) for c in service.classes]

    @gpu
    @user_errors
    def classify(image, model, method, target, alpha, progress=gr.Progress()):
        if image is None:
            raise gr.Error("Upload a brain MRI slice first (drag and drop, paste or pick a file).")
        progress(0.1, desc=f"Running {MODEL_LABELS.get(model, model)}")
        r = service.classify(image, model, method, target, alpha)
        progress(0.9, desc="Drawing the heatmap")
        return (r.headline, r.probabilities, r.overlay, with_colour_bar(r.heatmap),
                files.save_heatmap(r.heatmap),
                {"grey": r.grey, "heatmap": r.heatmap, "is_mri": r.is_mri, "model": r.model,
                 "method": r.method, "target": target, "probabilities": r.probabilities})

    def classify_if_image(image, model, method, target, alpha, progress=gr.Progress()):
        return gr.skip() if image is None else classify(image, model, method, target, alpha, progress)

    @gpu
    @user_errors
    def recheck(cached, alpha):
        if not cached or "model" not in cached:
            raise gr.Error("Classify a scan first: the check paints out the hot region of its heatmap.")
        c = service.recheck(cached["grey"], cached["heatmap"], cached["model"], cached["probabilities"],
                            cached["target"], cached["method"], alpha)
        return c.summary, c.painted.overlay

    def reblend(alpha, cached):
        if not cached:
            return gr.skip()
        return service.reblend(cached["grey"], cached["heatmap"], alpha)

    with gr.Row():
        with gr.Column(scale=1):
            image = scan_input(label="Brain MRI slice", height=320, elem_id="scan")
            file_input(image, "scan", files)
            model = gr.Dropdown(models, value=service.models[-1], label="Model")
            method = gr.Dropdown(service.method_choices(), value=service.default_method,
                                 label="Explanation method", info=service.METHOD_INFO)
            target = gr.Dropdown(targets, value=PREDICTED, label="Explain which class")
            alpha = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity",
                              elem_id="opacity")
            run = gr.Button("Classify", variant="primary")
        with gr.Column(scale=2):
            headline = gr.Markdown("*Upload a scan to see the model's answer.*",
                                   label="Finding", elem_id="headline")
            bars = gr.Label(num_top_classes=len(service.classes), label="Probabilities",
                            elem_id="bars")
            with gr.Row():
                overlay = gr.Image(label="Explanation overlay", format="png",
                                   interactive=False, elem_id="overlay")
                figure = gr.Image(label="Heatmap", format="png", interactive=False,
                                  elem_id="heatmap")
            heat_file = gr.File(label="Raw heatmap (.npy, float32 in [0, 1], input pixels)",
                                interactive=False)
            with gr.Accordion("Did the highlighted region decide? Paint it out and ask again",
                              open=False):
                check = gr.Button("Paint out the hot region and classify again",
                                  elem_id="recheck-run")
                check_text = gr.Markdown(RECHECK_PROMPT, elem_id="recheck")
                check_overlay = gr.Image(label="The scan with the hot region painted out, "
                                         "and its new heatmap", format="png",
                                         interactive=False, elem_id="recheck-overlay")
    cached = gr.State(time_to_live=STATE_TTL_S)   # last result, for re-blending
    if examples:
        gr.Examples([[str(p)] for p, _ in examples], inputs=[image], label="Example scans",
                    example_labels=[caption for _, caption in examples])
    outputs = [headline, bars, overlay, figure, heat_file, cached]
    inputs = [image, model, method, target, alpha]
    for event in (run.click(classify, inputs, outputs, api_name="classify"),
                  gr.on([image.change, model.change, method.change, target.change],
                        classify_if_image, inputs, outputs, api_name="classify_on_change",
                        api_visibility="undocumented", trigger_mode="always_last")):
        event.success(lambda c: flag_bars(c["is_mri"] if c else None), cached, bars,
                      api_name="flag_probabilities", api_visibility="private", queue=False)
        event.success(lambda: (RECHECK_PROMPT, None), None, [check_text, check_overlay],
                      api_name="clear_recheck", api_visibility="private", queue=False)
    check.click(recheck, [cached, alpha], [check_text, check_overlay], api_name="recheck")
    alpha.change(reblend, [alpha, cached], overlay, api_name="reblend",
                 show_progress="hidden", trigger_mode="always_last", queue=False)


def compare_tab(service: Service, files: Files) -> None:
    """The Compare tab: every loaded model on one scan, side by side, and whether they agree."""
    @gpu
    @user_errors
    def compare(image, method, progress=gr.Progress()):
        if image is None:
            raise gr.Error("Upload a brain MRI slice first (drag and drop, paste or pick a file).")
        progress(0.1, desc="Running every model")
        c = service.compare(image, method)
        out = []
        for r in c.results.values():
            out += [r.headline, r.probabilities, r.overlay]
        return (*out, c.summary, [r.is_mri for r in c.results.values()])

    def compare_if_image(image, method, progress=gr.Progress()):
        return gr.skip() if image is None else compare(image, method, progress)

    with gr.Row():
        with gr.Column():
            c_image = scan_input(label="Brain MRI slice", height=260,
                                 elem_id="compare-scan")
            file_input(c_image, "compare-scan", files)
        with gr.Column():
            c_method = gr.Dropdown(service.method_choices(), value=service.default_method,
                                   label="Explanation method", info=service.METHOD_INFO)
            c_run = gr.Button("Compare models", variant="primary")
            agreement = gr.Markdown(label="Agreement", elem_id="agreement")
    c_outputs, c_bars, c_flags = [], [], gr.State(time_to_live=STATE_TTL_S)
    with gr.Row():
        for m in service.models:
            name = MODEL_LABELS.get(m, m)
            with gr.Column():
                gr.Markdown(f"## {name}")
                finding = gr.Markdown(label=f"{name} finding", elem_id=f"finding-{m}")
                c_bars.append(gr.Label(num_top_classes=len(service.classes),
                                       label="Probabilities", elem_id=f"bars-{m}"))
                c_outputs += [finding, c_bars[-1],
                              gr.Image(label=f"{name} overlay", format="png",
                                       interactive=False, elem_id=f"overlay-{m}")]
    for event in (c_run.click(compare, [c_image, c_method],
                              c_outputs + [agreement, c_flags], api_name="compare"),
                  c_image.change(compare_if_image, [c_image, c_method],
                                 c_outputs + [agreement, c_flags],
                                 api_name="compare_on_change",
                                 api_visibility="undocumented")):
        event.success(lambda flags: flag_bars(*(flags or [None] * len(c_bars))),
                      c_flags, c_bars, api_name="flag_compare", api_visibility="private",
                      queue=False)


def build_demo(service: Service, examples: list[tuple[Path, str]] | None = None) -> gr.Blocks:
    """The whole UI: one function per tab. Handlers call `service`; nothing here computes a
    prediction."""
    files = Files()
    with gr.Blocks(title="brainmri: brain-tumour MRI classifier with explanations",
                   analytics_enabled=False) as demo:
        gr.Markdown("# Brain-tumour MRI slice classifier, with heatmap explanations (CAM)\n"
                    "**Research and education only — not a medical device, not for diagnosis.** "
                    "Upload one 2-D brain MRI slice (JPEG, PNG, TIFF, DICOM…).")
        with gr.Tab("Classify"):
            classify_tab(service, files, examples)
        with gr.Tab("Compare"):
            compare_tab(service, files)
        with gr.Tab("About"):
            card = gr.Markdown(service.model_card(), label="Model card")
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
                   help="folder with baseline.safetensors and/or resnet50.safetensors "
                        "(env BRAINMRI_CHECKPOINTS)")
    p.add_argument("--examples", type=Path, default=env("BRAINMRI_EXAMPLES") or None,
                   help="folder of example scans, <class>/<file> or flat (env BRAINMRI_EXAMPLES); "
                        "a few per class are shown")
    p.add_argument("--device", default=None, help="torch device; default: cuda if available")
    p.add_argument("--batch", type=int, default=int(env("BRAINMRI_BATCH") or 8),
                   help="concurrent requests per model that share one forward pass, and the "
                        "number of requests handled at once (env BRAINMRI_BATCH; 1: no batching)")
    p.add_argument("--batch-workers", type=int, default=int(env("BRAINMRI_BATCH_WORKERS") or 1),
                   help="batches in flight at once per model (env BRAINMRI_BATCH_WORKERS)")
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
                max_file_size=MAX_BYTES, show_error=False)


if __name__ == "__main__":
    main()
