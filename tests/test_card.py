"""brainmri.card: the model card rendered from checkpoint metadata alone, saying nothing
about a particular checkpoint that its metadata does not say."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

from brainmri import card
from brainmri.classes import CLASSES
from brainmri.models import ARCHS

ROOT = Path(__file__).resolve().parent.parent


def test_a_card_from_metadata_alone():
    meta = {"arch": "baseline", "name": "run-7", "recipe": "baseline", "best_epoch": 3,
            "preset": {"size": 160, "channels": 1}, "calibration": {"temperature": 1.234},
            "metrics": {"clean": {"accuracy": 0.9, "n": 300}, "mystery": {"accuracy": 0.5}},
            "card": {"limitations": ["**Seen in a study.** Measured by a command."]}}
    text = card.model_card({"baseline": SimpleNamespace(meta=meta)}, CLASSES)
    for needed in ("### Baseline CNN (`run-7`)", "`baseline`, best epoch 3", "T = 1.23",
                   "| clean | 300 | 0.900 |", "| mystery | – | 0.500 |", "No tumour (`notumor`)",
                   "Known limitations", "never shown a tumour on those contrasts", "Labels as published",
                   "\n- **Seen in a study.** Measured by a command."):
        assert needed in text, needed
    assert "Runs on" not in text                          # no engine said where it runs


def test_the_training_line_names_the_lesion_signals_the_checkpoint_trained_with():
    arch = next(iter(ARCHS))
    args = {"counterfactual": 0.3, "implant": 0.5, "guidance": 1.0}
    text = card.model_section(arch, {"arch": arch, "args": args})
    assert "30% of boxed tumour scans" in text and "pasted into no-tumour scans" in text
    assert "pasted" not in card.model_section(arch, {"arch": arch, "args": {"counterfactual": 0.3}})


def test_dilation_is_read_from_the_registry_and_the_checkpoint():
    arch = next(a for a in ARCHS.values() if a.dilation)
    meta = {"arch": arch.name, "arch_kwargs": {arch.dilation: True}}
    assert "last stage dilated" in card.model_section(arch.name, meta)
    assert "dilated" not in card.model_section(arch.name, {"arch": arch.name, "arch_kwargs": {}})
    plain = next(a for a in ARCHS.values() if not a.dilation)
    assert "dilated" not in card.model_section(plain.name, {"arch": plain.name,
                                                            "arch_kwargs": {arch.dilation: True}})


def test_the_library_holds_no_sentence_about_a_particular_checkpoint():
    """Layer names and measured figures in the card's or the service's own strings would
    describe one checkpoint; they must come from its metadata."""
    found = []
    for name in ("card.py", "service.py"):
        tree = ast.parse((ROOT / "brainmri" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.search(r"layer\d|output stride|\b\d{2}%", node.value):
                    found.append(f"{name}:{node.lineno} {node.value[:60]!r}")
    assert not found, found
