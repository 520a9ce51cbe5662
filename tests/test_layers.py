"""The package's layering, read from the source with `ast` (nothing is imported).

Rules:
- (a) The import graph among nacos_actors modules has no cycle. Every import counts: at module
  level, inside functions, and under `if TYPE_CHECKING:` (a cycle hidden from the runtime is
  still a cycle in the design). Importing `a.b.c` also counts as importing the packages `a.b`
  and `a`, whose `__init__` runs first.
- (b) The cores (nacos_actors/core/) are pure: they import none of pykka, asyncio, aiohttp,
  socket, threading, time, random, and no nacos_actors module but other cores,
  nacos_actors.model and nacos_actors.messages (and the package root, whose `__init__` every
  import runs). Those are held to the same external rule, so the whole of what a core loads is
  pure. `random` may appear only as a type: a core
  that draws random numbers takes a `random.Random` from its caller and may name it in an
  annotation, so `import random` (or `from random import Random`) is allowed under
  `if TYPE_CHECKING:` only: with `from __future__ import annotations` it is never imported at
  run time, so the core can neither draw from the global generator nor make its own.
- (c) The renderers (nacos_actors/render/) are shared by the HTTP front and the push actor, so
  neither they nor any nacos_actors module they load imports aiohttp or nacos_actors.http.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "nacos_actors"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

CORE = f"{PACKAGE}.core"
CORE_MAY_IMPORT = (f"{PACKAGE}.model", f"{PACKAGE}.messages")
CORE_FORBIDDEN = ("pykka", "asyncio", "aiohttp", "socket", "threading", "time", "random")
TYPE_ONLY = ("random",)
RENDER = f"{PACKAGE}.render"
RENDER_FORBIDDEN = ("aiohttp", f"{PACKAGE}.http")

@dataclass(frozen=True)
class Import:
    target: str  # the dotted name as imported (a module, or a module's attribute)
    type_only: bool  # under `if TYPE_CHECKING:`
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a relative import `from {'.' * level}{name} import ...`."""
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    path = modules()[module]
    return parse_imports(path.read_text(), module, path.name == "__init__.py")


def parse_imports(source: str, module: str, is_package: bool = False) -> tuple[Import, ...]:
    """Every import statement of `source` (the text of `module`), anywhere in it, with the names
    each brings: `from a import b` is both `a` and `a.b` (b may be a module)."""
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, type_only, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            found.append(Import(base, type_only, node.lineno))
            found.extend(Import(f"{base}.{alias.name}", type_only, node.lineno) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return tuple(found)


def _top(name: str) -> str:
    return name.partition(".")[0]


def internal_edges(module: str) -> set[str]:
    """The nacos_actors modules `module` imports, with the packages they sit in."""
    known = modules()
    edges: set[str] = set()
    for imported in imports_of(module):
        parts = imported.target.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in known and name != module:
                edges.add(name)
    return edges


def graph() -> dict[str, set[str]]:
    return {module: internal_edges(module) for module in modules()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = walk(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state:
            found = walk(start)
            if found:
                return found
    return None


def forbidden_imports(module: str, forbidden: tuple[str, ...], type_only_allowed: tuple[str, ...] = ()) -> list[str]:
    """The imports of `module` of any name in `forbidden` (or a submodule of one); those in
    `type_only_allowed` are fine under `if TYPE_CHECKING:`."""
    return forbidden_in(imports_of(module), module, forbidden, type_only_allowed)


def forbidden_in(
    found: tuple[Import, ...], module: str, forbidden: tuple[str, ...], type_only_allowed: tuple[str, ...] = ()
) -> list[str]:
    bad = []
    for imported in found:
        for name in forbidden:
            if imported.target == name or imported.target.startswith(name + "."):
                if imported.type_only and name in type_only_allowed:
                    continue
                bad.append(f"{module}:{imported.line} imports {imported.target}")
    return sorted(set(bad))


def _core_modules() -> list[str]:
    return [m for m in modules() if m == CORE or m.startswith(CORE + ".")]


# -- the checker itself ----------------------------------------------------------------------


def test_the_checker_finds_modules_and_edges():
    known = modules()
    assert {f"{PACKAGE}.node", f"{PACKAGE}.http.front", f"{CORE}.registry", RENDER} <= set(known)
    assert f"{PACKAGE}.model" in internal_edges(f"{CORE}.registry")
    # `from package import module` is an edge to the module (and to the package).
    assert {f"{PACKAGE}.http", f"{PACKAGE}.http.naming_v1"} <= internal_edges(f"{PACKAGE}.http.app")


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_checker_sees_guarded_nested_and_relative_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import random\n"
        "    from nacos_actors.http.front import Front\n"
        "def f():\n"
        "    from time import monotonic\n"
        "from . import model\n"
    )
    found = parse_imports(source, "nacos_actors.core.x")
    assert Import("random", True, 3) in found
    assert Import("nacos_actors.http.front.Front", True, 4) in found
    assert Import("time", False, 6) in found
    assert Import("nacos_actors.core.model", False, 7) in found
    assert forbidden_in(found, "x", CORE_FORBIDDEN, TYPE_ONLY) == ["x:6 imports time", "x:6 imports time.monotonic"]
    assert forbidden_in(found, "x", CORE_FORBIDDEN) == [
        "x:3 imports random",
        "x:6 imports time",
        "x:6 imports time.monotonic",
    ]


# -- (a) no cycle ---------------------------------------------------------------------------


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# -- (b) the cores are pure -----------------------------------------------------------------


@pytest.mark.parametrize("module", _core_modules() + list(CORE_MAY_IMPORT) + [PACKAGE])
def test_core_imports_no_runtime_machinery(module):
    """No actor framework, event loop, web server, socket, thread, clock or global randomness."""
    assert forbidden_imports(module, CORE_FORBIDDEN, TYPE_ONLY) == []


@pytest.mark.parametrize("module", _core_modules())
def test_core_imports_only_cores_model_and_messages(module):
    allowed = [m for m in internal_edges(module) if m == CORE or m.startswith(CORE + ".") or m in CORE_MAY_IMPORT]
    outside = sorted(internal_edges(module) - set(allowed) - {PACKAGE})
    assert outside == [], f"{module} imports {outside}"


# -- (c) the renderers know nothing of the web layer ---------------------------------------


def _loaded_by(start: list[str]) -> set[str]:
    edges = graph()
    seen: set[str] = set()
    todo = list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges[module])
    return seen


def test_render_imports_no_web_layer():
    render = [m for m in modules() if m == RENDER or m.startswith(RENDER + ".")]
    assert len(render) > 1
    loaded = _loaded_by(render)
    assert not any(m.startswith(f"{PACKAGE}.http") for m in loaded), sorted(loaded)
    bad = [line for module in sorted(loaded) for line in forbidden_imports(module, RENDER_FORBIDDEN)]
    assert bad == []
