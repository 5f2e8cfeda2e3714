"""backend/'s rooms: the import graph, read from the source with ``ast``, has no cycle and runs
one way (http and store know nothing of each other nor of s3).

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``, since a
circle through a deferred import is still a circle for whoever reads or moves the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import backend

ROOT = Path(backend.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The backend modules ``name`` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            # `from backend.s3 import policy` imports the module backend.s3.policy
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("backend"):
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    # a package's __init__ (docstring only) is imported with each of its modules: drop those edges
    return {name: {t for t in deps if not name.startswith(t + ".")} for name, deps in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read_whole() -> None:
    graph = _graph()
    assert {"backend.http.connection", "backend.s3.handler", "backend.store.store"} <= set(graph)
    # a TYPE_CHECKING import and a plain one are both edges
    assert "backend.store.store" in graph["backend.s3.request"]
    assert "backend.http.listener" in graph["backend.server"]


def test_backend_has_no_import_cycle() -> None:
    assert _cycle(_graph()) is None


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_rooms_import_one_way() -> None:
    room = {"http": {"s3", "store"}, "store": {"http", "s3"}, "s3": set()}
    top_level = {"backend.errors", "backend.limits", "backend.payload", "backend.checksums"}
    for name, deps in _graph().items():
        parts = name.split(".")
        if len(parts) > 2 and parts[1] in room:
            wrong = {d for d in deps if d.split(".")[1:2] and d.split(".")[1] in room[parts[1]]}
            assert wrong == set(), f"{name} imports {sorted(wrong)}"
        if name in top_level:
            assert deps <= top_level, f"{name} (shared by every room) imports {sorted(deps)}"


def test_subpackages_are_docstring_only() -> None:
    for init in ROOT.glob("*/__init__.py"):
        body = ast.parse(init.read_text()).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init
        assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
