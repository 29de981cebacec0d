"""Pictures that are not brain MRI slices, for fitting and measuring the not-an-MRI checks.

    from brainmri.gallery import non_mri, other_mr
    pictures = non_mri()          # name -> picture (numpy array or PIL image)

`non_mri`: scikit-image's sample pictures (colour, and the same in grey; those that need a
download are skipped), synthetic noise, gradients and shapes, rendered text, and the non-MR
medical images shipped with pydicom (CT, ultrasound, nuclear medicine, segmentations) read
through the library's DICOM reader. `other_mr`: the MR samples shipped with pydicom and
nibabel: MR, but not necessarily axial brain slices like the training scans. Nothing is
downloaded; `train.fit_ood` and `studies.ood_eval` both read these.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .io import ImageLoadError, load_image

log = logging.getLogger(__name__)

SKIMAGE = ("astronaut", "binary_blobs", "brick", "camera", "cat", "cell", "checkerboard", "clock",
           "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
           "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
           "shepp_logan_phantom", "stereo_motorcycle", "text")
DICOM_OTHER = ("CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm", "JPEG2000.dcm",
               "examples_rgb_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm",
               "examples_ybr_color.dcm", "liver_1frame.dcm", "image_dfl.dcm",
               "SC_rgb_jpeg_dcmd.dcm", "SC_jpeg_no_color_transform.dcm", "ExplVR_BigEnd.dcm")
DICOM_MR = ("MR_small.dcm", "examples_overlay.dcm")
TEXT = ("Patient discharge summary\nDate: 2026-11-26\nFindings: no acute abnormality.\n"
        "Plan: follow-up in six weeks.", "Invoice 4471\nQty  Item         Price\n2    Widgets      9.99\n"
        "1    Gadget       24.50\nTotal               44.48", "The quick brown fox jumps over the "
        "lazy dog.\n0123456789 ABCDEFGHIJKLM\nnopqrstuvwxyz !?@#%&")


def skimage_pictures() -> dict[str, np.ndarray]:
    import skimage.data
    out = {}
    for name in SKIMAGE:
        try:
            image = getattr(skimage.data, name)()
        except Exception as error:  # noqa: BLE001 - some need a download; offline they fail
            log.info("skipping skimage.data.%s (%s)", name, type(error).__name__)
            continue
        image = image[0] if isinstance(image, tuple) else image
        out[f"skimage/{name}"] = image
        if image.ndim == 3:                         # the same picture in grey
            grey = np.asarray(Image.fromarray(image[..., :3]).convert("L"))
            out[f"skimage/{name}-grey"] = grey
    return out


def synthetic_pictures(size: int = 256) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    r = np.hypot(yy - 0.5, xx - 0.5)
    out = {
        "synthetic/black": np.zeros((size, size), np.uint8),
        "synthetic/white": np.full((size, size), 255, np.uint8),
        "synthetic/grey": np.full((size, size), 128, np.uint8),
        "synthetic/gradient-h": (xx * 255).astype(np.uint8),
        "synthetic/gradient-v": (yy * 255).astype(np.uint8),
        "synthetic/gradient-radial": (np.clip(1 - 2 * r, 0, 1) * 255).astype(np.uint8),
        "synthetic/disc": ((r < 0.4) * 200).astype(np.uint8),
        "synthetic/rings": ((np.sin(r * 60) > 0) * 255).astype(np.uint8),
        "synthetic/stripes": ((np.sin(xx * 40) > 0) * 255).astype(np.uint8),
        "synthetic/colour-gradient": np.stack([xx * 255, yy * 255, (1 - xx) * 255], -1).astype(np.uint8),
    }
    for seed in range(3):
        out[f"synthetic/uniform-noise-{seed}"] = rng.integers(0, 256, (size, size), dtype=np.uint8)
        out[f"synthetic/gaussian-noise-{seed}"] = np.clip(rng.normal(128, 40, (size, size)), 0, 255).astype(np.uint8)
        out[f"synthetic/colour-noise-{seed}"] = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        out[f"synthetic/blobs-{seed}"] = (np.clip(
            sum(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.004) for cy, cx in rng.uniform(0.1, 0.9, (8, 2))),
            0, 1) * 255).astype(np.uint8)
    return out


def rendered_text(size: tuple[int, int] = (448, 320)) -> dict[str, np.ndarray]:
    try:
        font = ImageFont.load_default(size=22)
    except TypeError:                                  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    out = {}
    for i, text in enumerate(TEXT):
        for invert in (False, True):
            image = Image.new("L", size, 0 if invert else 255)
            ImageDraw.Draw(image).multiline_text((16, 16), text, fill=255 if invert else 0, font=font)
            out[f"text/{i}{'-inverted' if invert else ''}"] = np.asarray(image)
    return out


def dicom_pictures(names) -> dict[str, Image.Image]:
    from pydicom.data import get_testdata_file
    out = {}
    for name in names:
        try:
            out[f"pydicom/{name}"] = load_image(get_testdata_file(name))
        except (ImageLoadError, FileNotFoundError, TypeError) as error:
            log.info("skipping pydicom %s (%s)", name, error)
    return out


def nifti_pictures() -> dict[str, Image.Image]:
    from nibabel.testing import data_path
    path = Path(data_path) / "anatomical.nii"
    return {f"nibabel/anatomical-axis{a}": load_image(path, axis=a) for a in range(3)}


def non_mri() -> dict[str, object]:
    return {**skimage_pictures(), **synthetic_pictures(), **rendered_text(), **dicom_pictures(DICOM_OTHER)}


def other_mr() -> dict[str, object]:
    return {**dicom_pictures(DICOM_MR), **nifti_pictures()}
