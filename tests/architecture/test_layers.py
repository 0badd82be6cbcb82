"""The house's layers, enforced: ``core`` imports no app of ours, each app imports only ``core`` and the floors below it,
``listeners_project`` (the wiring) sits on top, and no two modules import each other in a circle.

Every import counts, including those inside functions (a hidden import is still a dependency). The checker is plain
``ast``, so the test also proves it catches a violation and a circle (see the last two tests).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Bottom to top. An app imports itself and the floors strictly below it, never a neighbour on its own floor.
FLOORS: list[set[str]] = [
    {"core"},
    {"rpc", "realtime"},
    {"jobs"},
    {"chroma", "firebase_data"},
    {"billing"},  # registers in firebase_data's FIREBASE_MANAGEMENT (firebase_data/namespaces.py)
    {"registry"},
    {"workflows"},
    {"listeners_project"},
]
# Beside the house: the dev stack (tests and `manage.py devstack`) and the standalone Python client.
BESIDE: dict[str, set[str]] = {"devstack": {"core"}, "client": set()}
OURS = set().union(*FLOORS) | set(BESIDE)


def allowed_imports(app: str) -> set[str]:
    if app in BESIDE:
        return BESIDE[app] | {app}
    level = next(i for i, floor in enumerate(FLOORS) if app in floor)
    return {app}.union(*FLOORS[:level])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> Iterable[str]:
    """Absolute names of every module this file imports (relative imports resolved), at any depth."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def source_files() -> list[Path]:
    return sorted(p for app in OURS for p in (ROOT / app).rglob("*.py") if ".venv" not in p.parts)


def layer_violations(files: Iterable[Path]) -> list[str]:
    found = []
    for path in files:
        app = module_name(path).split(".")[0]
        for module in imported_modules(path):
            target = module.split(".")[0]
            if target in OURS and target not in allowed_imports(app):
                found.append(f"{path.relative_to(ROOT)} imports {module} ({app} may not import {target})")
    return sorted(set(found))


def module_graph(files: Iterable[Path]) -> dict[str, set[str]]:
    files = list(files)
    known = {module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        name = module_name(path)
        # A module's own parent packages are already loading when it runs (``from . import x``): not a circle.
        ancestors = {name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)}
        graph[name] = {m for m in imported_modules(path) if m in known and m != name and m not in ancestors}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_every_app_imports_only_core_and_the_floors_below_it() -> None:
    assert layer_violations(source_files()) == []


def test_no_module_imports_itself_back_through_others() -> None:
    assert import_cycles(module_graph(source_files())) == []


def test_every_app_of_ours_has_a_place() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} | {"client"}
    assert packages - {"tests", "bench"} <= OURS


def test_the_checker_catches_a_violation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "core").mkdir()
    upward = tmp_path / "core" / "helpers.py"
    upward.write_text("def f():\n    from workflows import worker\n")
    assert layer_violations([upward]) == [
        "core/helpers.py imports workflows (core may not import workflows)",
        "core/helpers.py imports workflows.worker (core may not import workflows)",
    ]


def test_the_checker_catches_a_circle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "rpc").mkdir()
    (tmp_path / "rpc" / "a.py").write_text("from . import b\n")
    (tmp_path / "rpc" / "b.py").write_text("from rpc.a import x\n")
    graph = module_graph([tmp_path / "rpc" / "a.py", tmp_path / "rpc" / "b.py"])
    assert import_cycles(graph) == [["rpc.a", "rpc.b"]]
