"""The package's rooms and the one-way data flow between them, checked on the source.

scenario (config) -> engine (engines) -> load and metrics (measure) -> verdict
(judge) -> report, all writing and reading documents defined in ``schema``;
the session, the pytest plugin and the CLI sit on top. A room may import only
the rooms listed for it here; only the plugin imports pytest; no module
imports itself through others; and the session's and the CLI's modules stay one job each.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "perfgate"

# room -> rooms it may import ("base": perfgate/__init__ and the private helpers at the top level).
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "schema": {"base"},
    "config": {"base", "schema"},
    "engines": {"base", "schema", "config"},
    "measure": {"base", "schema", "config", "engines"},
    "judge": {"base", "schema"},
    "history": {"base", "schema", "judge"},
    "report": {"base", "schema", "judge", "history"},
    "sim": set(),
    "hookspecs": {"base", "schema"},
    "session": {"base", "schema", "config", "engines", "measure", "judge", "report", "history"},
    "plugin": {"base", "schema", "config", "engines", "measure", "judge", "report", "session", "history",
               "hookspecs"},
    "cli": {"base", "schema", "config", "engines", "measure", "judge", "report", "session", "sim", "history"},
}
MAY_IMPORT_PYTEST = {"plugin"}
SPLIT_BY_JOB = {"session", "cli", "plugin"}  # rooms on top of the data flow split one job per module: none past MAX_LINES
MAX_LINES = 350


def _module_name(path: Path) -> str:
    parts = ["perfgate", *path.relative_to(PKG).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if module == "perfgate.__main__":
        return "cli"
    if len(parts) == 1 or parts[1].startswith("_"):
        return "base"
    return parts[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(id(n) for n in tree.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; use absolute perfgate.* imports"
            mod = node.module or ""
            if mod == "perfgate":
                out += [(f"perfgate.{a.name}", id(node) in top) for a in node.names]
            else:
                out.append((mod, id(node) in top))
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_room_imports_only_rooms_below_it(module: str) -> None:
    room = _room(module)
    assert room in ALLOWED, f"{module}: room {room!r} is not in the layout; add it to ALLOWED and docs/architecture.md"
    for imported, _ in _imports(MODULES[module]):
        if imported == "pytest" or imported.startswith("_pytest"):
            assert room in MAY_IMPORT_PYTEST, f"{module} imports pytest; only the plugin may"
        if not imported.startswith("perfgate"):
            continue
        target = _room(imported)
        if target != room:
            assert target in ALLOWED[room], f"{module} ({room}) imports {imported} ({target}): upward or sideways"


def test_no_import_cycles() -> None:
    """Module-level imports form a DAG (lazy imports inside functions included: they are edges too)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = set()
        for imported, _ in _imports(path):
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != module and not module.startswith(imported + "."):
                deps.add(imported)
        graph[module] = deps
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d] if d in stack else [m, d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_every_module_is_in_a_room_with_a_docstring() -> None:
    for module, path in MODULES.items():
        if path.name == "__main__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{module}: no module docstring saying what it is for"


def test_the_rooms_on_top_are_split_by_job():
    """The session (eight jobs in 579 lines) and the CLI (506) grew past one job a module once; each job
    now has a module of its own, and a module past MAX_LINES is a sign it holds two again."""
    for module, path in MODULES.items():
        if _room(module) in SPLIT_BY_JOB:
            lines = len(path.read_text(encoding="utf-8").splitlines())
            assert lines <= MAX_LINES, f"{module}: {lines} lines; split it by job (docs/architecture.md)"
