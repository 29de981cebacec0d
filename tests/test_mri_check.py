"""brainmri.mri_check: grey scans on black pass in every storage mode; colourful pictures,
pictures without a dark surround and non-MR DICOM do not."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from brainmri.io import load_image
from brainmri.mri_check import DARK, MAX_COLOUR_SHARE, MIN_DARK_CORNERS, thumbnail, check, colour_share

from .synthetic import scan


def reencode(image: Image.Image, fmt: str) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, quality=75) if fmt == "JPEG" else image.save(buf, fmt)
    return load_image(buf.getvalue())


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_grey_scans_pass_whatever_their_mode(mode, fmt):
    if fmt == "JPEG" and mode in ("RGBA", "P", "I;16"):
        pytest.skip("JPEG cannot store this mode")
    grey = scan(5, size=128)
    image = grey.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(grey).astype(np.uint16) * 256)
    result = check(reencode(image, fmt))
    assert result.ok and result.colour_share < 0.01 and result.dark_corners > 0.9


def test_colour_pictures_are_refused():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    yy, xx = np.mgrid[0:64, 0:64] * 4
    ramp = Image.fromarray(np.stack([xx, yy, 255 - xx], -1).astype(np.uint8))
    for image in (noise, ramp):
        assert not check(image).ok and check(image).score > 1


def test_skimage_photos_are_colourful():
    data = pytest.importorskip("skimage.data")
    for name in ("chelsea", "astronaut", "coffee"):
        assert colour_share(Image.fromarray(getattr(data, name)())) > 1.5 * MAX_COLOUR_SHARE


def test_a_tint_or_a_banner_is_tolerated_but_a_heatmap_overlay_is_not():
    grey = np.asarray(scan(2, size=128), np.float32)
    tinted = np.stack([grey, grey * 0.97, grey * 0.92], -1).astype(np.uint8)     # warm monitor tint
    assert check(Image.fromarray(tinted)).ok
    bannered = np.stack([grey] * 3, -1).astype(np.uint8)
    bannered[:8, 16:112] = (30, 60, 200)                  # a website's blue banner across the top
    assert check(Image.fromarray(bannered)).ok
    heat = np.zeros_like(grey)
    heat[30:90, 30:90] = 255
    overlay = np.stack([0.5 * grey + 0.5 * heat, 0.5 * grey, 0.5 * grey + 0.5 * (255 - heat)], -1)
    assert not check(Image.fromarray(overlay.astype(np.uint8))).ok


def test_a_picture_without_a_dark_surround_is_refused():
    grey = np.asarray(scan(4, size=128))
    document = 255 - grey                                  # the same anatomy on white
    photo = np.clip(grey.astype(int) + 90, 0, 255).astype(np.uint8)    # a grey, lit scene
    for array in (document, photo):
        result = check(Image.fromarray(array))
        assert not result.ok and result.dark_corners < MIN_DARK_CORNERS and result.score > 1
    assert check(Image.fromarray(grey)).dark_corners > 0.9


def test_dicom_modality_other_than_mr_is_refused():
    import pydicom
    from pydicom.data import get_testdata_file
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    buf = io.BytesIO()
    ds.Modality = "CT"
    ds.save_as(buf)
    mr, ct = load_image(get_testdata_file("MR_small.dcm")), load_image(buf.getvalue())
    assert (mr.info["modality"], ct.info["modality"]) == ("MR", "CT")
    assert check(ct).score >= 1e3 and not check(ct).ok
    assert check(mr).modality == "MR"


def test_an_image_files_own_modality_text_is_not_a_dicom_header():
    """Only the DICOM reader says what a picture's modality is: a PNG whose text chunk is named
    "modality" (a research export writing "T1w" or "CT", say) is not taken for a DICOM header,
    whether the library decoded it or the caller opened it with Pillow."""
    from PIL import PngImagePlugin
    for text in ("T1w", "CT"):
        said = PngImagePlugin.PngInfo()
        said.add_text("modality", text)
        buffer = io.BytesIO()
        scan(4, size=128).save(buffer, "PNG", pnginfo=said)
        opened = Image.open(io.BytesIO(buffer.getvalue()))
        assert opened.info["modality"] == text                       # Pillow reads the chunk
        for picture in (load_image(buffer.getvalue()), opened, opened.convert("RGB")):
            verdict = check(picture)
            assert (verdict.modality, verdict.ok) == ("", True)


def test_predictor_combines_the_input_check_into_is_mri(tiny_checkpoints):
    from brainmri.predictor import Predictor
    predictor = Predictor.from_checkpoint(tiny_checkpoints["baseline"], "cpu")
    assert predictor.ood is None                      # tiny: only the input check can refuse
    yy, xx = np.mgrid[0:96, 0:96] * 2
    colour = Image.fromarray(np.stack([xx, yy, 255 - xx], -1).astype(np.uint8))
    grey_rgb = scan(1, size=96, rgb=True)
    verdicts = [p.is_mri for p in predictor.predict_batch([grey_rgb, colour])]
    assert verdicts == [True, False]
    assert not predictor.explain(colour).prediction.is_mri
    assert predictor.prepare([colour])[0].input_check.score > 1


def test_colour_share_is_the_share_of_pixels_whose_channels_spread_past_dark():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    thumb = np.asarray(thumbnail(image)).astype(int)                     # at most 256 on a side
    assert thumb.shape == (256, 171, 3)
    assert colour_share(image) == float(np.mean(thumb.max(-1) - thumb.min(-1) > DARK))
    assert colour_share(Image.fromarray(rgb[:, :, 0])) == 0.0          # a grey mode: 0 by definition
