"""The package's import graph has no circles, counting imports inside functions too (a lazy
import that hides a circle is still one)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "risbench_builder"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from . import x`` counts as ``x``)."""
    files = {module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, file in files.items():
        package = mod.split(".") if file.name == "__init__.py" else mod.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                for alias in node.names:
                    deps.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in files else target)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[mod] = {d for d in deps if d in files and d != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per circle found by depth-first search (empty when the graph is acyclic)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_checker_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_import_circles() -> None:
    graph = import_graph()
    assert len(graph) > 80 and "risbench_builder.console" in graph["risbench_builder.adapter.cli"]
    assert cycles(graph) == []


def test_only_the_cli_imports_stages() -> None:
    """Stages sit on top (under the CLI and the demo): what lower layers need lives in ``sources/``,
    ``segment/`` and the like."""
    top = {"risbench_builder.cli", "risbench_builder.console", "risbench_builder.__main__", "risbench_builder.demo"}
    leaks = {mod: sorted(d for d in deps if d.startswith("risbench_builder.stages"))
             for mod, deps in import_graph().items()
             if mod not in top and not mod.startswith("risbench_builder.stages")}
    assert {mod: deps for mod, deps in leaks.items() if deps} == {}


# ARCHITECTURE.md, "Who may import whom": a module imports from its own level or below.
LEVELS = {
    "images": 1, "masks": 1, "paths": 1, "config": 1, "ddp": 1, "devices": 1, "parallel": 1, "text": 1,
    "catalog": 2, "workspace": 2, "lock": 2, "readmodel": 2,
    "sources": 3.0, "synthetic": 3.0, "segment": 3.1, "finalize": 3.1,
    "adapter": 3.2, "review": 3.2, "export": 3.2, "qa": 3.2, "crobim": 3.2, "audit": 3.2,
    "stages": 4,
    "cli": 5, "console": 5, "demo": 5, "__main__": 5,
}
# the documented exceptions: the CLI module of a domain package, and where a segmenter gets its adapter
EXCEPTIONS = {("risbench_builder.adapter.cli", "risbench_builder.console"),
              ("risbench_builder.segment.registry", "risbench_builder.adapter.io")}


def _level(module: str) -> float:
    if module == "risbench_builder.adapter.cli":
        return 5
    parts = module.split(".")
    return 0 if len(parts) == 1 else LEVELS[parts[1]]


def test_every_import_goes_down_the_levels() -> None:
    graph = import_graph()
    assert {m.split(".")[1] for m in graph if "." in m} == set(LEVELS)     # a new package needs a level
    upward = sorted((m, d) for m, deps in graph.items() for d in deps
                    if _level(d) > _level(m) and (m, d) not in EXCEPTIONS)
    assert upward == []


def test_architecture_names_every_package() -> None:
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text[text.index("## Packages"):text.index("## Who may import whom")]
    for name in LEVELS:
        if name != "__main__":
            assert f"`{name}.py`" in table or f"`{name}/`" in table, name
