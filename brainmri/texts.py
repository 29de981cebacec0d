"""What the service says, as plain Markdown strings (no HTML, no UI code): the finding's
headline, probabilities as percentages, the agreement line and the recheck's summary.

    from brainmri import texts
    texts.percent(0.9996)                 # ">99.9%"
    texts.headline(result)                # "### Glioma — 97.3%\\n\\n_ResNet-50 · Grad-CAM ..._"

`brainmri.service` decides and computes; this module only words what it found (the results
it reads are `service.Result`s; it does not import the service, which imports it).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .cam import CLASS_AGNOSTIC, LABELS
from .classes import class_label
from .models import MODEL_LABELS
from .outcomes import Outcome

REFUSED = "This does not look like a brain MRI slice"  # a refusal's title, wherever one is shown
DISCLAIMER = "Research and education only: not a medical device, not a diagnosis."
FOOTNOTE = "research and education only, not a diagnosis"   # the end of every answer's small print
METHOD_INFO = "How often each method's map points inside the tumour: About tab, per model"


def model_name(model: str) -> str:
    """A model key in words (`models.MODEL_LABELS`), or the key itself if unregistered."""
    return MODEL_LABELS.get(model, model)


def percent(p: float) -> str:
    """A probability as a percentage with one decimal that never rounds to a certainty:
    0.9996 -> ">99.9%", 0.0004 -> "<0.1%", 0.5 -> "50.0%"."""
    if p > 0.999:
        return ">99.9%"
    if p < 0.001:
        return "<0.1%" if p > 0 else "0.0%"
    return f"{100 * p:.1f}%"


def method_choice(method: str) -> str:
    """A CAM method's label in a menu, e.g. "Grad-CAM"; a class-agnostic one says so."""
    return LABELS[method] + (" (same map for every class)" if method in CLASS_AGNOSTIC else "")


def headline(r) -> str:
    """Markdown (no HTML) stating the finding, with a caution's reasons once, on one line
    (a quote, which the app colours by the outcome's class); or plainly that the input is not a
    brain MRI slice (then no class and no probability is named)."""
    model = model_name(r.model)
    if r.outcome is Outcome.NOT_MRI:
        why = f"**Why:** {' '.join(map(str, r.reasons))}\n\n" if r.reasons else ""
        return (f"### {REFUSED}\n" + why +
                "No class, no probabilities and no heatmap are shown: they would not be a finding. "
                "The models were trained on 2-D brain MRI slices of one public collection (Kaggle "
                "brain-tumor-mri); CT, diffusion images and MRI sequences or views rare there can "
                "be flagged too.\n\n"
                f"*{model} · {r.time_ms:.0f} ms · {FOOTNOTE}*")
    about = ("(the same map for every class)" if r.method in CLASS_AGNOSTIC
             else f"for *{class_label(r.target)}*")
    text = f"### {class_label(r.label)} — {percent(r.probabilities[r.label])}\n"
    if r.outcome is Outcome.CAUTION:
        text += f"> **{Outcome.CAUTION.words}:** {' '.join(map(str, r.reasons))}\n"
    return (text + f"\n_{model} · {LABELS.get(r.method, r.method)} {about} · {r.time_ms:.0f} ms · "
            f"{FOOTNOTE}_")


def agreement(results: Mapping, agree: bool | None) -> str:
    """Markdown, one line, on the models' answers to one image; `agree` as the service found it
    (None: fewer than two models, or a refusal)."""
    if len(results) < 2:
        return "Only one model is loaded: nothing to compare."
    if agree is None:
        flagged = [model_name(m) for m, r in results.items() if not r.is_mri]
        return f"**{REFUSED}** (flagged by {', '.join(flagged)}): no finding to compare."
    if agree:
        return f"**The models agree:** {class_label(next(iter(results.values())).label)}."
    said = "; ".join(f"{model_name(m)} says {class_label(r.label)}" for m, r in results.items())
    return f"**The models disagree:** {said}."


def recheck(model: str, painted, share: float, before: Mapping[str, float],
            was: str, asked: str, changed: bool, notes: Sequence[str]) -> str:
    """Markdown: what `model` answered once the hot region (`share` of the head) was painted
    out, against `before` (probabilities by class; `was` its top class, `asked` the class
    explained); `notes`: the model card's sentences about the check (`card.card_texts`)."""
    name = model_name(model)
    text = (f"**Hot region painted out** (where the map is at least half its peak: "
            f"{100 * share:.0f}% of the head). ")
    if painted.label is None:        # refused: the painted scan has no class to compare
        text += (f"{name} now refuses the painted scan: it no longer looks like a brain MRI "
                 f"slice (before: {class_label(was)} — {percent(before[was])}). The check cannot "
                 "tell whether the region decided the answer.")
    else:
        text += (f"{name} now says "
                 f"**{class_label(painted.label)} — {percent(painted.probabilities[painted.label])}** "
                 f"(before: {class_label(was)} — {percent(before[was])}); probability of "
                 f"*{class_label(asked)}* {percent(before[asked])} → "
                 f"{percent(painted.probabilities[asked])}.\n\n")
        text += ("**The highlighted region decided this answer.**" if changed else
                 "**The answer holds without the highlighted region:** its evidence is not "
                 "only there. It may be the rest of the same lesion (the region can be smaller "
                 "than the tumour) or other parts of the slice.")
    if share > 0.25:
        text += (" The region covers a quarter of the head or more: painting out that much "
                 "can change an answer by itself.")
    return text + "\n\n*" + " ".join(["One slice, one painted region: a hint, not proof.",
                                       *notes]) + "*"
