"""brainmri.texts: every sentence the service says, in one module; service.py holds handlers."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from brainmri import outcomes, service, texts
from brainmri.classes import class_label
from brainmri.outcomes import Outcome
from brainmri.service import Result

ROOT = Path(__file__).resolve().parent.parent
MOVED = {"headline", "percent", "method_choice", "REFUSED", "DISCLAIMER"}


def renders_text(node: ast.AST) -> bool:
    """An expression that builds a string: an f-string, a string literal, `+` of those, or a
    tuple holding one."""
    if isinstance(node, ast.Tuple):
        return any(renders_text(e) for e in node.elts)
    if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return True
    return isinstance(node, ast.BinOp) and (renders_text(node.left) or renders_text(node.right))


def test_service_defines_no_text_rendering():
    tree = ast.parse((ROOT / "brainmri" / "service.py").read_text())
    rendering = [f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for r in ast.walk(f) if isinstance(r, ast.Return) and r.value is not None
                 and renders_text(r.value)]
    assert not rendering, f"service.py renders text in {rendering}: move it to brainmri/texts.py"
    top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    top |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
            if isinstance(t, ast.Name)}
    assert not top & MOVED, f"defined in service.py, belong to texts.py: {top & MOVED}"
    assert all(hasattr(texts, n) for n in ("headline", "percent", "agreement", "recheck",
                                           "method_choice", "REFUSED", "DISCLAIMER"))


def result(label: str | None, outcome: Outcome = Outcome.CONFIDENT, model: str = "resnet50",
           reasons: tuple = ()) -> Result:
    probs = {} if label is None else {"glioma": 0.1, "meningioma": 0.2, "notumor": 0.3,
                                      "pituitary": 0.4} | {label: 0.7}
    grey = np.zeros((8, 8), np.uint8)
    return Result(model, label, probs, label is not None, 0.0, "gradcam", label,
                  np.zeros((8, 8), np.float32), grey, np.zeros((8, 8, 3), np.uint8), 12.0,
                  outcome, reasons)


def test_agreement_lines_follow_the_decision():
    same = {"baseline": result("glioma", model="baseline"), "resnet50": result("glioma")}
    differ = {"baseline": result("pituitary", model="baseline"), "resnet50": result("glioma")}
    refused = {"baseline": result(None, Outcome.NOT_MRI, "baseline"), "resnet50": result("glioma")}
    assert service.agreement(same) is True and service.agreement(differ) is False
    assert service.agreement(refused) is None and service.agreement({"resnet50": result("glioma")}) is None
    assert texts.agreement(same, True) == f"**The models agree:** {class_label('glioma')}."
    line = texts.agreement(differ, False)
    assert line.startswith("**The models disagree:**") and class_label("pituitary") in line
    line = texts.agreement(refused, None)
    assert texts.REFUSED in line and "Baseline CNN" in line and "ResNet-50" not in line
    assert "nothing to compare" in texts.agreement({"resnet50": result("glioma")}, None)


def test_headline_names_a_class_only_when_one_is_given():
    caution = result("glioma", Outcome.CAUTION, reasons=(outcomes.LOW_CONFIDENCE,))
    line = texts.headline(caution)
    assert line.startswith(f"### {class_label('glioma')} — 70.0%\n")
    assert line.count(outcomes.LOW_CONFIDENCE.text) == 1 and Outcome.CAUTION.words in line
    refused = texts.headline(result(None, Outcome.NOT_MRI, reasons=(outcomes.COLOUR,)))
    assert refused.startswith(f"### {texts.REFUSED}\n") and outcomes.COLOUR.text in refused
    assert "%" not in refused and not any(class_label(c) in refused for c in caution.probabilities)


def test_recheck_summary_says_what_changed():
    before = {"glioma": 0.8, "meningioma": 0.1, "notumor": 0.05, "pituitary": 0.05}
    changed = texts.recheck("resnet50", result("notumor"), 0.1, before, "glioma", "glioma",
                            True, ["A note from the card."])
    assert "decided this answer" in changed and "10% of the head" in changed
    assert "80.0% → 10.0%" in changed and changed.endswith("A note from the card.*")
    held = texts.recheck("resnet50", result("glioma"), 0.3, before, "glioma", "glioma", False, [])
    assert "holds without the highlighted region" in held and "quarter of the head" in held
    refused = texts.recheck("resnet50", result(None, Outcome.NOT_MRI), 0.1, before, "glioma",
                            "glioma", True, [])
    assert "now refuses the painted scan" in refused and "cannot tell" in refused
