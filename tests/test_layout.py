"""The shape of the repository: the library's public API is the only way in."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", ".git", ".cache", "runs", "node_modules"}


def python_files(*, inside_library: bool) -> list[Path]:
    files = [p for p in ROOT.rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts)]
    return [p for p in files if (p.relative_to(ROOT).parts[0] == "brainmri") == inside_library]


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def library_private_names() -> set[str]:
    """Every leading-underscore function, class, attribute or variable the library defines."""
    names = set()
    for path in python_files(inside_library=True):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if private(n)}


def test_no_module_outside_the_library_uses_its_private_names():
    library = library_private_names()
    found = []
    for path in python_files(inside_library=False):
        tree = ast.parse(path.read_text())
        own = {getattr(node, "name", None) or getattr(node, "attr", None) or getattr(node, "id", None)
               for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               or isinstance(getattr(node, "ctx", None), ast.Store)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("brainmri"):
                found += [f"{where} imports {a.name}" for a in node.names if private(a.name)]
            elif (isinstance(node, ast.Attribute) and node.attr in library
                  and node.attr not in own):
                found.append(f"{where} uses .{node.attr}")
    assert not found, "private names of brainmri used outside it:\n" + "\n".join(found)


def test_readme_is_short_and_its_links_resolve():
    """README.md stays under 200 lines (the rest lives in docs/) and every relative link in it,
    and in the docs pages, names a file that exists."""
    import re
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("---\ntitle: brainmri\n"), "the Hugging Face Space front matter comes first"
    assert len(readme.splitlines()) < 200
    broken = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_pyproject_declares_the_packages_and_the_cli():
    import tomllib
    from importlib import import_module
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(project["tool"]["setuptools"]["packages"]) >= {"brainmri", "train", "studies"}
    module, _, name = project["project"]["scripts"]["brainmri"].partition(":")
    main = getattr(import_module(module), name)
    try:
        main(["classify", "--help"])
    except SystemExit as done:                  # argparse exits 0 after printing the help
        assert done.code == 0


def test_checkpoints_folder_holds_only_the_weight_files():
    """Run logs, rules and evaluation outputs live in logs/, never beside the weights."""
    others = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "checkpoints").rglob("*")
                    if p.is_file() and p.suffix != ".safetensors")
    assert not others, "move these to logs/<run-name>/: " + ", ".join(others)


def test_train_main_lists_every_recipe():
    import train.__main__ as entry
    from train.recipes import RECIPES
    missing = [name for name in RECIPES if f"--recipe {name} " not in entry.__doc__]
    assert not missing, f"train/__main__.py's docstring does not show --recipe {missing}"


# Where a model may be named: its registry record and weights loader, the recipes, tests, docs.
NAMING_ALLOWED = {"brainmri/models.py", "brainmri/imagenet.py", "train/recipes.py"}


def code_words(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is not a docstring or other bare string
    statement, and every identifier: what the code does, not what its prose says."""
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.Name):
            out.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            out.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((node.lineno, node.name))
        elif isinstance(node, ast.arg):
            out.append((node.lineno, node.arg))
        elif isinstance(node, ast.keyword) and node.arg:
            out.append((node.lineno, node.arg))
        elif isinstance(node, ast.alias):
            out.append((getattr(node, "lineno", 0), node.asname or node.name))
    return out


def test_no_model_is_named_outside_the_registry():
    """The deployer, the CLIs, the app, the benchmarks, the scripts, the trainer and the studies
    read the registry (`brainmri.models.ARCHS`, `default_model`) and the checkpoints folder:
    a registered model's name or label appears in code only where NAMING_ALLOWED says."""
    import re
    from brainmri.models import ARCHS
    words = sorted({w for a in ARCHS.values() for w in (a.name, a.label)}, key=len, reverse=True)
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, words)) + r")(?![A-Za-z0-9])",
                         re.IGNORECASE)
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if SKIP & set(rel.parts) or rel.parts[0] == "tests" or rel.as_posix() in NAMING_ALLOWED:
            continue
        for line, text in code_words(ast.parse(path.read_text())):
            match = pattern.search(text)
            if match:
                found.append(f"{rel}:{line} {match.group(0)!r} in {text[:60]!r}")
    assert not found, "model names outside the registry:\n" + "\n".join(found)


def project_imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, anywhere in it (lazy imports included), for
    the packages brainmri, train and studies."""
    packages = ("brainmri", "train", "studies")
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for pkg in packages for p in (ROOT / pkg).glob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                    + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_train_and_studies_never_import_each_other():
    """train/ builds, studies/ measures: what both need lives in the library."""
    crossing = sorted(f"{m} imports {t}" for m, targets in project_imports().items() for t in targets
                      if {m.split(".")[0], t.split(".")[0]} == {"train", "studies"})
    assert not crossing, "\n".join(crossing)


def test_no_import_circle():
    """No module of brainmri, train or studies reaches itself through its imports, lazy ones
    included (package __init__ re-exports aside: a package importing its own modules is not a
    circle). One trainer, its stages called one way (train.train -> train.dilate ->
    train.core); the readers share `brainmri.inputs` rather than each other."""
    graph = project_imports()
    graph = {m: {t for t in ts if not (m.count(".") == 0 and t.startswith(m + "."))}
             for m, ts in graph.items()}
    circles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_train_functions_read_top_to_bottom():
    """No function in train/ over 80 lines: long loops are split into named steps."""
    long = [f"{p.relative_to(ROOT)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p in sorted((ROOT / "train").glob("*.py")) for n in ast.walk(ast.parse(p.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 80]
    assert not long, "\n".join(long)
