"""The measurements. Each returns table rows; every figure is a median over repeats."""
from __future__ import annotations

import copy
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from brainmri.batch import classify_files, find_images, write_csv
from brainmri.batching import Batcher
from brainmri.cam import FAST_METHODS, LABELS, canonical_method
from brainmri.checkpoint import load_checkpoint
from brainmri.io import load_image
from brainmri.models import default_model, target_layer
from brainmri.overlay import blend
from brainmri.predictor import Predictor, to_input_pixels

from .context import label as model_label
from .timing import Timing, interleaved, percentile, times_ms


@dataclass(frozen=True)
class Row:
    what: str
    ms: Timing | None         # milliseconds (per image where it says so)
    vs: str = ""              # a ratio, throughput or note
    target: str = ""
    ok: bool | None = None


def floor_fn(p: Predictor, batch_size: int, nchw: bool = False,
             model: torch.nn.Module | None = None) -> Callable[[int], object]:
    """Bare channels_last forward (trunk, pool, head) of a prepared batch, on the predictor's
    model (batch-norm folded) or on `model`. With `nchw`, in the default memory format."""
    x = torch.randn(batch_size, p.preset.channels, p.preset.size, p.preset.size).to(p.device)
    model = model if model is not None else p.model
    if nchw:
        model = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    else:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run(_):
        with torch.no_grad(), p.autocast():
            model(x)
    return run


def click_fn(p: Predictor, files: Sequence[bytes], method: str) -> Callable[[int], object]:
    """File bytes -> decode, preprocess, prediction, CAM heatmap, overlay."""
    return lambda i: p.explain(files[i % len(files)], method)


def usual_fn(p: Predictor, files: Sequence[bytes]) -> Callable[[int], object]:
    """The tutorial way: the checkpoint's model as loaded (NCHW, batch-norm not folded), a
    forward for the prediction, then a GradCAM object built per call (hooks, its own forward,
    full backward). Same preprocessing and overlay."""
    if p.path is not None:
        model = load_checkpoint(p.path, device=p.device)[0]
    else:
        model = copy.deepcopy(p.model).to(memory_format=torch.contiguous_format)
    layer = target_layer(model)

    def run(i):
        prepared = p.preset.prepare(files[i % len(files)])
        x = prepared.tensor[None].to(p.device)
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)
        label = int(probs.argmax())
        with GradCAM(model=model, target_layers=[layer]) as cam:
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(label)])[0]
        blend(prepared.grey, to_input_pixels(heat, prepared))
    return run


def compare_fn(ps: dict[str, Predictor], files: Sequence[bytes], method: str
               ) -> Callable[[int], object]:
    """What the app's Compare does: decode once, each model predicts and explains."""
    def run(i):
        image = load_image(files[i % len(files)])
        for p in ps.values():
            p.explain(image, method)
    return run


def cli_fn(p: Predictor, folder: Path, cams: bool, method: str | None = None, fmt: str = "png"
           ) -> tuple[Callable[[int], object], int]:
    """The batch CLI's pipeline over a folder (CSV, and `fmt` overlays by `method` when `cams`),
    and its file count."""
    items = find_images([folder])

    def run(_):
        with tempfile.TemporaryDirectory() as out:
            rows = classify_files(p, items, 16, Path(out) / "cams" if cams else None, method,
                                  cams_format=fmt)
            for _ in write_csv(Path(out) / "r.csv", rows, p.classes):
                pass
    return run, len(items)


def batcher(p: Predictor, files: Sequence[bytes], clients: int, per_client: int, method: str,
            rounds: int = 1, workers: Sequence[int] = (1,)
            ) -> tuple[list[float], dict[int, list[float]], dict[int, list[float]]]:
    """One-at-a-time ms per request (one figure per round); per `Batcher` worker count, batched
    ms per request (one per round) and latencies in ms. Each round sends the same
    `clients * per_client` requests one after another, then from `clients` threads to each
    Batcher in turn; rounds are taken in turn, like the other rows."""
    n = clients * per_client
    sequential: list[float] = []
    batched: dict[int, list[float]] = {w: [] for w in workers}
    latencies: dict[int, list[float]] = {w: [] for w in workers}
    lock = threading.Lock()
    engines = {w: Batcher(p, max_batch=clients, max_wait_ms=5, workers=w) for w in workers}
    try:
        for engine in engines.values():
            engine.explain(files[0], method)           # warm
        for _ in range(rounds):
            sequential.append(sum(times_ms(lambda i: p.explain(files[i % len(files)], method),
                                           n, 1, p.device)) / n)
            for w, engine in engines.items():
                start = threading.Barrier(clients + 1)

                def client(c, engine=engine, w=w):
                    start.wait()
                    for k in range(per_client):
                        t = time.perf_counter()
                        engine.explain(files[(c * per_client + k) % len(files)], method)
                        with lock:
                            latencies[w].append(1000 * (time.perf_counter() - t))

                threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
                for t in threads:
                    t.start()
                start.wait()
                t0 = time.perf_counter()
                for t in threads:
                    t.join()
                batched[w].append(1000 * (time.perf_counter() - t0) / n)
    finally:
        for engine in engines.values():
            engine.close()
    return sequential, batched, latencies


