"""The house rules that keep the code layered, checked on the source itself.

Why a test: an import circle or a lower layer reaching up into the CLI creeps in
one convenient import at a time; reading the imports of every module with `ast`
catches it the day it is written.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import telephony_agent

PACKAGE_ROOT = Path(telephony_agent.__file__).parent

#: Packages that only the CLI layer may import (`bench` drives whole processes from
#: outside, like a command).
TOP_LAYER = (
    "telephony_agent.commands",
    "telephony_agent.cli",
    "telephony_agent.__main__",
    "telephony_agent.bench",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every `telephony_agent` module this file imports, wherever the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("telephony_agent"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("telephony_agent")
        ):
            found.add(str(node.module))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # `from pkg import name` may name a submodule; an edge to the package is enough.
            targets.add(imported if imported in modules else imported.rsplit(".", 1)[0])
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def test_nothing_below_the_cli_imports_commands() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if not module.startswith(TOP_LAYER)
        for target in targets
        if target.startswith(TOP_LAYER)
    ]
    assert offenders == []


def test_no_import_circle_between_modules() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            # A package's __init__ re-exporting its own submodules is not a circle.
            if target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                start = stack.index(target)
                cycles.append([*stack[start:], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    # Edges into a package's own __init__ from its submodules are how packages
    # re-export; only circles through two different modules' code count.
    real = [c for c in cycles if not _is_reexport_cycle(c)]
    assert real == [], "\n".join(" -> ".join(c) for c in real)


def _is_reexport_cycle(cycle: list[str]) -> bool:
    return all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(cycle))


def test_front_door_modules_stay_small() -> None:
    """The server package is front doors only; a module past ~600 lines wants splitting."""
    sizes = {
        path.name: len(path.read_text(encoding="utf-8").splitlines())
        for path in (PACKAGE_ROOT / "server").glob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 600} == {}
