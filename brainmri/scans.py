"""Whole scans: a DICOM series (a .zip or a folder of files), a multi-frame DICOM or a NIfTI
volume, read as an ordered stack of 2-D slices.

    from brainmri.scans import read_scan, list_series, is_scan
    scan = read_scan("series.zip")                  # Scan: slices ordered along the normal
    scan = read_scan("head.nii.gz", axis=0)         # sagittal slices of a volume
    scan = read_scan("series.zip", axis=1)          # an axial series cut coronally
    list_series("study.zip")                        # several series: pick one by key or number
    read_scan("study.zip", series="2")

- DICOM series: every DICOM file of the chosen series (SeriesInstanceUID; several in one
  archive raise `SeriesChoice`, which lists them by SeriesDescription), ordered by
  ImagePositionPatient projected on the slice normal (the cross product of the two
  ImageOrientationPatient directions), InstanceNumber when positions are missing. Slices must
  share one size and one orientation, and no two may share a position (several echoes or
  time points in one series); uneven spacing (a missing slice) is a note, not a refusal.
  Pixels are shown as stored (made square), through each file's own window, or one window for
  the whole series (1st-99th percentile) when the files carry none, so empty slices stay dark.
  Parallel, evenly spaced grey slices make a volume (`Scan.acquired` names their plane):
  `axis` naming another plane cuts it as a NIfTI volume is cut (`_series_volume`).
- Multi-frame DICOM: each frame a slice, ordered by its plane position when the file has one;
  cut in another plane as a series is.
- NIfTI-1/2: reoriented to RAS+, the slices along `axis` (0 sagittal, 1 coronal, 2 axial;
  default: the axis it was acquired along, `volumes.acquired_axis`), each shown as
  `volumes.display_plane` does with square pixels; one window for the whole volume. 4-D refused.
The Modality travels with every slice (`volumes.with_modality`), so a CT series is refused
per slice by `brainmri.mri_check`, as a single CT file is. A file that cannot be read inside
an archive is skipped and named in `Scan.notes`; limits (`Limits`) stop archive and
decompression bombs before they are read. Every refusal is an `ImageLoadError` a user can read.
"""
from __future__ import annotations

import io
import math
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from . import volumes
from .io import (IMAGE_FORMATS, MAX_BYTES, MAX_PIXELS, MAX_SLICES, ImageLoadError, ImageSource,
                 check_size, describe, read_bytes)
from .inputs import MAX_VOXELS

PLANES = volumes.AXES                         # the patient axis the slice normal runs along
SKIPPED = ("__MACOSX", ".DS_Store", "Thumbs.db", "DICOMDIR")


WHOLE_SCAN = "a .zip or folder of one DICOM series, a multi-frame DICOM file or a NIfTI volume"


