"""Shared test fixtures.

Real data lives in ``../shared/data`` beside the checkout (CI lays a copy there too); set
``ADSEARCH_SHARED_DATA`` to point elsewhere. Tests that need the full sets take the
``shared_data`` fixture: without the data they are *skipped* with a reason naming
``ADSEARCH_SHARED_DATA``, so ``make test`` passes on a fresh clone. CI sets
``ADSEARCH_REQUIRE_DATA=1`` (in ``.ci/run``), which turns that skip into a failure, so CI runs
everything. Tests that only need *some* real data take ``data_slices``: small byte copies of the
real sets shipped in ``tests/fixtures/data`` (see ``tests/fixtures/make_data_slices.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ADSEARCH_SHARED_DATA", REPO.parent / "shared" / "data"))
SLICES = REPO / "tests" / "fixtures" / "data"
REQUIRE_DATA = "ADSEARCH_REQUIRE_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real data sets (CIFAR-10 JPEGs, WikiText-2, Multi30k); skips without them."""
    if not SHARED_DATA.is_dir():
        why = (f"real data not found at {SHARED_DATA}; set ADSEARCH_SHARED_DATA to the folder "
               "holding cifar10-jpg, wikitext-2 and multi30k-en-fr")
        if os.environ.get(REQUIRE_DATA, "") not in ("", "0"):
            pytest.fail(f"{why} ({REQUIRE_DATA} is set, so the data tests must run)", pytrace=False)
        pytest.skip(why)
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_slices() -> Path:
    """Small real slices shipped with the tests: cifar10-jpg, wikitext-2-head.txt.gz, multi30k-en-fr."""
    return SLICES


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
