"""Synthetic brain-like test images: deterministic, no dataset needed."""
from __future__ import annotations

import numpy as np
from PIL import Image


def scan(seed: int = 0, size: int = 256, rgb: bool = False, lesion: bool = True) -> Image.Image:
    """A dark background, an elliptical 'head' with texture, and optionally a bright lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = 0.5 + rng.uniform(-0.03, 0.03), 0.5 + rng.uniform(-0.03, 0.03)
    head = ((yy - cy) / 0.42) ** 2 + ((xx - cx) / 0.36) ** 2 < 1
    img = np.zeros((size, size), np.float32)
    img[head] = 90 + 30 * np.sin(xx[head] * 25 + seed) + rng.normal(0, 8, head.sum())
    if lesion:
        ly, lx = cy + rng.uniform(-0.2, 0.2), cx + rng.uniform(-0.15, 0.15)
        blob = ((yy - ly) ** 2 + (xx - lx) ** 2) < rng.uniform(0.004, 0.01)
        img[blob & head] = 220
    img = np.clip(img, 0, 255).astype(np.uint8)
    pil = Image.fromarray(img, "L")
    return pil.convert("RGB") if rgb else pil


def boxed_kaggle(root, counts=(("Training", 8), ("Testing", 2)), classes=("glioma", "meningioma", "notumor", "pituitary"),
                 class_step: int = 1000, offset: int = 0):
    """A Kaggle-layout folder of synthetic scans under `root` with a tumor_boxes.csv: the
    bounding box of each tumour scan's lesion. Scan i of class c has the seed
    offset + class_step * c + 100 * (split == "Testing") + i. Returns `root`."""
    from pathlib import Path
    root = Path(root)
    rows = ["path,split,class,width,height,x0,y0,x1,y1"]
    for split, n in counts:
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = scan(seed=offset + class_step * c + 100 * (split == "Testing") + i, size=64,
                           lesion=name != "notumor")
                img.save(folder / f"{name}-{i}.png")
                ys, xs = np.nonzero(np.asarray(img) == 220)
                if name != "notumor" and len(xs):
                    rows.append(f"{split}/{name}/{name}-{i}.png,{split},{name},64,64,"
                                f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
    (root / "tumor_boxes.csv").write_text("\n".join(rows) + "\n")
    return root


# -- whole scans: volumes, DICOM series, NIfTI ------------------------------------------------
UID_ROOT = "1.2.826.0.1.3680043.8.498."        # pydicom's root for example UIDs


def head_volume(slices: int = 12, size: int = 64, seed: int = 0, empty: int = 2) -> np.ndarray:
    """(slices, size, size) uint16: `empty` slices of faint noise at each end (above the vertex,
    below the base), between them a head whose cross-section swells and narrows like a
    sphere's, textured, with a bright lesion on the middle slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    volume = rng.integers(0, 6, (slices, size, size)).astype(np.float32)
    inner = slices - 2 * empty
    for k in range(inner):
        t = (k + 0.5) / inner * 2 - 1                     # -1 .. 1 through the head
        r = np.sqrt(max(0.0, 1 - t * t))
        head = ((yy - 0.5) / (0.42 * r + 1e-6)) ** 2 + ((xx - 0.5) / (0.36 * r + 1e-6)) ** 2 < 1
        volume[empty + k][head] = 400 + 120 * np.sin(xx[head] * 25 + seed) + rng.normal(0, 30, head.sum())
    middle = volume[slices // 2]
    middle[((yy - 0.4) ** 2 + (xx - 0.55) ** 2) < 0.006] = 900
    return np.clip(volume, 0, 4000).astype(np.uint16)


def dicom_slice(pixels: np.ndarray, *, series: str = "1", description: str = "T2 AX",
                number: int = 1, modality: str = "MR", instance: int = 1,
                position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 1, 0),
                pixel_spacing=(1.0, 1.0)) -> bytes:
    """One DICOM file (explicit VR little endian, with preamble) holding a (H, W) uint16 slice.
    `position`/`orientation`/`pixel_spacing` None leave ImagePositionPatient/
    ImageOrientationPatient/PixelSpacing (row spacing, column spacing in mm) out."""
    import io
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage
    sop = f"{UID_ROOT}{series}.{instance}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{UID_ROOT}1", f"{UID_ROOT}{series}"
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = modality, description, number
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if pixel_spacing is not None:
        ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def dicom_series(volume: np.ndarray, *, spacing: float = 5.0, origin=(0.0, 0.0, 0.0),
                 orientation=(1, 0, 0, 0, 1, 0), **kwargs) -> list[bytes]:
    """One DICOM file per slice of a (N, H, W) volume, slice k at origin + k * spacing along
    the normal of `orientation` (row direction x column direction), InstanceNumber k + 1."""
    o = np.asarray(orientation, float)
    normal = np.cross(o[:3], o[3:])
    return [dicom_slice(volume[k], instance=k + 1, orientation=orientation,
                        position=tuple(np.asarray(origin) + k * spacing * normal), **kwargs)
            for k in range(len(volume))]


def zipped(files: dict[str, bytes], compression: int | None = None) -> bytes:
    """A .zip archive of {name: content}, deflated."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression if compression is not None else zipfile.ZIP_DEFLATED) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()


def nifti(volume: np.ndarray, affine=None, version: int = 1) -> bytes:
    """A .nii.gz file of an (X, Y, Z[, T]) array (identity affine unless given)."""
    import gzip

    import nibabel as nib
    cls = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return gzip.compress(cls(volume, np.eye(4) if affine is None else affine).to_bytes(), 1)


def two_source_kaggle(root, seeds):
    """Kaggle layout with both sources under `root`: 512x512 greyscale files (figshare) and RGB
    files of other sizes (the others). In each tumour class, scan 0 is a figshare picture with
    an RGB re-export beside it (one group, two file sources); scans 1-2 are figshare only;
    scans 3-4 are RGB only. No-tumour scans are RGB only. Testing holds one new picture of
    each source per class and an RGB re-export of Training's figshare scan 1. Every picture
    is a 256 px synthetic scan resized; `seeds` (7 a class) must give distinct pictures at
    that size. Returns `root`."""
    from pathlib import Path
    from brainmri.classes import CLASSES
    root = Path(root)

    def figshare(seed):
        return scan(seed).resize((512, 512))

    def other(seed, size=256):
        return scan(seed, rgb=True).resize((size, size))

    for split in ("Training", "Testing"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
    for c, name in enumerate(CLASSES):
        tumour = name != "notumor"
        pick = iter(seeds[7 * c:7 * c + 7])
        folder = root / "Training" / name
        for k in range(5):
            seed = next(pick)
            if tumour and k < 3:
                figshare(seed).save(folder / f"fs_{k}.png")
                if k == 0:
                    other(seed, 300).save(folder / f"fs_{k}_rgb.jpg", quality=95)
                if k == 1:
                    other(seed, 240).save(root / "Testing" / name / "te_copy_rgb.png")
            else:
                other(seed).save(folder / f"ot_{k}.png")
        if tumour:
            figshare(next(pick)).save(root / "Testing" / name / "te_fs.png")
        other(next(pick), 240).save(root / "Testing" / name / "te_ot.png")
    return root
