"""The packages are layers (docs/architecture.md): imports only go down, never in a circle, and no
module imports an entry script. Read from the source with ast, so lazy imports inside functions
count too."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# Lower number = lower layer. A module may import its own package or a package of a LOWER layer.
LAYERS: dict[str, int] = {
    "utils": 0,
    "tools": 0,
    "config": 1,
    "dataset": 1,
    "losses": 1,
    "models": 2,
    "runtime": 2,
    "inference": 3,
    "evaluation": 2,
    "training": 4,
    "viz": 4,
    "scripts": 5,
    "bench": 5,
    "experiments": 5,
}
ENTRY_SCRIPTS = {"train", "predict_ensemble", "validate", "segment", "export", "adapt"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def resolve(name: str) -> str:
    """The module a dotted import name refers to (`from a import b` may name module a.b or a's attribute)."""
    parts = name.split(".")
    while parts:
        base = ROOT.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


def own_imports(path: Path) -> set[str]:
    """The repo modules `path` imports, wherever in the file the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS or top in ENTRY_SCRIPTS:
                found.add(resolve(name))
    return found


def import_graph() -> dict[str, set[str]]:
    files = [path for package in LAYERS for path in (ROOT / package).rglob("*.py")]
    files += [ROOT / f"{script}.py" for script in ENTRY_SCRIPTS]
    return {module_name(path): own_imports(path) - {module_name(path)} for path in files}


def test_every_package_has_a_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    assert packages - {"tests"} == set(LAYERS)


def test_imports_only_go_down_and_never_into_an_entry_script() -> None:
    wrong = []
    for module, imported in sorted(import_graph().items()):
        package = module.split(".")[0]
        for target in sorted(imported):
            top = target.split(".")[0]
            if top in ENTRY_SCRIPTS and package in LAYERS:
                wrong.append(f"{module} imports the entry script {target}")
            elif package in LAYERS and top != package and LAYERS[top] >= LAYERS[package]:
                wrong.append(f"{module} (layer {LAYERS[package]}) imports {target} (layer {LAYERS[top]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_walker_sees_upward_imports_and_cycles(tmp_path: Path) -> None:
    """The checks above would pass on an empty graph: make sure the parser finds real imports."""
    graph = import_graph()
    assert "models.zoo" in graph["models.checkpoint"]
    assert "utils.errors" in graph["train"]


def test_every_entry_script_shows_its_defaults_in_help() -> None:
    import argparse

    from utils.cli import HelpFormatter

    for script in sorted(ENTRY_SCRIPTS):
        assert "formatter_class=HelpFormatter" in (ROOT / f"{script}.py").read_text(), script
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--workers", type=int, default=3, help="threads")
    parser.add_argument("--tta", default="hflip", help="views (default: the file's)")
    parser.add_argument("--gpu", help="device")
    text = parser.format_help()
    assert "threads (default: 3)" in text and "(default: hflip)" not in text and "device (default" not in text


def test_the_tree_passes_make_lint() -> None:
    """`make lint`: ruff's rules (pyproject.toml) and its formatter, over every Python file."""
    for command in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
