"""Do an answer's nearest training scans, in the model's own features, share it? (rule v9)

    python -m studies.neighbours R1.safetensors --data ../shared/data --out logs/eval/generalisation

A deep k-nearest-neighbour check (Papernot & McDaniel 2018, "Deep k-Nearest Neighbors"): for
each scan, the `--k` training scans of the checkpoint's own split nearest to it (cosine) in what
the model's last linear layer is given; the answer's *support* is the share of them whose class
is the answer. An answer the last layer gives but that the scans around it do not back is one
the model was not shown to hold there. For every set of the run (`val`; with a held-out source,
`loso` and `loso_training`) the study reports today's confident answers and those left when
"confident" also asks a support of at least tau, for each tau of `TAUS`, and the rule's tau:
the largest that keeps at least `KEEP` of `val`'s answers confident (rule v9 of
logs/confident/rule.md, written before any figure of it). Scans are prepared and answered as
the app does (`Predictor`); nothing from Kaggle Testing is read but a held-out source's scans.
Writes `<model>-neighbours.json` under `--out` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from brainmri.models import last_inputs_recorded
from brainmri.outcomes import Outcome
from brainmri.predictor import Predictor
from brainmri.protocols import DATA_HELP, run_splits
from studies.generalisation import add_scoring_arguments, evenly, prepared_batches, result_name

TAUS = (0.2, 0.4, 0.6, 0.8, 1.0)
KEEP = 0.85                # rule v9: tau keeps at least this share of val's answers confident
K = 25


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--out", type=Path, default=Path("logs/eval/generalisation"))
    p.add_argument("--k", type=int, default=K, help="neighbours asked")
    p.add_argument("--name", help="the result's model name (default: the checkpoint's)")
    add_scoring_arguments(p)
    return p


def answered(predictor: Predictor, samples, batch_size: int) -> dict[str, np.ndarray]:
    """Per readable scan: label, answer, whether the app marks it confident, and the last
    linear layer's input (N, F), from the app's one pass."""
    rows = {"label": [], "answer": [], "marked": [], "features": []}
    with last_inputs_recorded(predictor.model) as seen:
        for chunk, prepared, _ in prepared_batches(predictor, samples, batch_size):
            if not prepared:
                continue
            seen.clear()
            preds = predictor.predict_batch(prepared=prepared)
            rows["features"].append(seen[0].numpy())
            for smp, pred in zip(chunk, preds):
                rows["label"].append(smp.label)
                rows["answer"].append(predictor.classes.index(pred.label))
                rows["marked"].append(pred.outcome is Outcome.CONFIDENT)
    out = {k: np.array(v) for k, v in rows.items() if k != "features"}
    out["features"] = np.concatenate(rows["features"]) if rows["features"] else np.zeros((0, 0), np.float32)
    return out


def support(train: dict, scored: dict, k: int) -> np.ndarray:
    """(N,) share of each scan's k nearest training scans (cosine) whose class is its answer."""
    k = min(k, len(train["label"]))
    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(train["features"])
    _, idx = nn.kneighbors(scored["features"])
    return (train["label"][idx] == scored["answer"][:, None]).mean(1)


def held(confident: np.ndarray, right: np.ndarray) -> dict:
    """{"kept": share of answers, "right": share of those right (nan when none)}."""
    return {"kept": float(confident.mean()) if len(confident) else float("nan"),
            "right": float(right[confident].mean()) if confident.any() else float("nan")}


def summarise(scored: dict, share: np.ndarray) -> dict:
    """One set's figures: today's confident answers and, per tau, those with support >= tau."""
    right, confident = scored["answer"] == scored["label"], scored["marked"]
    return {"n": int(len(right)), "accuracy": float(right.mean()) if len(right) else float("nan"),
            "today": held(confident, right),
            "support_right": float(share[right].mean()) if right.any() else float("nan"),
            "support_wrong": float(share[~right].mean()) if (~right).any() else float("nan"),
            "by_tau": {str(t): held(confident & (share >= t - 1e-9), right) for t in TAUS}}


def rule_tau(val: dict) -> float | None:
    """Rule v9's tau: the largest of TAUS keeping at least KEEP of val's answers confident."""
    ok = [t for t in TAUS if val["by_tau"][str(t)]["kept"] >= KEEP]
    return max(ok) if ok else None


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device, checked=False)
    splits = run_splits(args.data, predictor.meta.get("args", {}))
    train = answered(predictor, evenly(splits.train, args.limit), args.batch_size)
    sets = {"val": splits.val}
    if splits.loso is not None:
        sets.update(loso=splits.loso, loso_training=[s for s in splits.loso if s.split == "train"])
    result = {"checkpoint": str(args.checkpoint), "k": args.k, "keep": KEEP,
              "model": args.name or result_name(predictor.name, splits.holdout_source), "sets": {}}
    for name, samples in sets.items():
        scored = answered(predictor, evenly(samples, args.limit), args.batch_size)
        result["sets"][name] = summarise(scored, support(train, scored, args.k))
    result["tau"] = rule_tau(result["sets"]["val"])
    result.update(date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  machine=f"{platform.machine()} {platform.processor() or ''}".strip())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{result['model']}-neighbours.json").write_text(json.dumps(result, indent=1))
    print(table([result]))
    return result


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.1f}%"


def table(results: list[dict]) -> str:
    """Per model and set: today's confident (right) and, per tau, confident with support >= tau
    (right); the rule's tau is starred."""
    head = "| model | set | n | mean support: right / wrong | confident (right) | " + " | ".join(
        f"support >= {t} (right)" for t in TAUS) + " |"
    lines = [head, "|" + "---|" * (5 + len(TAUS))]
    for r in results:
        for name, s in r["sets"].items():
            cells = [f"{pct(h['kept'])} ({pct(h['right'])})" + (" *" if float(t) == r.get("tau") else "")
                     for t, h in s["by_tau"].items()]
            lines.append(f"| {r['model']} | {name} | {s['n']} | {s['support_right']:.2f} / "
                         f"{s['support_wrong']:.2f} | {pct(s['today']['kept'])} "
                         f"({pct(s['today']['right'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
