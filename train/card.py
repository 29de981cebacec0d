"""Write a checkpoint's model card: what the studies found about that checkpoint.

    python -m train.card checkpoints/resnet50.safetensors logs/eval/resnet50/card.json
    python -m train.card checkpoints/resnet50.safetensors            # print the card it holds

The card is `meta["card"]`, read by the app (`brainmri.service`), which holds no finding about
a particular checkpoint. Keys, each a markdown string or a list of them, each naming the
command that measured it:
- `limitations`: bullets added to the general limitations;
- `precision`: shown beside "Runs on" when a model runs on a GPU;
- `recheck`: shown under the answer of "Did the highlighted region decide?".
Retrain a model and its card starts empty; rerun the studies and write what they found.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from brainmri.checkpoint import read_metadata, update_metadata

KEYS = ("limitations", "precision", "recheck")


def read_card(path: Path) -> dict:
    """A card JSON file -> its entries, checked: known keys, markdown strings or lists of them."""
    card = json.loads(Path(path).read_text())
    if not isinstance(card, dict):
        raise ValueError(f"{path}: a card is a JSON object with keys {', '.join(KEYS)}")
    for key, value in card.items():
        if key not in KEYS:
            raise ValueError(f"{path}: unknown card key {key!r}; known: {', '.join(KEYS)}")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) and t for t in texts):
            raise ValueError(f"{path}: {key} must be a non-empty string or a list of them")
    return card


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.card", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("card", type=Path, nargs="?", help="card JSON to store (replaces the card)")
    args = p.parse_args(argv)
    if args.card is not None:
        update_metadata(args.checkpoint, card=read_card(args.card))
    card = read_metadata(args.checkpoint).get("card", {})
    print(json.dumps(card, indent=1))
    return card


if __name__ == "__main__":
    main()
