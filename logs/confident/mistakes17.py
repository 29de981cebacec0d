"""Rule v17's A on protocol 1 through the app's own check (`Predictor.check`): R1-s0 checked by
E4I-s0 and E4I-s1 on the held-out meningiomas from Kaggle Training (`loso_training`); which
confident answers are wrong, with their hand-set plane and contrast, and why the others are
cautioned. Reported, decides nothing (run from the repository root; weights outside git):
    PYTHONPATH=. .venv/bin/python logs/confident/mistakes17.py > logs/confident/mistakes17.txt
"""
import csv
import os
from collections import Counter
from pathlib import Path
import torch
from brainmri.checkpoint import read_metadata
from brainmri.outcomes import Outcome
from brainmri.predictor import Predictor
from brainmri.protocols import run_splits
torch.set_num_threads(1)
runs, imp = os.environ.get("RUNS", "/work/v11"), os.environ.get("IMP", "/work/imp")
main_p = f"{runs}/loso-R1-s0/model.safetensors"
main = Predictor.from_checkpoint(main_p, "cpu")
main.checkers = tuple(Predictor.from_checkpoint(f"{imp}/E4I-s{s}/model.safetensors", "cpu") for s in (0, 1))
splits = run_splits(Path("../shared/data"), read_metadata(main_p)["args"])
samples = [s for s in splits.loso if s.split == "train"]
labels = {r["path"]: r for r in csv.DictReader(open("logs/labels/plane_contrast.csv"))}
conf = right = 0
wrong, cautioned = [], Counter()
for i in range(0, len(samples), 16):
    chunk = samples[i:i + 16]
    for s, p in zip(chunk, main.predict_batch([str(x.path) for x in chunk])):
        key = "/".join(Path(str(s.path)).parts[-3:])
        lab = labels.get(key, {})
        if p.outcome is Outcome.CONFIDENT:
            conf += 1
            ok = p.label == (main.classes[s.label] if isinstance(s.label, int) else s.label)
            right += ok
            if not ok:
                wrong.append((key, p.label, round(max(p.probabilities.values()), 3), lab.get("plane"), lab.get("contrast")))
        else:
            cautioned[tuple(r.code for r in p.reasons)] += 1
print(f"loso_training: {len(samples)} scans, {conf} confident, {right} right ({right / max(conf, 1):.1%})")
print("cautions:", dict(cautioned))
for w in wrong:
    print(w)
