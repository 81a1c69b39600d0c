"""Both queue backends keep the one contract (:class:`adsearch.queue.base.Queue`).

The same scenario, calling every method of the protocol, runs on the real backends: the
file queue in a directory, and the database queue on SQLite and on PostgreSQL (the server of
``store_backends``). Their methods also match the protocol's signatures exactly, and they
have no public method the protocol lacks (the two drifted apart once).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database, new_trials

from adsearch.queue import FileQueue, LeaseLost, Queue
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store

LEASE_S = 10.0


def protocol_methods() -> list[str]:
    """The methods the protocol lists (public ones and ``__len__``)."""
    return sorted(n for n, v in vars(Queue).items()
                  if callable(v) and (not n.startswith("_") or n == "__len__"))


def public_methods(cls: type) -> list[str]:
    return sorted(n for n, v in vars(cls).items()
                  if callable(v) and (not n.startswith("_") or n == "__len__"))


@pytest.fixture(params=["file", "db-sqlite", "db-postgresql"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Queue, list[int]]]:
    """A backend's queue and four trial ids of a fresh store."""
    if request.param == "db-postgresql":
        gen = _fresh_database(request.getfixturevalue("pg_base_url"))
        url = next(gen)
    else:
        url = f"sqlite:///{tmp_path / 'adsearch.db'}"
    store = Store(url)
    try:
        search = store.create_search("contract", {})
        ids = [t.id for t in store.add_trials(search.id, new_trials(4))]
        queue: Queue
        if request.param == "file":
            queue = FileQueue(tmp_path / "queue", lease_seconds=LEASE_S)
        else:
            queue = DbQueue(store, search.id, lease_seconds=LEASE_S)
        yield queue, ids
    finally:
        store.close()


@pytest.mark.parametrize("backend", [FileQueue, DbQueue])
def test_backends_have_the_protocols_methods_and_signatures(backend: type) -> None:
    assert public_methods(backend) == protocol_methods()
    for name in protocol_methods():
        assert inspect.signature(getattr(backend, name)) == \
            inspect.signature(getattr(Queue, name)), f"{backend.__name__}.{name}"


def test_every_method_behaves_alike(case: tuple[Queue, list[int]]) -> None:
    q, (a, b, c, d) = case
    assert q.lease_seconds == LEASE_S
    # push: order, front first, a trial already present is left alone
    q.push([a, b, c])
    q.push([d], front=True)
    q.push([a, d])
    assert q.pending() == [d, a, b, c] and len(q) == 4
    # claim: the first waiting trial, with the holder's pid (default: this process)
    first = q.claim("w1", "cpu0", pid=4242)
    second = q.claim("w2", "cpu1")
    assert first is not None and second is not None
    assert (first.trial_id, first.owner, first.slot, first.pid) == (d, "w1", "cpu0", 4242)
    assert (second.trial_id, second.owner, second.pid) == (a, "w2", os.getpid())
    assert q.pending() == [b, c] and len(q) == 2
    got = q.lease(d)
    assert got is not None and (got.owner, got.slot, got.pid) == ("w1", "cpu0", 4242)
    assert q.lease(b) is None
    assert [le.trial_id for le in q.leases()] == [a, d]
    assert q.holds(d, "w1") and not q.holds(d, "w2") and not q.holds(b, "w1")
    # heartbeat: with or without an owner; a lease not held raises LeaseLost
    q.heartbeat(d)
    q.heartbeat(d, owner="w1")
    with pytest.raises(LeaseLost):
        q.heartbeat(d, owner="w2")
    with pytest.raises(LeaseLost):
        q.heartbeat(b)
    # expiry: nothing now, both leases once lease_seconds have passed without a heartbeat
    assert q.expired() == []
    assert [le.trial_id for le in q.expired(time.time() + LEASE_S + 1.0)] == [a, d]
    # release: first in line again; release_owner: every lease of one owner
    q.release(d)
    assert q.lease(d) is None and q.pending() == [d, b, c]
    assert q.release_owner("w2") == [a] and q.release_owner("w2") == []
    assert q.pending() == [d, a, b, c] and q.leases() == []
    # ack drops a lease or a waiting entry; discard removes both kinds
    for owner in ("w1", "w1"):
        assert q.claim(owner, "cpu0") is not None
    q.ack(d)
    q.ack(b)
    assert q.pending() == [c] and [le.trial_id for le in q.leases()] == [a]
    q.release(a, front=False)
    assert q.pending() == [c, a]
    q.discard([a, c])
    q.repair()
    assert q.pending() == [] and q.leases() == [] and len(q) == 0
    assert q.claim("w1", "cpu0") is None
