"""Command line: classify many scans into a CSV, optionally with heatmap overlays.

    python -m brainmri classify scans/ one.jpg --out results.csv --cams cams/
    brainmri classify scans/ --out results.csv          # the same, once installed (pyproject.toml)
    python -m brainmri classify one.jpg --report reports/      # also a one-page PDF per scan
    python -m brainmri classify series.zip head.nii.gz --out scans.csv   # whole scans
    python -m brainmri classify head.nii.gz --plane axial        # a volume's axial slices

`--model` is a registered model's name (`<name>.safetensors` under --checkpoints; default:
the registry's declared default, `brainmri.models.default_model`) or a path to a .safetensors
file. Folders are searched recursively. Every image gives one CSV row; a file
that cannot be read gets a row with its `error` and the run goes on. A whole scan (a .zip of
DICOM files, the DICOM files of one series in a folder, a NIfTI volume, a multi-frame DICOM)
gives one row per slice and one for the scan (`slice` = scan: its finding, brainmri.scanmode). The resolved arguments
and a summary are saved next to the CSV (`<out>.json`). Research and education only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from .batch import CAM_FORMATS, SCAN_ROW, classify_files, find_images, write_csv
from .cam import METHODS, canonical_method
from .checkpoint import CheckpointError
from .models import ARCHS, default_model
from .overlay import DEFAULT_ALPHA
from .scans import WHOLE_SCAN
from .volumes import ACQUIRED, PLANE_CHOICES, axis_of


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m brainmri", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("classify", help="classify image files and folders into a CSV",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("paths", nargs="+", metavar="PATH", help=f"image files, whole scans ({WHOLE_SCAN}) and/or "
                        "folders (recursive)")
    c.add_argument("--model", default=default_model(),
                   help=f"{' | '.join(ARCHS)} (from --checkpoints) or a .safetensors path")
    c.add_argument("--checkpoints", default="checkpoints", help="folder of <name>.safetensors")
    c.add_argument("--out", default="results.csv", help="CSV to write")
    c.add_argument("--cams", default=None, metavar="DIR",
                   help="also write heatmap overlays (RGB, format per --cams-format) into this folder")
    c.add_argument("--cams-format", default="png", choices=CAM_FORMATS,
                   help="overlay files: png (lossless) or jpg (quality 95: quicker to write, smaller)")
    c.add_argument("--method", default=None,
                   help=f"CAM method for --cams ({', '.join(METHODS)}); default: the checkpoint's")
    c.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="overlay opacity, 0..1")
    c.add_argument("--report", default=None, metavar="DIR",
                   help="also write a PDF report per readable image into this folder "
                        "(scan, overlay, probabilities, model and method, outcome, date; "
                        "one more forward pass each); a whole scan's has its chosen slice's page "
                        "and the finding along its slices (one per series; from the CSV's "
                        "answer, its chosen slice answered once more)")
    c.add_argument("--plane", default=ACQUIRED, choices=PLANE_CHOICES,
                   help="a volume's slices: the plane it was acquired in (a NIfTI volume: across its "
                        "thickest voxels, else axial; a DICOM series: as stored), or this one (a DICOM "
                        "series cut in it when its slices are parallel and evenly spaced)")
    c.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    c.add_argument("--workers", type=int, default=2, help="threads decoding images and writing overlays")
    c.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...; default: cuda if present")
    c.add_argument("--threads", type=int, default=None, help="torch CPU threads; default: torch's")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def resolve_model(model: str, checkpoints: str | Path) -> Path:
    if model.endswith(".safetensors") or "/" in model or "\\" in model:
        path = Path(model)
    else:
        path = Path(checkpoints) / f"{model}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def classify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from tqdm import tqdm

    from .predictor import Predictor

    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f"--alpha must be in 0..1, got {args.alpha}")
    try:
        method = canonical_method(args.method) if args.method else None
        checkpoint = resolve_model(args.model, args.checkpoints)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        predictor = Predictor.from_checkpoint(checkpoint, args.device)
    except CheckpointError as error:
        parser.error(str(error))
    items = find_images(args.paths)
    if not items:
        parser.error("no files found in " + ", ".join(args.paths))

    start, errors, outcomes, slices = time.perf_counter(), 0, Counter(), 0
    reports = Reports(predictor, args.report, method, args.alpha) if args.report else None
    rows = classify_files(predictor, items, args.batch_size, args.cams, method, args.alpha,
                          args.workers, args.cams_format, on_scan=reports.scan if reports else None,
                          axis=axis_of(args.plane))
    with tqdm(total=len(items), unit="file", disable=args.no_progress, file=sys.stderr) as bar:
        for row in write_csv(args.out, rows, predictor.classes):
            if row.slice not in ("", SCAN_ROW):        # a scan's slice: counted in its scan
                slices += 1
                continue
            errors += bool(row.error)
            outcomes["error" if row.outcome is None else row.outcome.value] += 1
            bar.update()          # an archive of several series moves it once per series
    if reports is not None:
        reports.images(items)
    seconds = time.perf_counter() - start
    scans = sum(item.scan for item in items)
    summary = {"reports": reports.written if reports else 0, "images": len(items) - scans, "scans": scans,
               "scan_slices": slices, "errors": errors, "outcomes": dict(outcomes),
               "seconds": round(seconds, 3),
               "images_per_second": round((len(items) - scans + slices) / seconds, 2),
               "checkpoint": str(checkpoint), "model": predictor.name,
               "method": (method or predictor.default_method) if args.cams else None,
               "device": str(predictor.device), "torch_threads": torch.get_num_threads()}
    Path(args.out).with_suffix(".json").write_text(
        json.dumps({"args": vars(args), "summary": summary}, indent=2, default=str) + "\n")
    print(f"{len(items)} files ({scans} scans, {slices} slices), {errors} errors, "
          f"{summary['images_per_second']} img/s "
          f"-> {args.out}", file=sys.stderr)
    return 0


class Reports:
    """--report: one PDF per readable item, `<folder>/<item name>.pdf`, as the app's report
    button writes it. A whole scan's (`report.write_scan_report`, one per series,
    `<name>-series<N>.pdf` where it holds several) is written from the answer the CSV pass
    gave (`scan`, `classify_files`'s `on_scan`); an image's from one more pass (`images`).
    What cannot be read already has its error in the CSV."""

    def __init__(self, predictor, folder: str | Path, method: str | None, alpha: float):
        from .service import Service
        self.folder, self.method, self.alpha = Path(folder), method, alpha
        self.key, self.model_name = predictor.meta.get("arch", predictor.name), predictor.name
        self.service = Service({self.key: predictor}, warmup=False)
        self.written = 0

    def path(self, item, where: str) -> Path:
        name = item.name.with_suffix("")
        base = self.folder / (name.with_suffix("") if item.name.name.endswith(".nii.gz") else name)
        series = f"-series{where.rsplit('#', 1)[1]}" if "#" in where else ""
        return base.with_name(f"{base.name}{series}.pdf")

    def scan(self, item, where: str, scan, result, start: float) -> None:
        from .report import write_scan_report
        from .scanview import view_of
        self._write(where, lambda: write_scan_report(
            view_of(self.service, scan, result, self.key, self.method, self.alpha, start),
            self.path(item, where), source=Path(where).name, model_name=self.model_name))

    def images(self, items) -> None:
        from .report import source_name, write_report
        for item in items:
            if not item.scan:
                self._write(str(item.path), lambda: write_report(
                    self.service.classify(item.path, self.key, self.method, alpha=self.alpha),
                    self.path(item, str(item.path)), source=source_name(item.path),
                    model_name=self.model_name))

    def _write(self, where: str, write) -> None:
        """Run `write`, counting it; what cannot be read is skipped (its error is in the CSV),
        a report that cannot be written is said on stderr and the run goes on."""
        from .io import ImageLoadError
        try:
            write()
        except (ImageLoadError, ValueError):
            return
        except OSError as error:
            print(f"report not written for {where}: {error}", file=sys.stderr)
            return
        self.written += 1


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    return classify(args, parser)


if __name__ == "__main__":
    sys.exit(main())
