"""The package's structure: no import cycle, no imports of the benchmarks or the tests,
and none of the tricks that tie the engine to other projects' internals (ctypes,
``inspect.getsource``, ``gc.freeze``, assignments to MLflow's module attributes).

The checks read the source with ``ast`` (every import counts, also inside functions), and
each is shown to catch a planted violation in a small package of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> list[str]:
    """Every module an import of ``tree`` names, relative imports resolved against
    ``module``: ``from a import b`` names the module ``a.b`` if ``known`` has it (a
    submodule), else ``a`` (a name defined by ``a``)."""
    package = module if is_package else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                names.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package at ``root`` it imports."""
    mods = modules(root)
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        for target in imported(tree, name, path.name == "__init__.py", set(mods)):
            if target in mods and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def tricks(path: Path) -> list[str]:
    """What in ``path`` ties the engine to others' internals: ctypes, inspect.getsource,
    gc.freeze, or an assignment to (or ``setattr`` on) an attribute of an MLflow module."""
    tree = ast.parse(path.read_text())
    mlflow_names = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ctypes":
                    found.append("imports ctypes")
                if alias.name.split(".")[0] == "mlflow":
                    mlflow_names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "mlflow",
            "ctypes",
        ):
            if node.module.split(".")[0] == "ctypes":
                found.append("imports ctypes")
            mlflow_names |= {alias.asname or alias.name for alias in node.names}
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and (node.value.id, node.attr) in (("inspect", "getsource"), ("gc", "freeze"))
        ):
            found.append(f"calls {node.value.id}.{node.attr}")
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
            targets = [ast.Attribute(value=node.args[0], attr="?")] if node.args else []
        for target in targets:
            root = target
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(target, ast.Attribute) and getattr(root, "id", None) in mlflow_names:
                found.append(f"assigns to an attribute of MLflow's {root.id}")
    return found


def test_no_import_cycle_in_engine():
    assert cycles(import_graph(ENGINE)) == []


def test_engine_imports_neither_benchmarks_nor_tests():
    offenders = []
    for name, path in modules(ENGINE).items():
        tree = ast.parse(path.read_text())
        for target in imported(tree, name, path.name == "__init__.py", set()):
            if target.split(".")[0] in ("benchmarks", "tests"):
                offenders.append(f"{name} imports {target}")
    assert offenders == []


def test_engine_leans_on_no_internals_of_others():
    found = {str(p.relative_to(ENGINE)): tricks(p) for p in sorted(ENGINE.rglob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


# --- the checks catch what they look for -------------------------------------------------
def package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path):
    root = package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b.py": "def f():\n    from pkg.a import x\n",
            "c.py": "from pkg import a\nfrom . import b\n",
        },
    )
    assert cycles(import_graph(root)) == [["pkg.a", "pkg.b"]]


def test_a_package_importing_its_own_modules_is_no_cycle(tmp_path: Path):
    root = package(
        tmp_path,
        {"__init__.py": "from pkg.a import x\n", "a.py": "from pkg import b\nx = 1\n", "b.py": ""},
    )
    assert cycles(import_graph(root)) == []


@pytest.mark.parametrize(
    ("source", "finding"),
    [
        ("import ctypes\n", "imports ctypes"),
        ("import inspect\ninspect.getsource(len)\n", "calls inspect.getsource"),
        ("import gc\ngc.freeze()\n", "calls gc.freeze"),
        ("import mlflow.utils as u\nu.helper = None\n", "assigns to an attribute of MLflow's u"),
        (
            "from mlflow import models\nmodels.x.y = 1\n",
            "assigns to an attribute of MLflow's models",
        ),
        ("import mlflow\nsetattr(mlflow, 'f', 1)\n", "assigns to an attribute of MLflow's mlflow"),
    ],
)
def test_each_trick_is_found(tmp_path: Path, source: str, finding: str):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert tricks(path) == [finding]


def test_ordinary_code_has_no_finding(tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_text(
        "import mlflow\nrun = mlflow.start_run()\nrun.info = 1\nimport gc\ngc.collect()\n"
    )
    assert tricks(path) == []
