"""brainmri.classes: folder names in the wild map onto the four canonical classes."""
from __future__ import annotations

import pytest

from brainmri.classes import CLASSES, UnknownClassError, canonical_class, class_index


def test_canonical_classes_are_fixed_and_ordered():
    # Checkpoints store class names and indices; the order is part of the format.
    assert CLASSES == ("glioma", "meningioma", "notumor", "pituitary")


@pytest.mark.parametrize("name", CLASSES)
def test_canonical_names_map_to_themselves(name):
    assert canonical_class(name) == name


@pytest.mark.parametrize("folder, expected", [
    ("no_tumor", "notumor"),              # Roboflow
    ("No Tumor", "notumor"),
    ("NO-TUMOUR", "notumor"),
    ("notumor", "notumor"),               # Kaggle
    ("glioma_tumor", "glioma"),           # SARTAJ
    ("meningioma_tumor", "meningioma"),
    ("pituitary_tumor", "pituitary"),
    ("Pituitary Tumour", "pituitary"),
    ("GLIOMA", "glioma"),
    ("Meningioma", "meningioma"),
    ("gLiOmA_TuMoR", "glioma"),
])
def test_aliases_are_case_and_separator_insensitive(folder, expected):
    assert canonical_class(folder) == expected


@pytest.mark.parametrize("folder", ["astrocytoma", "tumor", "", "glioma2x", "Training"])
def test_unknown_folder_raises_naming_it(folder):
    with pytest.raises(UnknownClassError) as info:
        canonical_class(folder)
    assert repr(folder) in str(info.value)
    assert "glioma" in str(info.value)        # the message lists what would have been accepted
    assert isinstance(info.value, ValueError)


def test_class_index_follows_classes_order():
    assert [class_index(c) for c in CLASSES] == [0, 1, 2, 3]
    assert class_index("no_tumor") == CLASSES.index("notumor")
