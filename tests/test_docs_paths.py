"""Every source path the docs name exists (issue 22: a newcomer follows docs/architecture.md's
paths to the file that answers a question; a moved module must not leave a dead pointer).

The check reads every ``docs/*.md`` and the top-level ``README.md``, finds each
``adsearch/...py`` path (a file of the package, as the docs write it, with or without
backticks; ``tests/``, ``benchmarks/`` and ``bin/`` paths too) and asserts the file is there. Dotted module names (``adsearch.daemon.loop``) are
checked too, as a module or a package, when they are written in backticks as a whole.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

#: ``adsearch/<dirs>/<name>.py`` (or under tests/, benchmarks/, bin/), not preceded by a
#: letter, dot or slash (so ``examples/x/adsearch/...`` would not count).
PATH = re.compile(r"(?<![\w./-])(?:adsearch|tests|benchmarks|bin)/(?:\w+/)*\w+\.py\b")
#: A dotted module in backticks, alone: ``adsearch.daemon.loop``.
MODULE = re.compile(r"`(adsearch(?:\.[a-z_][a-z0-9_]*)+)`")


def _paths(text: str) -> set[str]:
    return set(PATH.findall(text))


def _module_exists(dotted: str) -> bool:
    """A module file, a package, or an attribute of one (``adsearch.ops.make_dropout``):
    some prefix of the name must be a module, and the first part after it may be a name
    in it (checked by the text of the file, not by importing it)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        module = base.with_suffix(".py") if n > 1 else None
        package = base / "__init__.py"
        found = next((p for p in (module, package) if p is not None and p.is_file()), None)
        if found is None:
            continue
        rest = parts[n:]
        if not rest:
            return True
        return re.search(rf"\b{re.escape(rest[0])}\b", found.read_text(encoding="utf-8")) \
            is not None
    return False


def test_the_pattern_finds_paths() -> None:
    text = ("see `adsearch/views/status.py`, adsearch/rungs.py and tests/test_x.py, not "
            "examples/adsearch/x.py nor adsearch/patterns/ alone")
    assert _paths(text) == {"adsearch/views/status.py", "adsearch/rungs.py", "tests/test_x.py"}
    assert _module_exists("adsearch.views.status")
    assert _module_exists("adsearch.patterns")
    assert _module_exists("adsearch.ops.make_dropout")
    assert not _module_exists("adsearch.daemon.report")
    assert not _module_exists("adsearch.ops.no_such_name_here")


def test_every_source_path_in_the_docs_exists() -> None:
    missing = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        missing += [f"{doc.relative_to(ROOT)}: {p}" for p in sorted(_paths(text))
                    if not (ROOT / p).is_file()]
    assert not missing, "docs name source files that do not exist:\n" + "\n".join(missing)


def test_every_module_named_in_architecture_md_exists() -> None:
    doc = ROOT / "docs" / "architecture.md"
    names = sorted(set(MODULE.findall(doc.read_text(encoding="utf-8"))))
    assert names, "docs/architecture.md names no module in backticks"
    missing = [n for n in names if not _module_exists(n)]
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