def device_rows(ps: dict[str, Predictor], files: Sequence[bytes], folder: Path,
                repeats: int, clients: int = 8, method: str | None = None) -> list[Row]:
    """Every per-device measurement, as rows of the table. Ratios use medians. `method`: the
    CAM method of the interactive rows (default: the default model's own default, what the
    app shows first). The one-pass targets are judged on a one-pass method (the default when it
    is one, else Layer-CAM); a default that needs more (the fused Layer-CAM) gets its own rows
    beside them, without a target. The targets are the issue's, for the CPU: on a GPU the rows
    show them, marked "(CPU)", and judge none."""
    name = default_model(ps)              # the model the app offers first: the rows time it
    main, model = ps[name], model_label(name)
    method = canonical_method(method or main.default_method)
    few = max(3, repeats // 4)
    # The single-image figures are taken in turn, so every ratio compares like with like.
    fns = {"floor": floor_fn(main, 1), "nchw": floor_fn(main, 1, nchw=True)}
    if main.path is not None:                  # the model as loaded, before batch-norm folding
        fns["loaded"] = floor_fn(main, 1, model=load_checkpoint(main.path, device=main.device)[0])
    # One-pass methods (the targets: maps of the last block) and the app's default.
    one_pass = method if method in FAST_METHODS else "layercam"
    methods = list(dict.fromkeys(["gradcam", one_pass, method]))
    fns.update({m: click_fn(main, files, m) for m in methods})
    compares = list(dict.fromkeys([one_pass, method]))
    fns.update({f"compare-{m}": compare_fn(ps, files, m) for m in compares})
    t = {k: Timing.of(v) for k, v in interleaved(fns, repeats, 2, main.device).items()}
    f1 = t["floor"]
    rows = [Row(f"{model} forward, batch 1, channels_last, batch-norm folded (the floor)", f1),
            Row(f"{model} forward, batch 1, NCHW (default memory format), for context",
                t["nchw"], f"{t['nchw'].median / f1.median:.2f}x floor")]
    if "loaded" in t:
        rows.append(Row(f"{model} forward, batch 1, channels_last, batch-norm as loaded, for context",
                        t["loaded"], f"{t['loaded'].median / f1.median:.2f}x floor"))
    fused_note = "- (a backward through the blocks after the finer layer)"
    for m in methods:
        c, fast = t[m], m in FAST_METHODS
        rows.append(Row("Click to result: `Predictor.explain` (decode, preprocess, prediction, "
                        f"{LABELS[m]}, overlay){' - the default' if m == method else ''}", c,
                        f"{c.median / f1.median:.2f}x floor", "<= 1.15x floor" if fast else fused_note,
                        c.median / f1.median <= 1.15 if fast else None))
    pair = {k: Timing.of(v) for k, v in interleaved(
        {"click": fns["gradcam"], "usual": usual_fn(main, files)}, few, 1, main.device).items()}
    u, c = pair["usual"], pair["click"]
    rows.append(Row("The usual way: `GradCAM` built per call, NCHW, separate forward", u,
                    f"{u.median / c.median:.1f}x slower than click (Grad-CAM, {c.median:.0f} ms "
                    "in the same turns)", ">= 10x", u.median / c.median >= 10))
    for m in compares:
        cm, fast = t[f"compare-{m}"], m in FAST_METHODS
        rows.append(Row(f"Compare: all {len(ps)} models on one image ({LABELS[m]})", cm,
                        f"{cm.median / f1.median:.2f}x floor", "<= 1.3x floor" if fast else fused_note,
                        cm.median / f1.median <= 1.3 if fast else None))
    # The batched floor and the batch CLI with and without overlays, also in turn.
    csv, n = cli_fn(main, folder, False)
    cases = {"floor": floor_fn(main, 16), "csv": csv}
    cases.update({f"png-{m}": cli_fn(main, folder, True, m)[0] for m in compares})
    cases.update({f"jpg-{m}": cli_fn(main, folder, True, m, "jpg")[0] for m in compares if m in FAST_METHODS})
    batch = interleaved(cases, few, 1, main.device)
    f16 = Timing.of(batch["floor"], 16)
    rows.append(Row(f"{model} forward, batch 16, channels_last, per image (batched floor)", f16,
                    f"{1000 / f16.median:.1f} img/s"))
    labels = {"csv": "CSV only (`predict_batch`)",
              **{f"png-{m}": f"CSV + {LABELS[m]} overlay PNGs (`explain_batch`)" for m in compares},
              **{f"jpg-{m}": f"CSV + {LABELS[m]} overlay JPEGs (`--cams-format jpg`)"
                 for m in compares if m in FAST_METHODS}}
    for key, label in labels.items():
        tc, fast = Timing.of(batch[key], n), key == "csv" or key[4:] in FAST_METHODS
        rows.append(Row(f"Batch CLI, batch 16, {label}, per image", tc,
                        f"{f16.median / tc.median:.2f}x batched floor throughput",
                        ">= 0.8x" if fast else fused_note, f16.median / tc.median >= 0.8 if fast else None))
    seq, batched, lat = batcher(main, files, clients, 2, method, rounds=max(5, repeats // 2),
                                workers=(1, 2))
    ts = Timing.of(seq)
    rows.append(Row("Server one request at a time (`Predictor.explain`), per request",
                    ts, f"{1000 / ts.median:.1f} req/s"))
    for w, times in batched.items():
        ratios = [a / b for a, b in zip(seq, times)]                 # paired, round by round
        gain = statistics.median(ratios)
        rows.append(Row(f"Server with `Batcher` ({w} worker{'s' if w > 1 else ''}), {clients} "
                        "concurrent clients, per request", Timing.of(times),
                        f"{gain:.2f}x throughput (median of {len(ratios)} rounds in turn, "
                        f"{min(ratios):.2f}-{max(ratios):.2f}x); latency p50 "
                        f"{percentile(lat[w], 50):.0f} ms, p95 {percentile(lat[w], 95):.0f} ms",
                        ">= 1.5x", gain >= 1.5))
    if main.device.type != "cpu":
        rows = [r if not r.target or r.ok is None else
                Row(r.what, r.ms, r.vs, f"{r.target} (CPU)", None) for r in rows]
    return rows
