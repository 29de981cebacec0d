"""What is said about the loaded models: the model card, rendered as Markdown from each
checkpoint's own metadata (architecture, recipe and its arguments, data, calibration, detector
thresholds, measured figures, metrics, and `meta["card"]`, the findings `python -m train.card`
stored from the studies). Pure text: no gradio. Nothing here names or describes a particular
checkpoint; what is true of one comes from its metadata.

    from brainmri.card import model_card
    model_card({"model": predictor}, predictor.classes)   # anything with `.meta` (and `.device`)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .batching import predictor_of
from .cam import DEFAULT_METHOD, LABELS
from .checkpoint import INTENDED_USE
from .classes import class_label
from .models import ARCHS, MODEL_LABELS
from .outcomes import CHECKERS_DISAGREE, LOW_CONFIDENCE, UNFAMILIAR, Outcome
from .protocols import DESCRIPTIONS


def model_card(engines: Mapping[str, object], classes: Sequence[str]) -> str:
    """Markdown: intended use, classes, data, one section per model (`model_section`), where
    each runs (`runs_on`), known limitations (`limitations`). `engines`: by model key, each
    with `meta` (a `Predictor`, or a `Batcher` around one)."""
    parts = ["## Model card", f"**Intended use.** {INTENDED_USE} "
             "The output is a statistical guess about a single 2-D slice, made for research "
             "and teaching about classifiers and their explanations; it must never inform "
             "the care of a person.",
             "**Classes.** " + ", ".join(f"{class_label(c)} (`{c}`)" for c in classes) + ".",
             DATA_NOTE]
    parts += [model_section(name, engine.meta, checker_metas(engine)) for name, engine in engines.items()]
    parts += [runs_on(engines), limitations(engines)]
    return "\n\n".join(part for part in parts if part)


def runs_on(engines: Mapping[str, object]) -> str:
    """Markdown: where each model runs and in which number format ("" if no engine says)."""
    where, gpu = [], False
    for name, engine in engines.items():
        predictor = predictor_of(engine)
        device = getattr(predictor, "device", None)
        if device is None:
            continue
        device = torch.device(device)
        gpu = gpu or device.type == "cuda"
        place = (f"GPU `{device}` ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
                 else f"the CPU ({torch.get_num_threads()} threads)" if device.type == "cpu" else f"`{device}`")
        where.append(f"{MODEL_LABELS.get(name, name)} on {place}, "
                     f"{'bfloat16 autocast' if getattr(predictor, 'bf16', False) else 'float32'}")
    if not where:
        return ""
    why = "".join(" " + text for text in card_texts(engines, "precision")) if gpu else ""
    return "**Runs on.** " + "; ".join(where) + "." + why


DATA_NOTE = (
    "**Data.** The public Kaggle *Brain Tumor MRI Dataset* (M. Nickparvar), itself assembled "
    "from three older sets (figshare / Cheng et al., SARTAJ, Br35H): 2-D slices exported as "
    "JPEG/PNG, four classes. How each model's training data was drawn is stated below, "
    "from its checkpoint.")

LIMITATIONS = """### Known limitations
- **Duplicated data.** The Kaggle set holds byte-identical, resized, re-encoded and mirrored
  copies of the same scans; about three quarters of its Testing images have a copy in Training.
  Accuracy on the official split therefore largely measures memory: read the *clean* number.
- **Labels as published.** The labels come from the three source sets and were not checked by
  a radiologist here: four pictures carry two different labels (kept out of training), and a
  few scans labelled meningioma show, to a non-specialist's eye, a ring-enhancing lesion inside
  the brain, the usual look of a glioma (docs/generalisation.md).
- **Source shortcuts.** Image mode, size and border follow the source collection (greyscale
  figshare tumours, RGB Br35H/SARTAJ normals), so a model can key on them instead of anatomy.
  Inputs are converted to luminance and cropped to the head to blunt this; it is not proof.
- **Narrow scope.** Single axial/coronal/sagittal slices of adults with one of three tumour
  types or none; no other pathology, no 3-D context, no clinical information. Anything else
  (other body parts, photos, other diseases) is out of scope; an out-of-distribution check
  flags inputs unlike the training scans but cannot catch everything.
- **Tumours seen on one kind of scan.** The collection's gliomas and pituitary tumours, and
  nearly all its meningiomas, are T1-weighted slices, while its T2, FLAIR and CT slices are
  almost all "no tumour". The models were never shown a tumour on those contrasts: there an answer,
  "no tumour" above all, can be marked confident and be wrong (docs/generalisation.md).
