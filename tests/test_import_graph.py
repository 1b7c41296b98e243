"""The import graph of resgate/: no cycles, and the layering rules hold.

Every import counts: top level, inside functions and under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "resgate"
#: Fewer would mean the walk missed most of the package.
MIN_MODULES = 25
MIN_EDGES = 60


def module_names() -> dict[str, pathlib.Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("resgate",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def imports_of(path: pathlib.Path) -> set[str]:
    """Every absolute module name ``path`` imports, wherever the import stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: {i for i in imports_of(path) if i in names and i != name} for name, path in names.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_made_up_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_walk_sees_the_whole_package():
    graph = import_graph()
    assert len(graph) >= MIN_MODULES
    assert sum(len(edges) for edges in graph.values()) >= MIN_EDGES
    assert "resgate.natsbus" in graph["resgate.service"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_only_natsbus_imports_nats():
    names = module_names()
    importers = sorted(name for name, path in names.items()
                       if any(i == "nats" or i.startswith("nats.") for i in imports_of(path)))
    assert importers == ["resgate.natsbus"]


def test_opentelemetry_is_imported_only_where_spans_are_recorded():
    # resgate.otel at module level; resgate.tracing only once a provider is
    # configured, and resgate.service for a type (TYPE_CHECKING): the API
    # stays an optional dependency.
    names = module_names()
    importers = sorted(name for name, path in names.items()
                       if any(i.split(".")[0] == "opentelemetry" for i in imports_of(path)))
    assert importers == ["resgate.otel", "resgate.service", "resgate.tracing"]


def test_the_cache_knows_no_transport():
    for name, path in module_names().items():
        if name == "resgate.cache" or name.startswith("resgate.cache."):
            banned = sorted(i for i in imports_of(path)
                            if i in ("resgate.ws", "resgate.web") or i.split(".")[0] == "autobahn"
                            or i == "twisted.web" or i.startswith("twisted.web."))
            assert banned == [], name


def test_codec_and_errors_import_only_each_other():
    graph = import_graph()
    for name in ("resgate.codec", "resgate.errors"):
        assert graph[name] <= {"resgate", "resgate.codec", "resgate.errors"}, name
