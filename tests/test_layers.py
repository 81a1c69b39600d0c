"""The dependency rule of ``docs/architecture.md`` ("Layers"), checked on the code.

An ``ast`` walk over every file of ``adsearch/`` collects each import of ours, at module
level and inside functions alike (``import adsearch.x``, ``from adsearch.x import y``,
``from . import y``, ``from ..x import y``); ``if TYPE_CHECKING:`` imports count too (they
are not run, but they say which layer a module knows). Then:

- no import cycle between packages (``adsearch.<pkg>``), nor between files (there, imports
  for type checking only do not count: two modules of one package may name each other's
  types);
- each unit (a package, or a module of the top level) imports only from its own unit and
  from units in layers *below* its own: units of one layer do not import each other.

:data:`LAYERS` is the one table of layers; ``docs/architecture.md`` mirrors it (a test
below keeps them equal). An import against the rule that is genuinely needed goes into
:data:`EXCEPTIONS`, named and commented; keep them to a handful.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "adsearch"
DOC = ROOT / "docs" / "architecture.md"

#: The layers, bottom first. A unit is ``adsearch.<name>`` (a package or a top-level module;
#: ``adsearch`` itself is the package's ``__init__``: the version). A unit may import from
#: layers below its own only.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0. the root of every error
    ("errors",),
    # 1. helpers of the standard library only: the version, atomic files, commands as the
    #    user types them, strict from-dict, the reward, the rung rule, rank correlations,
    #    script mode's file names
    ("adsearch", "atomic", "command", "strict", "reward", "rungs", "rank", "trial_files"),
    # 2. search spaces and patterns: pure data
    ("patterns",),
    # 3. torch ops, the controllers, the store
    ("ops", "controller", "store"),
    # 4. networks with dropout sites; the trial queue (on the store)
    ("models", "queue"),
    # 5. tasks: data and child training; sites of a user's model (attach)
    ("tasks", "sites"),
    # 6. the search engine; the trial API of script mode (a child reporting to the store)
    ("daemon", "trial"),
    # 7. planned searches run through the engine
    ("verify",),
    # 8. calibration runs (children of the engine, verify's grids)
    ("calibrate",),
    # 9. presentation: status, plots, the live view
    ("views",),
    # 10. the web dashboard (reads what the views render)
    ("dashboard",),
    # 11. the command line
    ("cli",),
    # 12. ``python -m adsearch``
    ("__main__",),
)

#: Imports against the rule that must stay, each with why:
#: ``("adsearch.x.importer", "adsearch.y.imported"): "why it cannot be otherwise"``.
#: None today: each upward import found was turned around (docs/architecture.md, "Layers").
EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    """One import of ours: ``src`` imports ``dst`` (modules) at ``line``."""

    src: str
    dst: str
    line: int
    lazy: bool  # inside a function (or a class body): run only when called
    typing: bool = False  # under ``if TYPE_CHECKING:``: never run

    def __str__(self) -> str:
        where = ("TYPE_CHECKING" if self.typing else
                 "function-level" if self.lazy else "module-level")
        return f"{self.src} -> {self.dst}  ({_path(self.src)}:{self.line}, {where})"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _path(mod: str) -> str:
    return str(MODULES[mod].relative_to(ROOT))


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or ``module.attribute``) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(mod: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "adsearch" or alias.name.startswith("adsearch."):
                yield alias.name
        return
    if node.level:  # relative: from the package of ``mod`` up ``level - 1`` steps
        base = mod.split(".")
        if MODULES[mod].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        pkg = ".".join(base + ([node.module] if node.module else []))
    else:
        pkg = node.module or ""
    if not (pkg == "adsearch" or pkg.startswith("adsearch.")):
        return
    for alias in node.names:  # ``from pkg import sub`` imports the module ``pkg.sub``
        sub = f"{pkg}.{alias.name}"
        yield sub if sub in MODULES else pkg


def _edges() -> list[Edge]:
    return [e for mod, path in MODULES.items()
            for e in _edges_of(mod, path.read_text(encoding="utf-8"))]


def _edges_of(mod: str, source: str) -> list[Edge]:
    """The imports of ours in ``source``, the text of module ``mod``."""
    tree = ast.parse(source)
    lazy_lines: set[int] = set()
    typing_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            lazy_lines.update(n.lineno for n in ast.walk(node)
                              if isinstance(n, (ast.Import, ast.ImportFrom)))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_lines.update(n.lineno for b in node.body for n in ast.walk(b)
                                if isinstance(n, (ast.Import, ast.ImportFrom)))
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _targets(mod, node):
                dst = _owner(name)
                if dst is not None and dst != mod:
                    edges.append(Edge(mod, dst, node.lineno, node.lineno in lazy_lines,
                                      node.lineno in typing_lines))
    return edges


EDGES = _edges()


def unit(mod: str) -> str:
    """The unit of the layer table a module belongs to (``adsearch.daemon.loop`` -> daemon)."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "adsearch"


