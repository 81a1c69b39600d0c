"""The file-locked queue: FIFO order, leases, heartbeats, crash leftovers, and several real
processes claiming at once without a trial claimed twice or lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adsearch.queue import FileQueue, LeaseLost


def test_fifo_and_front(tmp_path: Path) -> None:
    q = FileQueue(tmp_path / "q")
    q.push([3, 1, 2])
    q.push([9], front=True)
    q.push([1])  # already pending: no-op
    assert q.pending() == [9, 3, 1, 2]
    lease = q.claim("me", "cpu0")
    assert lease is not None and lease.trial_id == 9 and lease.slot == "cpu0"
    assert q.pending() == [3, 1, 2]
    assert [le.trial_id for le in q.leases()] == [9]


def test_ack_release_discard(tmp_path: Path) -> None:
    q = FileQueue(tmp_path / "q")
    q.push([1, 2, 3])
    a = q.claim("w", "s0")
    b = q.claim("w", "s1")
    assert (a and a.trial_id, b and b.trial_id) == (1, 2)
    q.ack(1)
    q.release(2)  # requeued work goes first
    q.push([2])  # pending already: no duplicate
    assert q.pending() == [2, 3]
    assert q.leases() == []
    q.discard([3])
    assert q.pending() == [2]
    assert q.claim("w", "s0").trial_id == 2  # type: ignore[union-attr]
    assert q.claim("w", "s0") is None


def test_heartbeat_and_expiry(tmp_path: Path) -> None:
    q = FileQueue(tmp_path / "q", lease_seconds=0.3)
    q.push([5, 6])
    q.claim("w", "s0")
    q.claim("w", "s1")
    time.sleep(0.4)
    q.heartbeat(6)
    assert [le.trial_id for le in q.expired()] == [5]
    q.release(5)
    with pytest.raises(LeaseLost, match="trial 5"):
        q.heartbeat(5)


def test_crash_leftovers_are_repaired(tmp_path: Path) -> None:
    """A claim that died between writing its lease and removing the pending entry, and a
    temporary file of a write that died midway."""
    q = FileQueue(tmp_path / "q")
    q.push([1, 2])
    lease = q.claim("w", "s0")
    assert lease is not None
    # Simulate the crash window: put the pending entry back beside the lease.
    (tmp_path / "q" / "pending" / f"1-{time.time_ns():020d}-1.json").write_text("{}")
    (tmp_path / "q" / "pending" / ".tmp-half-written").write_text("{")
    assert q.pending() == [2]  # the leased trial is hidden
    q.repair()
    assert sorted(os.listdir(tmp_path / "q" / "pending")) == [
        n for n in os.listdir(tmp_path / "q" / "pending") if n.endswith("-2.json")
    ]
    assert q.claim("w", "s1").trial_id == 2  # type: ignore[union-attr]


_CLAIMER = r"""
import sys, time
from adsearch.queue import FileQueue
q = FileQueue(sys.argv[1])
got = []
while True:
    lease = q.claim(sys.argv[2], "s")
    if lease is None:
        break
    q.heartbeat(lease.trial_id)
    got.append(lease.trial_id)
    q.ack(lease.trial_id)
print(" ".join(map(str, got)))
"""


def test_concurrent_processes_claim_each_trial_once(tmp_path: Path) -> None:
    q = FileQueue(tmp_path / "q")
    n = 300
    q.push(range(n))
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLAIMER, str(tmp_path / "q"), f"w{i}"],
                         stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    claimed: list[int] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        claimed += [int(x) for x in out.split()]
    assert sorted(claimed) == list(range(n))
    assert q.pending() == [] and q.leases() == []


def test_killed_claimer_leaves_an_expiring_lease(tmp_path: Path) -> None:
    """kill -9 a process that holds a lease: the lease stays and expires; nothing is lost."""
    q = FileQueue(tmp_path / "q", lease_seconds=0.5)
    q.push([1, 2])
    code = (
        "import sys,time; from adsearch.queue import FileQueue; "
        "q=FileQueue(sys.argv[1]); l=q.claim('victim','s0'); print(l.trial_id, flush=True); "
        "time.sleep(60)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "q")],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert int(p.stdout.readline()) == 1
    p.kill()
    p.wait()
    assert [le.owner for le in q.leases()] == ["victim"]
    time.sleep(0.6)
    (expired,) = q.expired()
    assert expired.trial_id == 1 and expired.pid == p.pid
    q.release(1)
    assert q.pending() == [1, 2]