- **Confidence outside the collection.** On brain MRI from other hospitals, sequences and
  exports, a high percentage can mean little. Scans unlike the training scans of their class
  are marked "treat with caution", but no such check catches every shift, and it cannot see an
  answer that ignores the lesion: what "confident" was measured to mean is in each model's
  section above.
- **Explanations are not localisation.** A class activation map shows which regions moved the
  score, at coarse resolution; it can highlight a shortcut as confidently as a tumour."""


def card_texts(engines: Mapping[str, object], key: str) -> list[str]:
    """The texts under `key` of each engine's model card (`meta["card"]`, written from the
    studies that measured that checkpoint: `python -m train.card`), in order, each once."""
    found: list[str] = []
    for engine in engines.values():
        value = (engine.meta.get("card") or {}).get(key) or []
        found += [t for t in ([value] if isinstance(value, str) else value) if t not in found]
    return found


def limitations(engines: Mapping[str, object]) -> str:
    """Markdown: the limitations of any model trained on this data, then what the checkpoints'
    own cards add."""
    return LIMITATIONS + "".join("\n- " + text for text in card_texts(engines, "limitations"))


# Columns of the metrics table, in order, when a checkpoint has them (else every number).
METRIC_COLUMNS = {"n": "images", "accuracy": "accuracy", "macro_f1": "macro F1",
                  "roc_auc_ovr": "ROC AUC", "ece_calibrated": "ECE"}
PROTOCOL_ORDER = ("clean", "official", "roboflow", "val")


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _head_penalty(args: dict) -> str:
    """What the head-mask penalties of a run kept inside the head, from its arguments."""
    last, finer = args.get("outside_weight"), args.get("finer_weight")
    if last and finer:
        return f", last map and a finer map kept inside the head (penalty weights {last:g} and {finer:g})"
    if last:
        return f", last map kept inside the head (penalty weight {last:g})"
    if finer:
        return f", a finer map kept inside the head (penalty weight {finer:g})"
    return ""


def _dilated(meta: dict) -> bool:
    """Whether the checkpoint's last stage trades its stride for dilation (`Arch.dilation`)."""
    arch = ARCHS.get(meta.get("arch", ""))
    return bool(arch is not None and arch.dilation
                and (meta.get("arch_kwargs") or {}).get(arch.dilation))


def _lesion_signals(args: dict) -> str:
    """What the lesion recipes (`train.paint`, `train.guidance`, `train.augment`) trained with."""
    parts = []
    if args.get("counterfactual"):
        parts.append(f"{100 * args['counterfactual']:g}% of boxed tumour scans also shown with the "
                     f"tumour painted out as no tumour, with balanced control paintings")
    if args.get("implant"):
        parts.append(f"boxed tumours pasted into no-tumour scans in their look ({args['implant']:g} "
                     f"a no-tumour scan), with as many healthy-patch controls")
    if args.get("guidance"):
        parts.append(f"map mass outside the tumour box penalised (weight {args['guidance']:g})")
    if args.get("acquisition"):
        parts.append("contrast and acquisition augmentation")
    if args.get("prior_correct"):
        parts.append("no-tumour prior corrected")
    return "; " + "; ".join(parts) if parts else ""


def familiarity_line(info: dict) -> str:
    """Markdown: what "confident" means for one checkpoint, from `meta["familiarity"]`."""
    line = (f"- Outcome: **{Outcome.CONFIDENT.value}** unless the scan's familiarity (how much "
            f"it resembles the training scans of its predicted class, at "
            f"{len(info.get('taps', []))} depths of the network) is below "
            f"{info.get('min_familiarity', 0):g} (under the "
            f"{100 * info.get('min_familiarity', 0):g}th percentile of validation scans: reason "
            f"`{UNFAMILIAR.code}`) or the top probability is below "
            f"{info.get('min_confidence', 0):.3f} (reason `{LOW_CONFIDENCE.code}`); then "
            f"**{Outcome.CAUTION.words.lower()}**, with each reason in words")
    measured = info.get("measured") or {}
    if measured:
        line += (f". Measured ({measured.get('by', 'train.fit_familiarity')}): "
                 + "; ".join(f"{name}: {100 * m[Outcome.CONFIDENT.value]:.1f}% confident, accuracy of confident "
                             f"answers {100 * m['accuracy_confident']:.1f}%"
                             for name, m in measured.items() if isinstance(m, dict)))
    return line


def checker_metas(engine) -> list[dict]:
    """The metadata of the checkpoints that check `engine`'s confident answers (none: [])."""
    return [c.meta for c in getattr(predictor_of(engine), "checkers", ())]


