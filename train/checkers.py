"""Install the models that check a checkpoint's confident answers, and store what they do.

    python -m train.checkers checkpoints/resnet50.safetensors C1/model.safetensors C2/model.safetensors \\
        --rule "rule v18 of logs/confident/rule.md"
    python -m train.checkers checkpoints/resnet50.safetensors \\
        --measured logs/eval/generalisation/resnet50-checked.json

The first copies each checker as it was written by training (float16 kernels, its own
detectors untouched) to `<checkpoint's folder>/checkers/<checkpoint's name>/<checker's name>.safetensors`
(`brainmri.predictor.checker_paths`) and records in its metadata what it checks (`checks`:
the checkpoint's file name and the rule that chose them). A checker must have been trained on
the checkpoint's own split (the same training and validation fingerprints), so that no scan the
outcome is measured on was seen by it. The app and `python -m brainmri classify` then load the
checkers beside the checkpoint (`Predictor.from_checkpoint` loads them): a confident
answer stays confident only when every checker gives its class.

The second stores in each checker's `checks.measured` what the checked outcome was measured to
do, from a `studies.generalisation --checked` result: per set, the share of answers left
confident and how many of those are right. The model card shows it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from brainmri.checkpoint import read_metadata, update_metadata
from brainmri.outcomes import Outcome
from brainmri.predictor import CHECKERS, checker_paths

SPLIT_KEYS = ("train", "val")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="the checkpoint whose confident answers are checked")
    p.add_argument("checkers", type=Path, nargs="*", help="checkpoints to install as its checkers")
    p.add_argument("--rule", default="", help="what chose these checkers (stored with them)")
    p.add_argument("--measured", type=Path, metavar="JSON",
                   help="a studies.generalisation --checked result: store its confident figures")
    return p


def same_split(checkpoint: dict, checker: dict) -> bool:
    """Whether two checkpoints' metadata name the same training and validation files."""
    a, b = checkpoint.get("data") or {}, checker.get("data") or {}
    return all((a.get(k) or {}).get("sha256") and (a.get(k) or {}).get("sha256") == (b.get(k) or {}).get("sha256")
               for k in SPLIT_KEYS)


def install(checkpoint: Path, checkers: list[Path], rule: str) -> list[Path]:
    """Copy `checkers` beside `checkpoint` (replacing any installed before) with `checks` in
    their metadata. Raises ValueError, before copying anything, for a checker of other classes
    or another split."""
    meta = read_metadata(checkpoint)
    metas = [read_metadata(c) for c in checkers]
    for path, m in zip(checkers, metas):
        if m.get("classes") != meta.get("classes"):
            raise ValueError(f"{path}: classes {m.get('classes')} differ from {meta.get('classes')}")
        if not same_split(meta, m):
            raise ValueError(f"{path}: not trained on {checkpoint.name}'s split (its training and "
                             "validation fingerprints differ): its validation answers would not be honest")
    names = [m.get("name") or c.stem for c, m in zip(checkers, metas)]
    if len(set(names)) != len(names):
        raise ValueError(f"two checkers share a name: {', '.join(names)}")
    folder = checkpoint.parent / CHECKERS / checkpoint.stem
    for old in checker_paths(checkpoint):
        old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src, name in zip(checkers, names):
        dest = folder / f"{name}.safetensors"
        shutil.copyfile(src, dest)
        dest.chmod(0o644)
        update_metadata(dest, checks={"checkpoint": checkpoint.name, "rule": rule})
        out.append(dest)
    return out


def measured(result: dict) -> dict:
    """{set: {"confident": share, "right": share of those right, "n": scans}} from a
    `studies.generalisation` result."""
    key = Outcome.CONFIDENT.value
    return {name: {key: s[key]["share"], "right": s[key]["right"], "n": s["n"]}
            for name, s in result["sets"].items()}


def store_measured(checkpoint: Path, result_path: Path) -> dict:
    """Store the checked outcome's figures (`measured`) in every installed checker's `checks`.
    Raises ValueError when none is installed or the result is not of this checkpoint, checked."""
    result = json.loads(result_path.read_text())
    paths = checker_paths(checkpoint)
    if not paths:
        raise ValueError(f"no checkers installed for {checkpoint}")
    if Path(result.get("checkpoint", "")).resolve() != checkpoint.resolve() or not result.get("checked"):
        raise ValueError(f"{result_path} is not a --checked result of {checkpoint}")
    figures = {"by": f"studies.generalisation --checked, {result.get('date', '')}, {result.get('machine', '')}",
               "sets": measured(result)}
    for path in paths:
        checks = dict(read_metadata(path).get("checks") or {})
        update_metadata(path, checks={**checks, "measured": figures})
    return figures


def main(args: argparse.Namespace) -> None:
    if not args.checkers and args.measured is None:
        raise SystemExit("give checkers to install and/or --measured JSON")
    try:
        if args.checkers:
            for path in install(args.checkpoint, args.checkers, args.rule):
                print(f"installed {path}")
        if args.measured is not None:
            print(json.dumps(store_measured(args.checkpoint, args.measured), indent=1))
    except (OSError, ValueError) as error:
        raise SystemExit(str(error))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
