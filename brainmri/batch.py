"""Classifying many files: batched inference with decoding overlapped, one row per file.

    from brainmri.batch import find_images, classify_files, write_csv
    rows = classify_files(predictor, find_images(["scans/"]), cams="cams/")
    write_csv("results.csv", rows, predictor.classes)

The command line is `python -m brainmri classify` (see `brainmri/__main__.py`). Files are
read, decoded and prepared by a small thread pool while the model runs on the previous batch;
overlays are written by the same pool. A file that cannot be read gives a row with its
`error`; it never stops the run.

Whole scans (`brainmri.scans`: a .zip of DICOM files, a NIfTI volume, a multi-frame DICOM, or
the DICOM files of one series side by side in a folder) go through `brainmri.scanmode`: one
row per slice (`slice` its index; slices outside the head have no label and say so in
`note`) and one row for the scan (`slice` "scan": the finding, the chosen slice's
probabilities, outcome and overlay). An archive holding several series gives one scan per
series, its path suffixed `#<series number>`. A multi-page TIFF is read as one picture, its
first page, and its row's `note` says so.
"""
from __future__ import annotations

import csv
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from .data import image_files
from .io import ImageLoadError, describe
from .overlay import DEFAULT_ALPHA
from .outcomes import Outcome, Reason, shown
from .predictor import Predictor
from .presets import Prepared

SCAN_ROW = "scan"         # the `slice` of a scan's own row
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")    # TIFF, BigTIFF
PAGES_NOTE = ("the first of {pages} pages answered; the app's slice chooser, or its API's "
              "slice_no (0 to {last}), answers the others")


@dataclass(frozen=True)
class Item:
    path: Path          # the file to read (a folder, for a series of files side by side)
    name: Path          # relative name for its overlay: <folder argument's name>/<sub/path>
    scan: bool = False  # read as a whole scan (`brainmri.scans.read_scan`)
    members: tuple[Path, ...] = ()   # a series of files side by side: its files


@dataclass(frozen=True)
class Row:
    path: str
    label: str = ""
    probabilities: dict[str, float] | None = None
    is_mri: bool | None = None
    mri_score: float = math.nan
    outcome: Outcome | None = None  # None without a prediction
    reasons: tuple[Reason, ...] = ()  # the refusals or the cautions
    familiarity: float = math.nan # in [0, 1]; nan when the checkpoint has no detector
    cam: str = ""                 # the overlay file written, if any
    error: str = ""               # why this file has no prediction ("" when it has one)
    slice: str = ""               # a scan's slice index, SCAN_ROW for its own row, "" for a file
    position: float = math.nan    # the slice's place along the scan's normal, mm
    note: str = ""                # not classified (outside the head), the scan's summary and notes


def find_images(paths: Iterable[str | Path]) -> list[Item]:
    """Files as given, and every file under each folder (recursively, sorted; hidden files and
    notes such as .txt/.csv skipped). Files are images by content: a bad one fails later, as a
    row. A path that does not exist is kept, so that it too gets a row saying so. Scans
    (`brainmri.scans.is_scan`) are marked `scan`; in a folder, the single-frame DICOM files of
    one series side by side become one scan item (the folder, with the series)."""
    items: list[Item] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            items += _folder_items(path)
        else:
            items.append(Item(path, Path(path.name), _is_scan(path)))
    return items


def _is_scan(path: Path) -> bool:
    from .scans import is_scan
    return path.is_file() and is_scan(path)


def _folder_items(folder: Path) -> list[Item]:
    """A folder's files as items; DICOM files sharing a folder and a series as one scan item,
    placed where its first file was."""
    from .scans import dicom_series_key
    root = Path(folder.resolve().name)
    items: list[Item] = []
    series: dict[tuple[Path, str], list[int]] = {}
    for f in image_files(folder):
        key = dicom_series_key(f)
        if key is not None:
            series.setdefault((f.parent, key), []).append(len(items))
        items.append(Item(f, root / f.relative_to(folder), key is None and _is_scan(f)))
    drop: set[int] = set()
    for (parent, key), members in series.items():
        if len(members) > 1:
            first = members[0]
            name = root / parent.relative_to(folder) if parent != folder else root
            items[first] = Item(parent, name, True, tuple(items[i].path for i in members))
            drop.update(members[1:])
    return [item for i, item in enumerate(items) if i not in drop]


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