@dataclass(frozen=True)
class Limits:
    """What one scan may hold; over any of them is a refusal, checked before reading more."""
    files: int = 2048                       # files in an archive or folder
    upload_bytes: int = 512 * 2**20         # the archive or volume file as uploaded
    file_bytes: int = MAX_BYTES             # one file inside an archive or folder, unpacked
    total_bytes: int = volumes.MAX_VOLUME_BYTES   # all files together, unpacked
    slices: int = MAX_SLICES                # slices in the scan
    voxels: int = MAX_VOXELS                # slices x rows x columns
    elements: int = 1_000_000               # DICOM data elements and items, all files together


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in an archive or folder."""
    key: str            # SeriesInstanceUID, or a stand-in when the files have none
    number: int         # 1, 2, ... in the order listed: what a user may type
    description: str    # SeriesDescription, else "" (label() says "series <n>")
    modality: str
    files: int

    def label(self) -> str:
        name = self.description or f"series {self.number}"
        return f"{self.number}: {name} ({self.files} file{'s' * (self.files != 1)}" \
               f"{', ' + self.modality if self.modality else ''})"


class SeriesChoice(ImageLoadError):
    """Several series in one archive and none chosen; `series` lists them."""

    def __init__(self, series: list[SeriesInfo]):
        self.series = series
        super().__init__(f"this archive holds {len(series)} series; pick one: "
                         + "; ".join(s.label() for s in series))


@dataclass(frozen=True)
class Scan:
    """An ordered stack of 2-D slices of one scan.

    slices: 8-bit PIL images ("L", or "RGB" for colour DICOM), one size, ordered along the
    slice normal (inferior to superior, right to left, posterior to anterior in patient terms
    for axial, sagittal and coronal series), each with its Modality (`volumes.with_modality`).
    positions: mm along the normal, ascending (NaN when the files give none)."""
    slices: tuple[Image.Image, ...]
    positions: tuple[float, ...]
    source: str                      # "DICOM series", "DICOM multi-frame", "NIfTI-1", "NIfTI-2"
    plane: str = ""                  # "axial", "coronal", "sagittal", "" when unknown
    description: str = ""            # SeriesDescription, or the file's name
    modality: str = ""
    notes: tuple[str, ...] = field(default=())   # what a user should know: skipped files, gaps
    acquired: str = ""               # a volume's acquired plane: it can be read in any plane
                                     # (`read_scan(axis=...)`); "": only as stored (a DICOM
                                     # series without positions, unevenly spaced, in colour)
    stretch: float = 1.0             # how far each slice's pixels were drawn out along one side
                                     # to be square (`volumes.stretch`; 1: not at all)

    @property
    def volume(self) -> bool:
        """A 3-D volume (NIfTI, or DICOM slices that make one), whose slices `read_scan` can cut
        in any of the three planes."""
        return bool(self.acquired)

    @property
    def reformatted(self) -> bool:
        """Cut across the slices it was acquired as, each pixel drawn out (not an isotropic
        volume cut in another plane): a kind of picture the models were never trained or
        checked on."""
        return self.volume and volumes.cut_across(self.plane, self.acquired, self.stretch) is not None

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def spacing(self) -> float:
        """Median distance between neighbouring slices in mm; NaN when unknown."""
        steps = np.diff(np.asarray(self.positions, float))
        return float(np.median(steps)) if steps.size and np.isfinite(steps).all() else math.nan


# ----------------------------------------------------------------------------- what is a scan
def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def is_archive(source: ImageSource) -> bool:
    """Whether `source` is a folder or a .zip: files of a scan, never one picture. Unreadable:
    False."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return True
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return False
    try:
        return _is_zip(_head(source))
    except (ImageLoadError, OSError):
        return False


def is_scan(source: ImageSource) -> bool:
    """Whether `source` is read as a whole scan: a folder, a .zip, a NIfTI volume of more
    than one slice along the axis it was acquired along, or a DICOM file with several frames.
    Unreadable: False."""
    if is_archive(source):
        return True
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return False
    try:
        kind = volumes.sniff(_head(source))
        if kind == "image":
            return False
        info = describe(source, max_bytes=Limits.upload_bytes)
    except ImageLoadError:
        return False
    return info.frames > 1


def _head(source, size: int = 64 * 1024) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:size])
    path = Path(source)
    if not path.is_file():
        raise ImageLoadError(f"no such file: {path.name}")
    with path.open("rb") as f:
        return f.read(size)


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class _File:
    name: str
    data: bytes


def _budget(files: list[_File], name: str, size: int, limits: Limits, total: int) -> None:
    if len(files) >= limits.files:
        raise ImageLoadError(f"the scan holds more than {limits.files} files, over the limit")
    if size > limits.file_bytes:
        raise ImageLoadError(f"{name} unpacks to more than {limits.file_bytes / 2**20:.0f} MiB, "
                             "over the limit for one file")
    if total + size > limits.total_bytes:
        raise ImageLoadError(f"the scan unpacks to more than {limits.total_bytes / 2**20:.0f} MiB, "
                             "over the limit")


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p in SKIPPED for p in parts)


