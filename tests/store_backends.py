"""Store fixtures, imported by the tests/test_store*.py files.

``store_url`` is parametrized over the backends: ``sqlite`` (a fresh file per test) and
``postgresql`` (a fresh database per test on the server of :func:`pg_base_url`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from adsearch.store import NewTrial, Store

__all__ = ["new_trials", "sqlite_url", "store", "store_url"]

_counter = itertools.count()


def new_trials(n: int, *, start: int = 0, version: int = 0) -> list[NewTrial]:
    """Return ``n`` distinct trials as a controller would draw them."""
    return [
        NewTrial(
            pattern=[
                {"size": 3 + (i % 5), "stride": i % 3, "repeat": None, "share_c": bool(i % 2)}
            ],
            pattern_hash=f"{i:064x}"[-64:],
            tokens=[i % 7, (i // 7) % 7, 1],
            controller_version=version,
            logp=-0.5 * (i % 11),
            seed=1000 + i,
        )
        for i in range(start, start + n)
    ]


BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty store on each backend."""
    yield f"sqlite:///{tmp_path / 'adsearch.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A writable store, created at head."""
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a new SQLite store file (for SQLite-only behaviour: WAL, read-only files)."""
    return f"sqlite:///{tmp_path / 'adsearch.db'}"
