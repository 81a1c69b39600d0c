"""The database queue (revision 0003) on SQLite and PostgreSQL: order, leases, heartbeats."""

from __future__ import annotations

import time

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url, store, pg_base_url)
from store_backends import new_trials

from adsearch.queue import LeaseLost
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store


@pytest.fixture
def queue(store: Store) -> DbQueue:
    search = store.create_search("q", {})
    return DbQueue(store, search.id, lease_seconds=10.0)


def _ids(queue: DbQueue, n: int) -> list[int]:
    return [t.id for t in queue.store.add_trials(queue.search_id, new_trials(n))]


def test_claims_in_push_order_with_front_first(queue: DbQueue) -> None:
    a, b, c, d = _ids(queue, 4)
    queue.push([a, b, c])
    queue.push([d], front=True)
    queue.push([a, d])  # already present: no-op
    assert queue.pending() == [d, a, b, c] and len(queue) == 4
    got = [queue.claim("w1", "cpu0") for _ in range(5)]
    assert [g.trial_id for g in got if g] == [d, a, b, c] and got[-1] is None
    assert len(queue) == 0 and [le.trial_id for le in queue.leases()] == [a, b, c, d]
    assert all(le.owner == "w1" and le.slot == "cpu0" for le in queue.leases())


def test_release_requeues_first_and_ack_discard_remove(queue: DbQueue) -> None:
    a, b, c = _ids(queue, 3)
    queue.push([a, b, c])
    first = queue.claim("w", "s")
    assert first is not None and first.trial_id == a
    queue.release(a)
    assert queue.pending() == [a, b, c] and queue.lease(a) is None
    queue.claim("w", "s")
    queue.ack(a)
    queue.discard([b])
    assert queue.pending() == [c] and queue.leases() == []


def test_heartbeat_keeps_a_lease_and_expiry_finds_dead_ones(queue: DbQueue) -> None:
    a, b = _ids(queue, 2)
    queue.push([a, b])
    la, lb = queue.claim("w1", "s"), queue.claim("w2", "s")
    assert la and lb
    assert queue.expired(la.heartbeat_at + 5) == []
    later = la.heartbeat_at + 11
    assert {le.trial_id for le in queue.expired(later)} == {a, b}
    time.sleep(0.05)
    queue.heartbeat(a, owner="w1")
    renewed = queue.lease(a)
    assert renewed is not None and renewed.heartbeat_at >= lb.heartbeat_at + 0.05
    assert [le.trial_id for le in queue.expired(lb.heartbeat_at + 10.01)] == [b]
    with pytest.raises(LeaseLost):
        queue.heartbeat(b, owner="w1")  # not w1's lease
    assert queue.release_owner("w2") == [b] and queue.pending() == [b]
    with pytest.raises(LeaseLost):
        queue.heartbeat(b)


def test_queues_of_two_searches_are_separate(store: Store) -> None:
    q1 = DbQueue(store, store.create_search("one", {}).id)
    q2 = DbQueue(store, store.create_search("two", {}).id)
    (t1,) = store.add_trials(q1.search_id, new_trials(1))
    (t2,) = store.add_trials(q2.search_id, new_trials(1, start=1))
    q1.push([t1.id])
    q2.push([t2.id])
    lease = q2.claim("w", "s")
    assert lease is not None and lease.trial_id == t2.id and q2.claim("w", "s") is None
    assert q1.pending() == [t1.id]


def test_no_claim_once_a_stop_is_asked_for(queue: DbQueue) -> None:
    """The claim statement checks the search state itself (issue 13 §2): a worker that has not
    yet re-read the state still gets nothing once the daemon wrote ``stopping``."""
    a, b = _ids(queue, 2)
    queue.push([a, b])
    queue.store.set_search_state(queue.search_id, "running")
    first = queue.claim("w", "s")
    assert first is not None and first.trial_id == a
    for state in ("stopping", "stopped", "finished", "failed"):
        queue.store.set_search_state(queue.search_id, state)
        assert queue.claim("w", "s") is None, state
        assert queue.pending() == [b]
    queue.store.set_search_state(queue.search_id, "running")  # a resume serves it again
    again = queue.claim("w", "s")
    assert again is not None and again.trial_id == b