def _zip_files(data: bytes, limits: Limits) -> list[_File]:
    """The archive's files, read with their declared and their actual sizes bounded."""
    try:                                # its end record, read before the list it counts
        listed = zipfile._EndRecData(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - a damaged record: ZipFile names the damage below
        listed = None
    entries, size = (listed[zipfile._ECD_ENTRIES_TOTAL], listed[zipfile._ECD_SIZE]) if listed else (0, 0)
    # Room for what macOS adds (a ._ twin per file, folders) and long names, no more: ZipFile
    # parses the whole list (by its size, whatever the count says) before anything is counted.
    if entries > 4 * limits.files or size > 4 * limits.files * 512:
        raise ImageLoadError(f"the .zip archive lists {entries:,} entr{'y' if entries == 1 else 'ies'} "
                             f"in a directory of {size / 1024:,.0f} KiB, more than a scan of "
                             f"{limits.files} files may have")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not _skipped(m.filename)]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise ImageLoadError(f"the .zip archive is damaged ({error})") from None
    files: list[_File] = []
    total = 0
    for m in members:
        _budget(files, m.filename, m.file_size, limits, total)
        try:
            with archive.open(m) as f:      # zipfile stops at the declared size (CRC checked)
                content = f.read(min(m.file_size, limits.file_bytes))
        except RuntimeError as error:       # encrypted
            raise ImageLoadError(f"{m.filename} in the archive is encrypted ({error}); "
                                 "zip it again without a password") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError):
            files.append(_File(m.filename, b""))     # named as unreadable in the notes
            continue
        total += len(content)
        files.append(_File(m.filename, content))
    return files


def _folder_files(folder: Path, limits: Limits) -> list[_File]:
    paths = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and not _skipped(p.relative_to(folder).as_posix())]
    return _listed_files(paths, limits, folder)


def _listed_files(paths: list[Path], limits: Limits, folder: Path | None = None) -> list[_File]:
    files: list[_File] = []
    total = 0
    for path in paths:
        name = path.relative_to(folder).as_posix() if folder is not None else path.name
        if not path.is_file():
            raise ImageLoadError(f"no such file: {name}")
        size = path.stat().st_size
        _budget(files, name, size, limits, total)
        total += size
        files.append(_File(name, path.read_bytes()))
    return files


def dicom_series_key(path: str | os.PathLike) -> str | None:
    """The series (`SeriesInfo.key`) of a single-frame DICOM image file with a preamble,
    from its header, read within an upload's bounds (size, inflation, `volumes.check_elements`);
    None for anything else, including files that cannot be read or are refused."""
    try:
        with open(path, "rb") as f:
            if f.read(132)[128:132] != b"DICM":
                return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = volumes.dataset(read_bytes(path), header_only=True)   # the upload's bounds
    except Exception:  # noqa: BLE001 - unreadable: left to the image path to name
        return None
    if "Rows" not in ds or volumes.frame_count(ds) > 1:
        return None
    return _series_key(ds)


# ----------------------------------------------------------------------------- DICOM series
@dataclass
class _Slice:
    name: str
    ds: object                     # pydicom Dataset with pixels
    frame: int = 0
    position: np.ndarray | None = None     # ImagePositionPatient (3,)
    orientation: np.ndarray | None = None  # ImageOrientationPatient (6,)
    instance: float = math.nan