def package(mod: str) -> str:
    """``adsearch.<pkg>`` of a module (a top-level module is its own)."""
    return ".".join(mod.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _shortest_cycle(graph: dict[str, set[str]], start: str, comp: set[str]) -> list[str]:
    """The shortest path ``start -> ... -> start`` inside ``comp`` (breadth first)."""
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w not in comp or w in prev:
                    continue
                prev[w] = v
                if w == start:
                    path = [start]
                    while path[-1] != start or len(path) == 1:
                        path.append(prev[path[-1]])
                    return path[::-1]
                nxt.append(w)
        frontier = nxt
    return [start]


def _cycle_report(key: Callable[[str], str], what: str, *, typing: bool = True) -> list[str]:
    """Each cycle of ``EDGES`` grouped by ``key`` (module -> node): its members, then one
    shortest loop through each member with an import (file:line) for every step.
    ``typing`` False: leave out the imports for type checking only."""
    edges = [e for e in EDGES if (e.src, e.dst) not in EXCEPTIONS and (typing or not e.typing)]
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        a, b = key(e.src), key(e.dst)
        if a != b:
            graph[a].add(b)
    lines = []
    for comp in _cycles(graph):
        lines.append(f"{what} cycle among {', '.join(comp)}:")
        loops = {tuple(_shortest_cycle(graph, v, set(comp))) for v in comp}
        shown: set[frozenset[str]] = set()
        for loop in sorted(loops, key=len):
            if frozenset(loop) in shown:
                continue
            shown.add(frozenset(loop))
            lines.append("  loop " + " -> ".join(loop))
            for a, b in zip(loop, loop[1:], strict=False):
                e = next(e for e in edges if key(e.src) == a and key(e.dst) == b)
                lines.append(f"    {e}")
    return lines


LAYER_OF = {u: i for i, layer in enumerate(LAYERS) for u in layer}


def test_every_unit_has_a_layer() -> None:
    units = {unit(m) for m in MODULES}
    missing = sorted(units - set(LAYER_OF))
    assert not missing, (f"no layer for {missing}: add each to LAYERS in {Path(__file__).name} "
                         "and to the table under 'Layers' in docs/architecture.md")
    stale = sorted(set(LAYER_OF) - units)
    assert not stale, f"LAYERS names units that do not exist: {stale}"


def test_no_import_cycle_between_packages() -> None:
    lines = _cycle_report(package, "package")
    assert not lines, "\n" + "\n".join(lines)


def test_no_import_cycle_between_files() -> None:
    lines = _cycle_report(lambda m: m, "file", typing=False)
    assert not lines, "\n" + "\n".join(lines)


def test_imports_point_down_the_layers() -> None:
    bad = []
    for e in EDGES:
        a, b = unit(e.src), unit(e.dst)
        if a == b or (e.src, e.dst) in EXCEPTIONS:
            continue
        la, lb = LAYER_OF.get(a), LAYER_OF.get(b)
        if la is None or lb is None:
            continue  # test_every_unit_has_a_layer names it
        if lb >= la:
            side = "the same layer" if lb == la else "a higher layer"
            bad.append(f"  {e}: {a} (layer {la}) imports {b} ({side}, {lb})")
    assert not bad, ("imports against the layers (docs/architecture.md, 'Layers'); move the "
                     "code down, or hand the lower layer what it needs:\n" + "\n".join(bad))


def test_exceptions_are_still_needed() -> None:
    used = {(e.src, e.dst) for e in EDGES}
    stale = sorted(k for k in EXCEPTIONS if k not in used)
    assert not stale, f"EXCEPTIONS lists imports that are gone: {stale}"


def test_the_doc_states_the_same_layers() -> None:
    """docs/architecture.md's 'Layers' table: one row per layer, bottom first, each
    listing its units in backticks (``adsearch`` as `adsearch/__init__`)."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^## Layers\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "docs/architecture.md has no '## Layers' section"
    rows = [line for line in m.group(1).splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    doc = []
    for row in rows:
        cell = row.split("|")[2]
        names = re.findall(r"`([^`]+)`", cell)
        doc.append(tuple("adsearch" if n == "adsearch/__init__" else n.strip("/") for n in names))
    assert doc == [tuple(layer) for layer in LAYERS], (
        f"the Layers table of docs/architecture.md differs from LAYERS:\n{doc}\n{LAYERS}")


def test_the_walk_sees_every_kind_of_import() -> None:
    """The walk itself, on a made-up module ``adsearch.tasks.image``: a lazy import, a
    relative one, ``from pkg import module`` and a TYPE_CHECKING one are all edges (so a
    layer violation cannot hide in a function or behind a dot), stdlib imports are not."""
    source = """
import json
import adsearch.errors
from typing import TYPE_CHECKING
from adsearch.patterns import SearchSpace
from adsearch.calibrate import analysis as A
from .result import Budget
from .. import rungs
if TYPE_CHECKING:
    from adsearch.store import Store
def f():
    from adsearch.daemon.pruning import Scheduler
class C:
    from ..controller import make_controller
"""
    got = {(e.dst, e.lazy, e.typing) for e in _edges_of("adsearch.tasks.image", source)}
    assert got == {
        ("adsearch.errors", False, False),
        ("adsearch.patterns", False, False),  # a name of the package's __init__
        ("adsearch.calibrate.analysis", False, False),  # a module, not the package
        ("adsearch.tasks.result", False, False),  # relative, from the module's package
        ("adsearch.rungs", False, False),  # relative, one level up
        ("adsearch.store", False, True),
        ("adsearch.daemon.pruning", True, False),  # inside a function
        ("adsearch.controller", True, False),  # inside a class body
    }
    # in a package's __init__, ``.`` is the package itself
    (e,) = _edges_of("adsearch.tasks", "from .result import Budget\n")
    assert e.dst == "adsearch.tasks.result"
    # the cycle finder
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _shortest_cycle({"a": {"b", "c"}, "b": {"a"}, "c": {"b"}}, "a",
                           {"a", "b", "c"}) == ["a", "b", "a"]
