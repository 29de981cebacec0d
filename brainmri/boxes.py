"""Tumour boxes: `tumor_boxes.csv` beside a Kaggle-layout folder (see its PROVENANCE.md).

    boxes = load_boxes(boxes_csv(root))          # root / "tumor_boxes.csv"
    found = box_for(sample.path, root, boxes)     # ((x0, y0, x1, y1), (width, height)) or None

Boxes are in the pixels of the scan file they name. Boxes of Training scans may train
(`train.paint`, `train.guidance`); boxes of the validation scans carved from Training choose
settings; boxes of Testing scans only measure (PROVENANCE.md).
"""
from __future__ import annotations

import csv
from pathlib import Path

Box = tuple[tuple[int, int, int, int], tuple[int, int]]     # (x0, y0, x1, y1), (width, height)
CSV_NAME = "tumor_boxes.csv"


def boxes_csv(root: Path) -> Path:
    """Where a Kaggle-layout folder keeps its boxes."""
    return Path(root) / CSV_NAME


def load_boxes(path: Path) -> dict[str, Box]:
    """CSV path -> {relative path: ((x0, y0, x1, y1), (width, height))}; also keyed by file name."""
    if not path.is_file():
        raise FileNotFoundError(f"boxes CSV not found: {path}")
    boxes = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                value = (tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")),
                         (int(row["width"]), int(row["height"])))
            except (KeyError, ValueError) as error:
                raise ValueError(f"{path.name}: bad row {row}: {error}") from None
            rel = row["path"].replace("\\", "/")
            boxes[rel] = value
            boxes.setdefault(rel.rsplit("/", 1)[-1], value)
    return boxes


def box_for(path: Path, root: Path, boxes: dict[str, Box]) -> Box | None:
    """The box of the scan at `path` (looked up relative to `root`, else by file name), or None."""
    rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return boxes.get(rel) or boxes.get(path.name)