def _vector(value, n: int) -> np.ndarray | None:
    try:
        v = np.asarray([float(x) for x in value], float)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (n,) and np.isfinite(v).all() else None


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _parse(files: list[_File], limit: int, alone: bool = False,
           max_elements: int = Limits.elements) -> tuple[list[_Slice], list[str]]:
    """DICOM files with pixels -> slices (headers and pixels parsed lazily by pydicom);
    the names of files skipped, with why; a file read `alone` says its own damage instead. A
    deflated file may inflate to `limit` bytes: in an archive or folder, what one file may
    unpack to (`Limits.file_bytes`), so that many small deflate bombs stay cheap; a file on its
    own, what a whole scan may (`Limits.total_bytes`). The files may hold `max_elements` DICOM data
    elements together (each file its own `volumes.MAX_DICOM_ELEMENTS`), counted before pydicom
    parses them one at a time."""
    slices, skipped, others, left = [], [], [], max_elements
    for f in files:
        if not f.data:
            skipped.append(f"{f.name} (cannot be unpacked: the archive is damaged)")
            continue
        if volumes.sniff(f.data) != "dicom":
            others.append(f.data)
            continue
        count = volumes.count_elements(f.data, min(left, volumes.MAX_DICOM_ELEMENTS))
        left -= count
        if left < 0:
            raise ImageLoadError(f"the DICOM files hold more than {max_elements:,} data elements "
                                 "together, far more than a scan has; export the series again")
        try:
            ds = volumes.dataset(f.data, inflate_limit=limit,    # over its own cap: refused there
                                 counted=count <= volumes.MAX_DICOM_ELEMENTS)
        except ImageLoadError as error:
            if alone:
                raise
            skipped.append(f"{f.name} ({error})")
            continue
        slices.append(_Slice(f.name, ds, 0, _vector(ds.get("ImagePositionPatient"), 3),
                             _vector(ds.get("ImageOrientationPatient"), 6),
                             _number(ds.get("InstanceNumber"))))
    notes = []
    if skipped:
        notes.append(f"{len(skipped)} file{'s' * (len(skipped) > 1)} skipped: " + "; ".join(skipped))
    if others:
        notes.append(f"{len(others)} file{'s that are' if len(others) > 1 else ' that is'} not a DICOM "
                     "image ignored")
    pictures = 0 if slices else sum(map(_is_picture, others))
    if pictures:                        # slices zipped as pictures: say where they are answered
        which = ("it is a picture" if len(others) == 1 else
                 "all are pictures" if pictures == len(others) else
                 f"{pictures} {'are pictures' if pictures > 1 else 'is a picture'}")
        notes.append(f"{which}: a picture is one slice, answered on its own; the batch command "
                     "answers a folder of them")
    return slices, notes


def _is_picture(data: bytes) -> bool:
    """Whether Pillow reads `data` as one of the picture formats uploads may be (header only)."""
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS):
            return True
    except Exception:  # noqa: BLE001 - anything Pillow cannot open is not a picture here
        return False


def _description(ds) -> str:
    """A DICOM data set's SeriesDescription, stripped; "" when it has none."""
    return str(ds.get("SeriesDescription", "") or "").strip()


def _series_key(ds) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    return uid or f"{ds.get('SeriesNumber', '')}|{ds.get('SeriesDescription', '')}"


def _group(slices: list[_Slice]) -> tuple[list[SeriesInfo], dict[str, list[_Slice]]]:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(_series_key(s.ds), []).append(s)
    def order(item):
        number = _number(item[1][0].ds.get("SeriesNumber"))
        return (math.isnan(number), number, item[0])
    infos = []
    for n, (key, members) in enumerate(sorted(groups.items(), key=order), start=1):
        ds = members[0].ds
        infos.append(SeriesInfo(key, n, _description(ds),
                                volumes.dicom_modality(ds), len(members)))
    return infos, groups


def _choose(infos: list[SeriesInfo], series: str | int | None) -> SeriesInfo:
    if series is None or series == "":
        if len(infos) > 1:
            raise SeriesChoice(infos)
        return infos[0]
    for s in infos:
        if str(series) in (s.key, str(s.number)):
            return s
    raise ImageLoadError(f"no series {series!r} here; the series are: "
                         + "; ".join(s.label() for s in infos))


def _plane(normal: np.ndarray) -> str:
    return PLANES[int(np.argmax(np.abs(normal)))]


