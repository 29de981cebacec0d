"""The outcomes of an answer, the reasons behind them, and the one function that decides.

    from brainmri import outcomes
    v = outcomes.decide(outcomes.input_reasons(check) + outcomes.caution_reasons(0.55))
    v.outcome, [r.text for r in v.reasons]          # Outcome.CAUTION, ["The model is unsure: ..."]

Every answer ends in one `Outcome`:

- `NOT_MRI`: refused; the input does not look like a brain MRI slice. A refusal shows no class
  and no probabilities anywhere (`shown`).
- `CAUTION`: a class is given, with each reason to doubt it said once, in plain words.
- `CONFIDENT`: no reason to doubt it was found.

A `Reason` has a stable `code` (for programs: API results, CSV files), the outcome it leads
to, and one sentence a student understands (for people). The rules that find reasons are the
small functions below (`input_reasons`, `caution_reasons`, `checker_reasons`); other checks
add their own (the service adds `DISAGREE` when two models differ). `decide` turns whatever was found into the
outcome; it never changes when a reason is added.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Iterable, Mapping


class Outcome(str, Enum):
    """The three outcomes; the value is the stable name used in API results and CSV files."""
    CONFIDENT = "confident"
    CAUTION = "caution"
    NOT_MRI = "not_mri"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def words(self) -> str:
        """The outcome in a few plain words, as a page or report titles it."""
        return WORDS[self]


WORDS = {Outcome.CONFIDENT: "Answer", Outcome.CAUTION: "Treat with caution",
         Outcome.NOT_MRI: "Not a brain MRI slice: no finding"}


@dataclass(frozen=True)
class Reason:
    """Why an answer is refused or to be treated with caution. Equal by `code` alone, so a
    reason filled in with details (`fill`) is still the same reason."""
    code: str                                             # stable, for programs
    outcome: Outcome = field(compare=False)               # NOT_MRI (refuses) or CAUTION
    text: str = field(compare=False)                      # one plain sentence, for people

    @property
    def refuses(self) -> bool:
        return self.outcome is Outcome.NOT_MRI

    def fill(self, **details) -> "Reason":
        """This reason with the `{names}` of its sentence filled in."""
        return replace(self, text=self.text.format(**details))

    def __str__(self) -> str:
        return self.text

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


REASONS: dict[str, Reason] = {}           # every reason by code, in the order defined


def define(code: str, outcome: Outcome, text: str) -> Reason:
    """A new reason, registered under its code (which must be new)."""
    if code in REASONS:
        raise ValueError(f"reason code {code!r} is defined twice")
    if outcome is Outcome.CONFIDENT:
        raise ValueError("a reason refuses (NOT_MRI) or calls for caution (CAUTION)")
    REASONS[code] = Reason(code, outcome, text)
    return REASONS[code]


# --- the reasons: adding one is one line here; `decide` needs no change ------------------------
# Refusals: the input does not look like a brain MRI slice.
MODALITY = define("not_mr_modality", Outcome.NOT_MRI,
                  "The file's DICOM header declares modality {modality}, not MR: it is not an MRI scan.")
COLOUR = define("in_colour", Outcome.NOT_MRI, "It is in colour, where an MRI slice is greyscale.")
NO_BACKGROUND = define("no_dark_background", Outcome.NOT_MRI,
                       "There is no dark background around the head, as there is on an MRI slice.")
UNLIKE_TRAINING = define("unlike_training_scans", Outcome.NOT_MRI,
                         "Its features are unlike the brain MRI slices the models were trained on.")
# Cautions: a class is given, but there is a reason to doubt it.
UNFAMILIAR = define("unfamiliar_scan", Outcome.CAUTION,
                    "This scan looks different from the training scans of the class it was given "
                    "(another scanner, sequence or export, say), so the answer may not hold.")
LOW_CONFIDENCE = define("low_confidence", Outcome.CAUTION,
                        "The model is unsure: its top probability is below the level at which "
                        "its answers were measured to be reliable.")
DISAGREE = define("models_disagree", Outcome.CAUTION, "The models give different answers for this scan.")
CHECKERS_DISAGREE = define("checkers_disagree", Outcome.CAUTION,
                           "The models trained to check this one give another class ({classes}), "
                           "so the answer may not hold.")

REFORMATTED = define("reformatted_slice", Outcome.CAUTION,
                     "This {plane} slice was cut across a scan acquired {acquired}, each pixel "
                     "drawn out {stretch} times: the models were never trained or checked on such "
                     "pictures, so the answer may not hold.")

DEFAULT_MIN_CONFIDENCE = 0.6    # a checkpoint without a familiarity detector: caution under this


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()      # the refusals (NOT_MRI) or the cautions (CAUTION); ()


def decide(reasons: Iterable[Reason], is_mri: bool = True) -> Verdict:
    """The outcome of one answer from every reason found, each reason once, in the order found.

    Any refusal: NOT_MRI, with the refusals only (a caution about a class means nothing once
    no class is given). `is_mri` False: a check refused it without naming a reason, which is
    then `UNLIKE_TRAINING`. Else any caution: CAUTION, with the cautions. Else CONFIDENT."""
    found = tuple(dict.fromkeys(reasons))
    refusals = tuple(r for r in found if r.refuses)
    if refusals or not is_mri:
        return Verdict(Outcome.NOT_MRI, refusals or (UNLIKE_TRAINING,))
    return Verdict(Outcome.CAUTION, found) if found else Verdict(Outcome.CONFIDENT)


def with_reason(answer, reason: Reason):
    """`answer` (a `Prediction` or a service `Result`) with one more reason, its outcome decided
    again (`decide`: a refused input stays refused)."""
    verdict = decide((*answer.reasons, reason), answer.is_mri)
    return replace(answer, outcome=verdict.outcome, reasons=verdict.reasons)


# --- the rules ---------------------------------------------------------------------------------
def input_reasons(check) -> tuple[Reason, ...]:
    """Refusals from the model-free input checks (`brainmri.mri_check.InputCheck`; None: none),
    and the caution a picture carries about itself: cut across thicker slices (rule v21)."""
    from . import mri_check
    if check is None:
        return ()
    found = []
    if check.modality not in mri_check.MRI_MODALITIES:
        found.append(MODALITY.fill(modality=check.modality))
    if check.colour_share > mri_check.MAX_COLOUR_SHARE:
        found.append(COLOUR)
    if check.dark_corners < mri_check.MIN_DARK_CORNERS:
        found.append(NO_BACKGROUND)
    if check.cut:
        plane, acquired, drawn_out = check.cut
        found.append(REFORMATTED.fill(plane=plane, acquired=acquired, stretch=f"{drawn_out:.1f}"))
    return tuple(found)


def caution_reasons(top_probability: float, familiarity: float = math.nan,
                    min_familiarity: float = 0.0,
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> tuple[Reason, ...]:
    """Cautions about a given class: the scan's familiarity (in [0, 1]; nan: not measured)
    under `min_familiarity`, the top probability under `min_confidence` (the checkpoint's
    thresholds, `brainmri.familiarity`; without them, `DEFAULT_MIN_CONFIDENCE`)."""
    found = []
    if familiarity < min_familiarity:           # nan compares False: no detector, no caution
        found.append(UNFAMILIAR)
    if top_probability < min_confidence:
        found.append(LOW_CONFIDENCE)
    return tuple(found)


def checker_reasons(label: str, checker_labels: Iterable[str]) -> tuple[Reason, ...]:
    """The caution about a confident answer `label` when a checking model gives another class
    (rule v18 of logs/confident/rule.md: stage 10's confident answer stands only when every
    checker gives its class), the other classes named as people read them."""
    from .classes import class_label
    other = [c for c in dict.fromkeys(checker_labels) if c != label]
    if not other:
        return ()
    return (CHECKERS_DISAGREE.fill(classes=", ".join(class_label(c).lower() for c in other)),)


def shown(outcome: Outcome, label: str | None,
          probabilities: Mapping[str, float]) -> tuple[str | None, dict[str, float]]:
    """What an answer may show, as (class, probabilities): a refusal shows neither."""
    if outcome is Outcome.NOT_MRI:
        return None, {}
    return label, dict(probabilities)