def _pages_note(path: Path) -> str:
    """`PAGES_NOTE` for a TIFF of several pages (its row answers the first); "" otherwise."""
    try:
        with path.open("rb") as f:
            if f.read(4) not in TIFF_MAGIC:
                return ""
        pages = describe(path).frames
    except (OSError, ImageLoadError):
        return ""
    return PAGES_NOTE.format(pages=pages, last=pages - 1) if pages > 1 else ""


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
    error = ""
    if write is not None and write.exception() is not None:
        error, cam = f"overlay not written: {_describe(write.exception())}", None
    return _prediction_row(str(item.path), getattr(result, "prediction", result), cam, error,
                           note=_pages_note(item.path))


def _prediction_row(path: str, p, cam: Path | None = None, error: str = "", **extra) -> Row:
    label, probabilities = shown(p.outcome, p.label, p.probabilities)   # a refusal: neither
    return Row(path, label or "", probabilities, p.is_mri, p.mri_score, p.outcome,
               tuple(p.reasons), p.familiarity, str(cam) if cam else "", error, **extra)


def read_scans(item: Item, axis: int | None = None) -> list[tuple[str, object, float]]:
    """[(path for the CSV, Scan or the exception reading it, seconds spent reading it)]: one
    per series (an archive's listing counted in its first). `axis`: the plane to read each in
    (`read_scan`; None: a NIfTI volume's acquired plane, DICOM as stored)."""
    from .scans import SeriesChoice, read_scan
    source = list(item.members) if item.members else item.path
    start = time.perf_counter()
    try:
        scan = read_scan(source, axis=axis)
        return [(str(item.path), scan, time.perf_counter() - start)]
    except SeriesChoice as choice:
        out = []
        for s in choice.series:
            where = f"{item.path}#{s.number}"
            try:
                scan = read_scan(source, series=s.key, axis=axis)
            except (ImageLoadError, OSError) as error:
                scan = error
            now = time.perf_counter()
            out.append((where, scan, now - start))
            start = now
        return out
    except (ImageLoadError, OSError) as error:
        return [(str(item.path), error, time.perf_counter() - start)]


# Called with each scan classified: (item, its CSV path, the Scan, its ScanResult, the
# time.perf_counter() at which reading it began), e.g. to write its report from that result.
OnScan = Callable[[Item, str, object, object, float], None]


def scan_rows(predictor: Predictor, item: Item, cam: Path | None = None, batch_size: int = 16,
              method: str | None = None, alpha: float = DEFAULT_ALPHA,
              on_scan: OnScan | None = None, axis: int | None = None) -> Iterator[Row]:
    """One row per slice and one per scan (`slice` SCAN_ROW) for a scan item; with `cam`, the
    chosen slice's overlay is written there (`-<series number>` added for several series);
    `on_scan` is given each scan classified, before its rows; `axis`: as `read_scans`."""
    from .scanmode import classify_scan
    scans = read_scans(item, axis)
    for n, (path, scan, seconds) in enumerate(scans, start=1):
        if isinstance(scan, Exception):
            yield Row(path, error=_describe(scan), slice=SCAN_ROW)
            continue
        start = time.perf_counter() - seconds
        try:
            result = classify_scan(predictor, scan, batch_size, method, alpha)
        except Exception as error:      # noqa: BLE001 - becomes this scan's row
            yield Row(path, error=_describe(error), slice=SCAN_ROW)
            continue
        if on_scan is not None:
            on_scan(item, path, scan, result, start)
        error, written = "", None
        if cam is not None and result.explanation is not None:
            written = cam if len(scans) == 1 else cam.with_name(f"{cam.stem}-{n}{cam.suffix}")
            try:
                _write_overlay(written, result.explanation.overlay)
            except OSError as failure:
                error, written = f"overlay not written: {_describe(failure)}", None
        yield from result_rows(path, scan, result, str(written or ""), error)