def _order(slices: list[_Slice]) -> tuple[list[_Slice], list[float], str, list[str]]:
    """Slices sorted along their normal -> (slices, positions in mm, plane, notes)."""
    if all(s.position is not None and s.orientation is not None for s in slices):
        first = slices[0].orientation
        if any(np.abs(s.orientation - first).max() > 1e-3 for s in slices):
            raise ImageLoadError("the series' slices do not share one orientation (a localiser "
                                 "or a reformatted series?); export a series of parallel slices")
        normal = np.cross(first[:3], first[3:])
        if np.linalg.norm(normal) < 0.5:
            raise ImageLoadError("the series' ImageOrientationPatient is not two perpendicular "
                                 "directions")
        normal /= np.linalg.norm(normal)
        distance = [float(s.position @ normal) for s in slices]
        order = np.argsort(distance, kind="stable")
        slices, distance = [slices[i] for i in order], [distance[i] for i in order]
        steps = np.diff(distance)
        if steps.size and steps.min() < 1e-3:
            clashes = int(np.count_nonzero(steps < 1e-3))
            raise ImageLoadError(
                f"{clashes + 1} or more slices of the series share one position (several echoes, "
                "time points or acquisitions in one series?); export one volume")
        return slices, distance, _plane(normal), []
    if all(math.isfinite(s.instance) for s in slices):
        slices = sorted(slices, key=lambda s: s.instance)
        note = "ordered by InstanceNumber: the files give no position"
    else:
        slices = sorted(slices, key=lambda s: s.name)
        note = "ordered by file name: the files give neither position nor InstanceNumber"
    return slices, [math.nan] * len(slices), "", [note] if len(slices) > 1 else []


def _check_stack(count: int, rows: int, columns: int, limits: Limits) -> None:
    if count > limits.slices:
        raise ImageLoadError(f"the scan has {count} slices, over the limit of {limits.slices}")
    if count * rows * columns > limits.voxels:
        raise ImageLoadError(f"the scan has {count} slices of {columns}x{rows} pixels, over the "
                             f"limit of {limits.voxels:,} voxels")


def _pictures(slices: list[_Slice], max_pixels: int, limits: Limits, volume: bool = False
              ) -> tuple[list[int], list[Image.Image], list[str]]:
    """Decode and window the ordered slices -> (indices of the slices kept, their pictures,
    notes): with square pixels, each through its file's own window; or, as the slices of a
    `volume` to cut, as stored and through one window (the files' own when they all share one,
    else the series' percentiles, so no slice is brighter than its neighbours). A slice whose
    pixels fail is skipped and named."""
    sizes = {(int(s.ds.get("Rows", 0) or 0), int(s.ds.get("Columns", 0) or 0)) for s in slices}
    if len(sizes) > 1:
        raise ImageLoadError("the series' slices are not all the same size ("
                             + ", ".join(f"{c}x{r}" for r, c in sorted(sizes)) + ")")
    rows, columns = sizes.pop()
    _check_stack(len(slices), rows, columns, limits)
    sides = (1.0, 1.0) if volume else volumes.pixel_sides(slices[0].ds, slices[0].frame)
    check_size(*volumes.square_size((columns, rows), *sides), max_pixels)
    decoded, failed, kept = [], [], []
    for i, s in enumerate(slices):
        try:
            volumes.check_shape(s.ds, max_pixels)
            decoded.append((s, *volumes.frame_values(s.ds, s.frame)))
            kept.append(i)
        except ImageLoadError as error:
            failed.append(f"{s.name} ({error})")
    if not decoded:
        raise ImageLoadError("no slice of the series could be decoded: " + "; ".join(failed))
    grey = [values for _, values, centre, width in decoded if values.ndim == 2]
    one = volume and len({(centre, width) for _, _, centre, width in decoded}) > 1
    shared = (None, None)
    if one or any(centre is None or width is None for _, values, centre, width in decoded):
        lo, hi = _percentiles(grey) if grey else (0.0, 0.0)
        shared = ((lo + hi) / 2, hi - lo)
    windows = [(centre, width) if centre is not None and width is not None and not one else shared
               for _, _, centre, width in decoded]
    pictures = [volumes.square_pixels(volumes.picture(s.ds, values, *w), *sides, max_pixels)
                for (s, values, _, _), w in zip(decoded, windows)]
    notes = [f"{len(failed)} slice{'s' * (len(failed) > 1)} skipped: " + "; ".join(failed)] \
        if failed else []
    return kept, pictures, notes


