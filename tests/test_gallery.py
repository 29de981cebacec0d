"""brainmri.gallery: the non-MRI and other-MR pictures that train.fit_ood and studies.ood_eval
read, all from installed packages (nothing downloaded)."""
import numpy as np
import pytest

from brainmri.gallery import TEXT, non_mri, other_mr, rendered_text, synthetic_pictures
from brainmri.io import MIN_SIDE, load_image, to_grey


@pytest.fixture(scope="module")
def pictures():
    return non_mri(), other_mr()


def test_every_picture_reads_as_an_upload_would(pictures):
    for name, picture in {**pictures[0], **pictures[1]}.items():
        grey = to_grey(load_image(picture))
        assert grey.dtype == np.uint8 and min(grey.shape) >= MIN_SIDE, name


def test_the_kinds_are_all_there(pictures):
    others, mr = pictures
    kinds = {name.split("/")[0] for name in others}
    assert kinds == {"skimage", "synthetic", "text", "pydicom"}
    assert "pydicom/CT_small.dcm" in others and "skimage/astronaut-grey" in others
    assert set(mr) >= {"pydicom/MR_small.dcm", "nibabel/anatomical-axis0", "nibabel/anatomical-axis2"}
    assert not set(others) & set(mr)


def test_synthetic_pictures_and_text_are_the_same_every_time():
    a, b = synthetic_pictures(), synthetic_pictures()
    assert len(a) == 22 and all(np.array_equal(a[k], b[k]) for k in a)
    text = rendered_text()
    assert len(text) == 2 * len(TEXT)
    assert all(np.array_equal(v, 255 - text[k + "-inverted"]) for k, v in text.items() if "inverted" not in k)
