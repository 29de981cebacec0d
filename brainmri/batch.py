"""Classifying many files: batched inference with decoding overlapped, one row per file.

    from brainmri.batch import find_images, classify_files, write_csv
    rows = classify_files(predictor, find_images(["scans/"]), cams="cams/")
    write_csv("results.csv", rows, predictor.classes)

The command line is `python -m brainmri classify` (see `brainmri/__main__.py`). Files are
read, decoded and prepared by a small thread pool while the model runs on the previous batch;
overlays are written by the same pool. A file that cannot be read gives a row with its
`error`; it never stops the run.
"""
from __future__ import annotations

import csv
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from .data import image_files
from .predictor import Predictor
from .presets import Prepared


@dataclass(frozen=True)
class Item:
    path: Path          # the file to read
    name: Path          # relative name for its overlay: <folder argument's name>/<sub/path>


@dataclass(frozen=True)
class Row:
    path: str
    label: str = ""
    probabilities: dict[str, float] | None = None
    is_mri: bool | None = None
    mri_score: float = math.nan
    outcome: str = ""             # "confident", "caution" or "not_mri" ("" without a prediction)
    reasons: tuple[str, ...] = () # why "caution"
    familiarity: float = math.nan # in [0, 1]; nan when the checkpoint has no detector
    cam: str = ""                 # the overlay file written, if any
    error: str = ""               # why this file has no prediction ("" when it has one)


def find_images(paths: Iterable[str | Path]) -> list[Item]:
    """Files as given, and every file under each folder (recursively, sorted; hidden files and
    notes such as .txt/.csv skipped). Files are images by content: a bad one fails later, as a
    row. A path that does not exist is kept, so that it too gets a row saying so."""
    items: list[Item] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            items += [Item(f, Path(path.resolve().name) / f.relative_to(path)) for f in image_files(path)]
        else:
            items.append(Item(path, Path(path.name)))
    return items


CAM_FORMATS = ("png", "jpg")     # lossless, or quicker to encode and smaller (JPEG quality 95)


def _cam_paths(items: Sequence[Item], folder: Path, fmt: str = "png") -> list[Path]:
    """<folder>/<name>.<fmt> per item, made unique (a.jpg and a.png both exist, say)."""
    taken: set[Path] = set()
    out = []
    for item in items:
        base = folder / item.name.with_suffix(f".{fmt}")
        path, n = base, 1
        while path in taken:
            n += 1
            path = base.with_name(f"{base.stem}-{n}.{fmt}")
        taken.add(path)
        out.append(path)
    return out


def _prepare(predictor: Predictor, path: Path) -> Prepared | Exception:
    try:
        return predictor.prepare([path])[0]     # decode, input check, preset
    except Exception as error:          # noqa: BLE001 - becomes this file's row
        return error


def _write_overlay(path: Path, rgb: np.ndarray) -> None:
    """PNG or JPEG (quality 95) by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.write_bytes(data.tobytes())


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _run_model(predictor: Predictor, prepared: list[Prepared], explain: bool, method, alpha):
    """Results for a batch; if the batch fails, each item alone (so only the culprit fails)."""
    def once(group):
        if explain:
            return predictor.explain_batch(method=method, alpha=alpha, prepared=group)
        return predictor.predict_batch(prepared=group)
    try:
        return once(prepared)
    except Exception:                   # noqa: BLE001 - retried one by one below
        if len(prepared) == 1:
            raise
    out = []
    for p in prepared:
        try:
            out.append(once([p])[0])
        except Exception as error:      # noqa: BLE001 - becomes this file's row
            out.append(error)
    return out


def _row(item: Item, result, cam: Path | None, write: Future | None) -> Row:
    """The CSV row for one item; waits for its overlay to be written."""
    if isinstance(result, Exception):
        return Row(str(item.path), error=_describe(result))
    p = getattr(result, "prediction", result)
    error = ""
    if write is not None and write.exception() is not None:
        error, cam = f"overlay not written: {_describe(write.exception())}", None
    return Row(str(item.path), p.label, dict(p.probabilities), p.is_mri, p.mri_score,
               p.outcome, tuple(p.reasons), p.familiarity, str(cam) if cam else "", error)


def classify_files(predictor: Predictor, items: Sequence[Item], batch_size: int = 16,
                   cams: str | Path | None = None, method: str | None = None,
                   alpha: float = 0.45, workers: int = 2, cams_format: str = "png") -> Iterator[Row]:
    """Yield one `Row` per item, in order. With `cams`, the prediction and a heatmap overlay
    (RGB, the input's size, PNG or `cams_format` "jpg") come from one `explain_batch` pass;
    else `predict_batch`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if cams_format not in CAM_FORMATS:
        raise ValueError(f"cams_format must be one of {', '.join(CAM_FORMATS)}, got {cams_format!r}")
    cam_paths = (_cam_paths(items, Path(cams), cams_format) if cams is not None
                 else [None] * len(items))
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="brainmri-io") as pool:
        ahead: deque[Future] = deque()
        queued = iter(items)

        def top_up() -> None:           # keep two batches decoding ahead of the model
            while len(ahead) < 2 * batch_size:
                item = next(queued, None)
                if item is None:
                    return
                ahead.append(pool.submit(_prepare, predictor, item.path))

        pending: list[tuple[Item, object, Path | None, Future | None]] = []
        for start in range(0, len(items), batch_size):
            top_up()
            chunk = items[start:start + batch_size]
            results: list = [ahead.popleft().result() for _ in chunk]
            top_up()
            good = [i for i, r in enumerate(results) if isinstance(r, Prepared)]
            if good:
                try:
                    done = _run_model(predictor, [results[i] for i in good], cams is not None,
                                      method, alpha)
                except Exception as error:       # noqa: BLE001 - the lone item's row
                    done = [error]
                for i, r in zip(good, done):
                    results[i] = r
            # Rows of the previous batch: its overlays were written while this one ran.
            yield from (_row(*p) for p in pending)
            pending = []
            for item, result, cam in zip(chunk, results, cam_paths[start:start + batch_size]):
                write = None
                if cam is not None and not isinstance(result, Exception):
                    write = pool.submit(_write_overlay, cam, result.overlay)
                pending.append((item, result, cam, write))
        yield from (_row(*p) for p in pending)


def write_csv(out: str | Path, rows: Iterable[Row], classes: Sequence[str]) -> Iterator[Row]:
    """Write rows as they come (a generator: iterate it); yields each row after writing it.

    Columns: path, label, p_<class> per class, is_mri, mri_score, outcome, reasons (joined by
    "; "), familiarity, cam, error."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *(f"p_{c}" for c in classes), "is_mri", "mri_score",
                         "outcome", "reasons", "familiarity", "cam", "error"])
        for row in rows:
            probs = row.probabilities or {}
            writer.writerow([row.path, row.label,
                             *(f"{probs[c]:.6f}" if c in probs else "" for c in classes),
                             "" if row.is_mri is None else str(row.is_mri).lower(),
                             "" if math.isnan(row.mri_score) else f"{row.mri_score:.4f}",
                             row.outcome, "; ".join(row.reasons),
                             "" if math.isnan(row.familiarity) else f"{row.familiarity:.4f}",
                             row.cam, row.error])
            f.flush()
            yield row