def _percentiles(stack: list[np.ndarray] | np.ndarray, samples: int = 4_000_000) -> tuple[float, float]:
    """1st and 99th percentiles of the finite values of a whole volume (a strided sample)."""
    flat = np.concatenate([np.ravel(a) for a in stack]) if isinstance(stack, list) else stack.ravel()
    flat = flat[:: max(1, flat.size // samples)]
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return 0.0, 0.0
    lo, hi = np.percentile(flat, (1, 99))
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return float(lo), float(hi)


def _series(files: list[_File], series: str | int | None, axis: int | None, max_pixels: int,
            limits: Limits, alone: bool = False) -> Scan:
    """The scan in `files` (an archive's or folder's, or one file read `alone`)."""
    slices, notes = _parse(files, limits.total_bytes if alone else limits.file_bytes, alone, limits.elements)
    if not slices:
        raise ImageLoadError("no DICOM image found in the archive or folder"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    infos, groups = _group(slices)
    chosen = _choose(infos, series)
    members = groups[chosen.key]
    if len(members) == 1 and volumes.frame_count(members[0].ds) > 1:
        scan = _multiframe(members[0].ds, members[0].name, axis, max_pixels, limits)
        return replace(scan, description=chosen.description or scan.description,
                       notes=tuple(notes) + scan.notes)
    _check_stack(len(members), 1, 1, limits)
    ordered, positions, plane, order_notes = _order(members)
    return _stack(ordered, positions, plane, axis, max_pixels, limits, "DICOM series",
                  chosen.description, chosen.modality, notes + order_notes)


def _stack(ordered: list[_Slice], positions: list[float], plane: str, axis: int | None,
           max_pixels: int, limits: Limits, source: str, description: str, modality: str,
           notes: list[str], damaged: str = "") -> Scan:
    """DICOM slices ordered along their normal, as stored (`axis` None or their own plane), or
    cut in another plane from the volume they make (`_series_volume`): parallel, evenly spaced,
    grey slices (the scan's `acquired` says they do). A slice that cannot be decoded is skipped
    with a note, or, with `damaged`, refused with that message."""
    asked = volumes.check_axis(axis)
    recut = asked is not None and PLANES[asked] != plane
    kept, pictures, decode_notes = _pictures(ordered, max_pixels, limits, volume=recut)
    if damaged and decode_notes:
        raise ImageLoadError(damaged + decode_notes[0])
    positions = [positions[i] for i in kept]
    gaps = _gaps(positions)
    why = ("its files give no position" if not plane else "it has one slice" if len(pictures) < 2
           else "its slices are unevenly spaced" if gaps
           else "it is in colour" if any(p.mode != "L" for p in pictures) else "")
    notes = tuple(notes + decode_notes + gaps)
    if not recut:
        return Scan(tuple(pictures), tuple(positions), source, plane, description, modality, notes,
                    acquired="" if why else plane)
    if why:
        raise ImageLoadError(f"this {source} can be shown only as stored ({plane or 'in its own plane'}), "
                             f"not cut in the {PLANES[asked]} plane: {why}")
    volume, affine = _series_volume([ordered[i] for i in kept], positions, pictures)
    return _cut(volume, affine, asked, plane, (0.0, 255.0), max_pixels, limits, source, description,
                modality, notes)


def _series_volume(slices: list[_Slice], positions: list[float], pictures: list[Image.Image]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Parallel, evenly spaced grey slices (ordered along the normal, `positions` in mm along
    it) -> the (X, Y, Z) RAS+ volume they make and its affine (`volumes.to_ras`), from their
    ImageOrientationPatient, the first one's ImagePositionPatient and the pixel spacing."""
    o = slices[0].orientation
    normal = np.cross(o[:3], o[3:])
    normal /= np.linalg.norm(normal)
    row_mm, col_mm = volumes.pixel_sides(slices[0].ds, slices[0].frame)
    lps = np.eye(4)                      # voxel (column, row, slice) -> patient LPS+ mm
    lps[:3, 0], lps[:3, 1] = o[:3] * col_mm, o[3:] * row_mm
    lps[:3, 2], lps[:3, 3] = normal * float(np.median(np.diff(positions))), slices[0].position
    stack = np.stack([np.asarray(p) for p in pictures])            # (slice, row, column) uint8
    return volumes.to_ras(np.transpose(stack, (2, 1, 0)), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps)


def _gaps(positions: list[float]) -> list[str]:
    """A note when the slices are unevenly spaced (a slice missing, or two stacks joined)."""
    steps = np.diff(np.asarray(positions, float))
    if steps.size > 1 and np.isfinite(steps).all() and steps.max() > 1.5 * np.median(steps):
        return [f"uneven slice spacing ({steps.min():.2f} to {steps.max():.2f} mm): "
                "a slice may be missing"]
    return []


def _multiframe(ds, name: str, axis: int | None, max_pixels: int, limits: Limits) -> Scan:
    frames = volumes.frame_count(ds)
    _check_stack(frames, int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), limits)
    slices = [_Slice(name, ds, i,
                     _vector(volumes.frame_attr(ds, i, "PlanePositionSequence", "ImagePositionPatient"), 3),
                     _vector(volumes.frame_attr(ds, i, "PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                     float(i)) for i in range(frames)]
    if len({tuple(s.position) if s.position is not None else None for s in slices}) < frames:
        for s in slices:                # one position for all frames (legacy): frame order
            s.position = None
    ordered, positions, plane, notes = _order(slices)
    notes = [n for n in notes if not n.startswith("ordered by InstanceNumber")]
    return _stack(ordered, positions, plane, axis, max_pixels, limits, "DICOM multi-frame",
                  _description(ds) or name,
                  volumes.dicom_modality(ds), notes,
                  damaged="the multi-frame DICOM file is damaged: ")


# ----------------------------------------------------------------------------- NIfTI
def _nifti_scan(data: bytes, axis: int | None, name: str, max_pixels: int, limits: Limits) -> Scan:
    asked = volumes.check_axis(axis)
    version = volumes.nifti_format(data)
    volume, affine = volumes.nifti_volume(data, limits.total_bytes, limits.voxels)
    acquired = volumes.acquired_axis(volumes.spacing(affine), volume.shape)
    return _cut(volume, affine, acquired if asked is None else asked, PLANES[acquired],
                _percentiles(volume), max_pixels, limits, version, name, "", ())


def _cut(volume: np.ndarray, affine: np.ndarray, axis: int, acquired: str, levels: tuple[float, float],
         max_pixels: int, limits: Limits, source: str, description: str, modality: str,
         notes: tuple[str, ...]) -> Scan:
    """The slices of an (X, Y, Z) RAS+ volume along `axis`, shown as viewers do
    (`volumes.display_plane`) with square pixels, through the window `levels` (low, high)."""
    sides = volumes.spacing(affine)
    count = volume.shape[axis]
    plane_mm = volumes.plane_sides(sides, axis)
    rows, columns = volumes.display_plane(volume, axis, 0).shape
    _check_stack(count, rows, columns, limits)
    try:
        check_size(*volumes.square_size((columns, rows), *plane_mm), max_pixels)
    except ImageLoadError as error:
        raise ImageLoadError(f"this scan cannot be shown in the {PLANES[axis]} plane ({rows} x {columns} "
                             f"voxels of {plane_mm[0]:g} x {plane_mm[1]:g} mm): {error}") from None
    lo, hi = levels
    drawn_out = volumes.stretch(*plane_mm)
    cut = volumes.cut_across(PLANES[axis], acquired, drawn_out)
    slices = tuple(_tag(volumes.square_pixels(
        Image.fromarray(volumes.window(volumes.display_plane(volume, axis, i), (lo + hi) / 2, hi - lo), "L"),
        *plane_mm, max_pixels), modality, cut) for i in range(count))
    step = np.zeros(4)
    step[axis] = 1.0
    origin = affine @ np.array([0.0, 0.0, 0.0, 1.0])
    direction = (affine @ step)[:3]
    positions = tuple(float(origin[axis] + i * direction[axis]) for i in range(count))
    tilted = volumes.tilt(affine)
    if tilted > volumes.OBLIQUE:
        notes += (f"the scan is tilted {tilted:.0f} degrees from the patient's axes: its {PLANES[axis]} "
                  "slices follow the scan's own axes, tilted as much",)
    return Scan(slices, positions, source, PLANES[axis], description, modality, notes, acquired=acquired,
                stretch=drawn_out)


def _tag(image: Image.Image, modality: str = "", cut: tuple | None = None) -> Image.Image:
    """`image` with what it says about itself: its DICOM Modality and, for a slice cut across
    thicker ones, `volumes.cut_across`'s tuple (`image.info`, read by `mri_check.check`)."""
    return volumes.with_cut(volumes.with_modality(image, modality), cut)


# ----------------------------------------------------------------------------- entry points
def _files(source, limits: Limits) -> tuple[list[_File] | None, bytes | None, str]:
    """(archive or folder files, or None; the single file's bytes, or None; a display name)."""
    if isinstance(source, (list, tuple)):
        return _listed_files([Path(p) for p in source], limits), None, "series"
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return _folder_files(Path(source), limits), None, Path(source).name
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "upload"
    data = read_bytes(source, limits.upload_bytes)
    if _is_zip(data):
        return _zip_files(data, limits), None, name
    return None, data, name


def list_series(source: ImageSource, limits: Limits = Limits()) -> list[SeriesInfo]:
    """The DICOM series in a .zip or folder (one entry for a single DICOM or NIfTI file)."""
    files, data, name = _files(source, limits)
    if files is None:
        files = [_File(name, data)]
        if volumes.sniff(data) == "nifti":
            info = volumes.describe("nifti", data)
            return [SeriesInfo(name, 1, name, "", info.frames)]
    slices, notes = _parse(files, limits.total_bytes if data is not None else limits.file_bytes,
                           max_elements=limits.elements)
    if not slices:
        raise ImageLoadError("no DICOM image found" + (f" ({'; '.join(notes)})" if notes else ""))
    return _group(slices)[0]


def read_scan(source: ImageSource | list, series: str | int | None = None, axis: int | None = None, *,
              max_pixels: int = MAX_PIXELS, limits: Limits = Limits()) -> Scan:
    """Read a whole scan from a folder, a .zip, a DICOM file or a NIfTI file (path or bytes),
    or a list of DICOM file paths.

    `series`: the key or number (`SeriesInfo`) of the series to read when an archive holds
    several (None: `SeriesChoice` is raised when there is more than one). `axis`: 0 sagittal,
    1 coronal, 2 axial slices (None: the axis a NIfTI volume was acquired along, DICOM as
    stored); DICOM slices that do not make a volume are refused another plane. `max_pixels`:
    per slice."""
    with warnings.catch_warnings():     # pydicom's notes on padding or VR guesses: not for users
        warnings.simplefilter("ignore", UserWarning)
        files, data, name = _files(source, limits)
        if files is not None:
            return _series(files, series, axis, max_pixels, limits)
        kind = volumes.sniff(data)
        if kind == "nifti":
            return _nifti_scan(data, axis, name, max_pixels, limits)
        if kind == "dicom":
            return _series([_File(name, data)], series, axis, max_pixels, limits, alone=True)
    try:
        pages = describe(data, max_bytes=limits.upload_bytes).frames
    except ImageLoadError:          # not even a readable picture: the kind of file still says it
        pages = 1
    what = (f"a TIFF of {pages} pages is read one page at a time (as a slice: `frame`, the app's "
            "slice chooser or the API's slice_no)" if pages > 1 else "this is a single picture")
    raise ImageLoadError(f"{what}, not a scan: a scan is {WHOLE_SCAN}")