def result_rows(path: str, scan, result, cam: str = "", error: str = "") -> Iterator[Row]:
    """The rows of a classified scan (`scanmode.classify_scan`'s result): one per slice (one
    outside the head says so) and the scan's own (`slice` SCAN_ROW: its finding with the chosen
    slice's answer, and a note summing it up), as the CLI writes them and the app offers them."""
    from .scanmode import OUTSIDE, ranges
    for s in result.slices:
        if s.prediction is None:
            yield Row(path, slice=str(s.index), position=s.position, note=OUTSIDE)
        else:
            yield _prediction_row(path, s.prediction, slice=str(s.index), position=s.position)
    outside = sum(not s.brain for s in result.slices)
    plane = f" ({scan.plane})" if scan.plane else ""
    summary = [f"{len(result.slices)} slices{plane}, {outside} outside the head"]
    if result.chosen is not None:
        summary.append(f"{result.finding} on slices {ranges(result.finding_slices)}; "
                       f"chosen slice {result.chosen}")
    note = "; ".join(summary + list(result.notes))
    if result.chosen is None:
        yield Row(path, outcome=result.outcome, error=error, slice=SCAN_ROW, note=note)
        return
    p = result.slices[result.chosen].prediction
    label, probabilities = shown(result.outcome, result.finding, p.probabilities)
    yield Row(path, label or "", probabilities, p.is_mri, p.mri_score, result.outcome,
              tuple(p.reasons), p.familiarity, cam, error, SCAN_ROW,
              result.slices[result.chosen].position, note)


def classify_files(predictor: Predictor, items: Sequence[Item], batch_size: int = 16,
                   cams: str | Path | None = None, method: str | None = None,
                   alpha: float = DEFAULT_ALPHA, workers: int = 2, cams_format: str = "png",
                   on_scan: OnScan | None = None, axis: int | None = None) -> Iterator[Row]:
    """Yield one `Row` per image item, in order, and for a scan item (`scan_rows`, `on_scan`
    given each scan classified, `axis` the plane to read it in) one per slice and one for the
    scan. With `cams`, the prediction and a heatmap overlay (RGB, the input's size, PNG or
    `cams_format` "jpg") come from one `explain_batch` pass; else `predict_batch`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if cams_format not in CAM_FORMATS:
        raise ValueError(f"cams_format must be one of {', '.join(CAM_FORMATS)}, got {cams_format!r}")
    cam_paths = (_cam_paths(items, Path(cams), cams_format) if cams is not None
                 else [None] * len(items))
    run: list[int] = []
    for i, item in enumerate(items):
        if item.scan:
            yield from _classify_images(predictor, [items[j] for j in run], [cam_paths[j] for j in run],
                                        batch_size, cams is not None, method, alpha, workers)
            run = []
            yield from scan_rows(predictor, item, cam_paths[i], batch_size, method, alpha, on_scan, axis)
        else:
            run.append(i)
    yield from _classify_images(predictor, [items[j] for j in run], [cam_paths[j] for j in run],
                                batch_size, cams is not None, method, alpha, workers)


def _classify_images(predictor: Predictor, items: Sequence[Item], cam_paths: Sequence[Path | None],
                     batch_size: int, explain: bool, method, alpha: float, workers: int
                     ) -> Iterator[Row]:
    """`classify_files` for single images: decoding ahead of the model, overlays behind it."""
    if not items:
        return
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
                    done = _run_model(predictor, [results[i] for i in good], explain, method, alpha)
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

    Columns: path, label, p_<class> per class, is_mri, mri_score, outcome, reasons (their
    sentences), reason_codes (joined by ";"), familiarity, cam, error, slice, position_mm, note.
    A refused file's label and probabilities are empty."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", *(f"p_{c}" for c in classes), "is_mri", "mri_score",
                         "outcome", "reasons", "reason_codes", "familiarity", "cam", "error", "slice",
                         "position_mm", "note"])
        for row in rows:
            probs = row.probabilities or {}
            writer.writerow([row.path, row.label,
                             *(f"{probs[c]:.6f}" if c in probs else "" for c in classes),
                             "" if row.is_mri is None else str(row.is_mri).lower(),
                             "" if math.isnan(row.mri_score) else f"{row.mri_score:.4f}",
                             row.outcome.value if row.outcome else "",
                             " ".join(r.text for r in row.reasons),
                             ";".join(r.code for r in row.reasons),
                             "" if math.isnan(row.familiarity) else f"{row.familiarity:.4f}",
                             row.cam, row.error, row.slice,
                             "" if math.isnan(row.position) else f"{row.position:.2f}", row.note])
            f.flush()
            yield row
