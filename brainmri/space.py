"""Deploy the app to a Hugging Face Space: exactly the files it needs, nothing else.

    python -m brainmri.space --dry-run                    # list the files and their sizes
    python -m brainmri.space someone/brainmri             # create/update the Space and upload
    python -m brainmri.space someone/brainmri --stage /tmp/space   # copy the files there, no upload

The Space gets `app.py`, the library (`brainmri/*.py`), `requirements.txt`, one checkpoint per
registered model found in `--checkpoints` (as `checkpoints/<name>.safetensors`) with its checkers
(`checkpoints/checkers/<name>/`), the example scans with their attribution, and a README.md made here with the Space's front
matter. The upload goes through `huggingface_hub` (installed with gradio), which stores the
checkpoints over 10 MB with the hub's large-file storage; it needs a token with write access
(`huggingface-cli login` or HF_TOKEN). Research and education only.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .models import ARCHS
from .predictor import checker_paths

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = Path("checkpoints")             # where the app looks, in the repository and the Space
README = "README.md"

FRONT_MATTER = """---
title: brainmri
emoji: 🧠
colorFrom: indigo
colorTo: gray
sdk: gradio
sdk_version: {gradio}
python_version: "3.11"
app_file: app.py
license: mit
short_description: Brain MRI tumour classifier + Grad-CAM; not for diagnosis
tags: [medical-imaging, mri, grad-cam, explainability, research-only]
---

# brainmri

Classifies one 2-D brain MRI slice (glioma, meningioma, no tumour, pituitary tumour) and shows
where the evidence came from with a class activation map. **Research and education only: not a
medical device, not for diagnosis.** Source, model card and measurements: the project's
repository. Example scans: `examples/ATTRIBUTION.md`.
"""


def checkpoint_files(folder: Path) -> dict[Path, Path]:
    """`checkpoints/<name>.safetensors` in the Space -> `<folder>/<name>.safetensors`, for each
    registered model whose checkpoint is in `folder`, and its checkers
    (`checkpoints/checkers/<name>/*.safetensors`: `predictor.checker_paths`). Raises
    FileNotFoundError when no checkpoint is there."""
    found = {CHECKPOINTS / f"{n}.safetensors": folder / f"{n}.safetensors" for n in ARCHS}
    found = {dest: src for dest, src in found.items() if src.is_file()}
    if not found:
        raise FileNotFoundError("a Space needs a checkpoint: none of "
                                + ", ".join(f"{n}.safetensors" for n in ARCHS) + f" in {folder}")
    for src in list(found.values()):
        found.update({CHECKPOINTS / c.relative_to(folder): c for c in checker_paths(src)})
    return found


def space_files(root: Path = ROOT, checkpoints: Path | None = None) -> dict[Path, Path]:
    """The files a Space needs: path in the Space -> file here, sorted by the former (README.md
    is generated, not listed). `checkpoints` defaults to `root/checkpoints`. Raises
    FileNotFoundError naming what is missing."""
    files = [Path("app.py"), Path("requirements.txt")]
    files += sorted(p.relative_to(root) for p in (root / "brainmri").glob("*.py"))
    files += sorted(p.relative_to(root) for p in (root / "examples").iterdir()
                    if p.is_file() and not p.name.startswith("."))
    missing = [str(f) for f in files if not (root / f).is_file()]
    if missing or not (root / "examples" / "ATTRIBUTION.md").is_file():
        raise FileNotFoundError("a Space needs these files: " + ", ".join(missing or ["examples/ATTRIBUTION.md"]))
    found = {f: root / f for f in files}
    found.update(checkpoint_files(checkpoints or root / CHECKPOINTS))
    return dict(sorted(found.items()))


def readme() -> str:
    from importlib.metadata import version          # no gradio import: the dry run stays quick
    return FRONT_MATTER.format(gradio=version("gradio"))


def listing(root: Path = ROOT, checkpoints: Path | None = None) -> list[tuple[str, int]]:
    """(path, bytes) for every file the Space gets, README.md included."""
    rows = [(str(f), src.stat().st_size) for f, src in space_files(root, checkpoints).items()]
    return sorted(rows + [(README, len(readme().encode()))])


def stage(dest: str | Path, root: Path = ROOT, checkpoints: Path | None = None) -> Path:
    """Copy exactly the Space's files into `dest` (created; must be empty) and write README.md."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    for f, src in space_files(root, checkpoints).items():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    (dest / README).write_text(readme(), encoding="utf-8")
    return dest


def upload(repo_id: str, folder: Path, private: bool = False) -> str:
    """Create the Space if needed and upload `folder` as one commit; return its URL."""
    from huggingface_hub import HfApi
    api = HfApi()
    api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder),
                      commit_message="Deploy brainmri (python -m brainmri.space)",
                      delete_patterns=["*.py", "brainmri/*.py", "examples/*", "checkpoints/*"])
    return f"https://huggingface.co/spaces/{repo_id}"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m brainmri.space", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("space", nargs="?", help="the Space to create or update, owner/name")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; upload nothing")
    p.add_argument("--stage", type=Path, default=None,
                   help="copy the files into this (empty) folder and stop, no upload")
    p.add_argument("--private", action="store_true", help="create the Space private")
    p.add_argument("--checkpoints", type=Path, default=ROOT / CHECKPOINTS,
                   help="folder of <name>.safetensors: each registered model's found here is deployed")
    return p


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        rows = listing(checkpoints=args.checkpoints)
    except FileNotFoundError as error:
        parser.error(str(error))
    if args.dry_run:
        width = max(len(path) for path, _ in rows)
        for path, size in rows:
            print(f"{path:<{width}}  {_size(size):>9}")
        print(f"{len(rows)} files, {_size(sum(s for _, s in rows))} in all")
        return 0
    if args.stage:
        print(f"staged {len(rows)} files in {stage(args.stage, checkpoints=args.checkpoints)}")
        return 0
    if not args.space or "/" not in args.space:
        parser.error("name the Space as owner/name (or use --dry-run)")
    import tempfile
    with tempfile.TemporaryDirectory(prefix="brainmri-space-") as tmp:
        print(upload(args.space, stage(Path(tmp) / "space", checkpoints=args.checkpoints), args.private))
    return 0


if __name__ == "__main__":
    sys.exit(main())