def checkers_line(checkers: Sequence[dict]) -> str:
    """Markdown: the checkers of a checkpoint and what the checked outcome was measured to do,
    from their metadata (`python -m train.checkers`)."""
    checks = checkers[0].get("checks") or {}
    names = ", ".join(f"`{m.get('name', '?')}` ({m.get('recipe', '?')}, "
                      f"{(m.get('preset') or {}).get('size', '?')} px)" for m in checkers)
    line = (f"- Checked by {len(checkers)} model(s) trained on the same split: {names}"
            + (f", chosen by {checks['rule']}" if checks.get("rule") else "")
            + f". A {Outcome.CONFIDENT.value} answer stays so only when every checker gives its "
            f"class; else **{Outcome.CAUTION.words.lower()}** (reason `{CHECKERS_DISAGREE.code}`). "
            "The class, probabilities and map shown are this model's alone")
    measured = checks.get("measured") or {}
    if measured.get("sets"):
        key = Outcome.CONFIDENT.value
        line += (f". Measured with them ({measured.get('by', 'studies.generalisation --checked')}): "
                 + "; ".join(f"{name}: {100 * m[key]:.1f}% confident, accuracy of confident answers "
                             f"{100 * m['right']:.1f}%" for name, m in measured["sets"].items()))
    return line


def model_section(name: str, meta: dict, checkers: Sequence[dict] = ()) -> str:
    """Markdown for one checkpoint from its own metadata (nothing repeated elsewhere), and from
    its checkers' (`checkers_line`) when it has them."""
    preset = meta.get("preset", {})
    lines = [f"### {MODEL_LABELS.get(name, name)} (`{meta.get('name', name)}`)",
             f"- Architecture: `{meta.get('arch', '?')}`; input {preset.get('size', '?')} px, "
             f"{preset.get('channels', '?')} channel(s), head-cropped luminance"
             + (", last stage dilated (a finer map for the heatmaps)" if _dilated(meta) else ""),
             f"- Training recipe: `{meta.get('recipe', '?')}`"
             + (f", best epoch {meta['best_epoch']}" if "best_epoch" in meta else "")
             + _head_penalty(meta.get("args") or {}) + _lesion_signals(meta.get("args") or {})]
    data = meta.get("data") or {}
    if isinstance(data, dict) and data.get("source"):
        lines.append(f"- Data: {data['source']}")
    if "calibration" in meta:
        lines.append(f"- Probabilities calibrated by temperature scaling "
                     f"(T = {meta['calibration'].get('temperature', 1.0):.2f}) on validation")
    if "ood" in meta:
        ood = meta["ood"]
        lines.append(f"- Not-an-MRI check: {ood.get('method', '?')}, threshold "
                     + (f"refusing {100 * ood['refused']:.1f}% of unseen training and validation scans"
                        if "refused" in ood else
                        f"at the {100 * ood.get('quantile', 0):.1f}th percentile of validation scans"))
    if "familiarity" in meta:
        lines.append(familiarity_line(meta["familiarity"]))
    if checkers:
        lines.append(checkers_line(checkers))
    if meta.get("cam_scores"):
        best = meta.get("default_cam", DEFAULT_METHOD)
        scores = ", ".join(f"{LABELS.get(m, m)}{' (default)' if m == best else ''} {100 * v:.0f}%"
                           for m, v in sorted(meta["cam_scores"].items(), key=lambda kv: -(kv[1] or 0))
                           if v is not None)
        lines.append(f"- Explanations, pointing game ({meta.get('cam_scores_about', 'validation')}): "
                     + scores)
    if meta.get("created"):
        lines.append(f"- Created {meta['created']}")
    metrics = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, dict)}
    if metrics:
        numeric = {k for v in metrics.values() for k, x in v.items()
                   if isinstance(x, (int, float)) and not isinstance(x, bool)}
        keys = [k for k in METRIC_COLUMNS if k in numeric] or sorted(numeric)
        order = [p for p in PROTOCOL_ORDER if p in metrics] + \
                [p for p in metrics if p not in PROTOCOL_ORDER]
        lines += ["", "| protocol | " + " | ".join(METRIC_COLUMNS.get(k, k) for k in keys)
                  + " | what it measures |", "|---|" + "---|" * len(keys) + "---|"]
        for proto in order:
            values = metrics[proto]
            cells = " | ".join(_fmt(values[k]) if k in values else "–" for k in keys)
            what = DESCRIPTIONS.get(proto) or values.get("description", "")
            lines.append(f"| {proto} | {cells} | {what} |")
    else:
        lines.append("- No evaluation metrics recorded in this checkpoint.")
    return "\n".join(lines)
