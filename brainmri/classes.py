"""The canonical class list and the mapping of folder names seen in the wild onto it."""
from __future__ import annotations

import re

CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")
NO_TUMOUR = "notumor"          # the one class that is not a tumour
# How a class is named to people (the page, the report, the card).
CLASS_LABELS = {"glioma": "Glioma", "meningioma": "Meningioma", "notumor": "No tumour",
                "pituitary": "Pituitary tumour"}


def class_label(name: str) -> str:
    """A class name as people read it ("notumor" -> "No tumour"); unknown names as they are."""
    return CLASS_LABELS.get(name, name)


# Keys are folder names lower-cased with every non-letter removed, so that
# "No Tumor", "no_tumor", "notumor" and "NO-TUMOUR" all meet in one key.
_ALIASES = {
    "glioma": "glioma", "gliomatumor": "glioma", "gliomatumour": "glioma",
    "meningioma": "meningioma", "meningiomatumor": "meningioma", "meningiomatumour": "meningioma",
    "notumor": "notumor", "notumour": "notumor", "no": "notumor", "normal": "notumor",
    "healthy": "notumor",
    "pituitary": "pituitary", "pituitarytumor": "pituitary", "pituitarytumour": "pituitary",
}


class UnknownClassError(ValueError):
    """A folder or label name that maps onto none of `CLASSES`."""


def canonical_class(name: str) -> str:
    """Map a class folder name (any case, `_`, `-` or spaces) onto one of `CLASSES`.

    >>> canonical_class("No Tumor"), canonical_class("glioma_tumor")
    ('notumor', 'glioma')
    """
    key = re.sub(r"[^a-z]", "", str(name).lower())
    if key not in _ALIASES:
        raise UnknownClassError(
            f"unknown class folder {name!r}: expected one of {', '.join(CLASSES)} "
            "(or an alias such as 'no_tumor', 'glioma_tumor')")
    return _ALIASES[key]


def class_index(name: str) -> int:
    return CLASSES.index(canonical_class(name))
