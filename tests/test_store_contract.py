"""The store keeps its contract (:class:`adsearch.store.contract.StoreContract`) on both
backends, SQLite and PostgreSQL (the ``store`` fixture of ``store_backends``).

The protocol lists exactly the store's public surface, with the same signatures, and one
scenario calls every method of it on each real backend (a name-checked dispatch, so a
method added to the contract without a call here fails the test).
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url, store, pg_base_url)
from store_backends import new_trials

from adsearch.errors import StoreError
from adsearch.store import FinishedTrial, Store
from adsearch.store.contract import StoreContract
from adsearch.store.leases import DaemonLease


def members(cls: type) -> dict[str, Any]:
    """Public methods and properties defined on ``cls`` or its bases (``object`` aside)."""
    return {n: inspect.getattr_static(cls, n) for n in dir(cls)
            if not n.startswith("_") and not hasattr(object, n)}


def test_the_contract_is_the_stores_public_surface() -> None:
    contract, store = members(StoreContract), members(Store)
    assert sorted(contract) == sorted(store)
    for name, spec in contract.items():
        if isinstance(spec, property):
            assert isinstance(store[name], property), name
            continue
        assert inspect.signature(getattr(Store, name)) == \
            inspect.signature(getattr(StoreContract, name)), name
        assert (getattr(StoreContract, name).__doc__ or "").strip(), f"{name}: no docstring"


def _first_above_mean(values: list[float], own: float) -> tuple[bool, float | None]:
    """A rung rule for the test: go on when at least the mean of the rung's values."""
    mean = sum(values) / len(values)
    return own >= mean, mean


def test_every_method_on_each_backend(store: Store) -> None:
    called: set[str] = set()

    def call(name: str, *args: Any, **kwargs: Any) -> Any:
        called.add(name)
        return getattr(store, name)(*args, **kwargs)

    called |= {"url", "readonly"}
    assert store.url.split(":")[0] in ("sqlite", "postgresql+psycopg")
    assert store.readonly is False
    # searches
    s = call("create_search", "contract", {"batch_size": 2})
    with pytest.raises(StoreError):
        call("create_search", "contract", {})
    assert call("get_search", "contract").id == s.id
    assert call("get_search_by_id", s.id).name == "contract"
    assert [x.name for x in call("list_searches")] == ["contract"]
    assert call("set_search_state", s.id, "running").state == "running"
    assert call("set_search_config", s.id, {"batch_size": 3}).config == {"batch_size": 3}
    # trials
    a, b, c, d = call("add_trials", s.id, new_trials(4))
    assert a.state == "queued" and a.id < b.id < c.id < d.id
    (hit,) = call("add_finished_trials", s.id, [FinishedTrial(
        trial=new_trials(1, start=9)[0], reward=0.5, metrics={}, curve=[], seconds=0.0,
        error=None, event=("reused", "cache hit", {}), cache_of=None)])
    assert hit.state == "done"
    assert call("get_trial", a.id).seed == a.seed
    run = call("update_trial", a.id, expect_state="queued", state="running", attempts=1, pid=7)
    assert (run.state, run.attempts, run.pid) == ("running", 1, 7)
    with pytest.raises(StoreError):
        call("update_trial", a.id, expect_state="queued", state="running")
    assert call("update_trials", [b.id, c.id], expect_state="queued", state="running") == 2
    res = call("finish_trial", a.id, 0.9, {"val_acc": 0.9}, [{"epoch": 1}], 1.5)
    assert res.reward == 0.9 and res.seconds == 1.5
    with pytest.raises(StoreError):
        call("finish_trial", a.id, 0.9, {}, [], 1.0)
    call("finish_trial", b.id, 0.1, {"bad_pattern": 1.0}, [], 0.2, error="diverged")
    call("finish_trial", c.id, None, {}, [], 0.0, state="stale")
    # queries
    assert [t.id for t in call("trials", s.id, states=["done"])] == [a.id, b.id, hit.id]
    assert [r.trial_id for r in call("results", s.id, [a.id, b.id])] == [a.id, b.id]
    top = call("top_trials", s.id, 2, succeeded_only=True)
    assert [t.id for t, _ in top] == [a.id, hit.id]
    counts = call("counts", s.id)
    assert (counts["done"], counts["stale"], counts["queued"]) == (3, 1, 1)
    assert call("bad_patterns", s.id) == (1, "diverged")
    assert call("reward_series", s.id) == [(hit.id, 0.5), (a.id, 0.9), (b.id, 0.1)]
    assert [t.id for t, _ in call("pattern_runs", s.id, [a.pattern_hash])] == [a.id]
    assert call("dedup_counts", s.id) == {"cache_hits": 0, "refused": 0}
    # controller checkpoints
    ck = call("add_checkpoint", s.id, 1, "ckpt-1.pt", [a.id, b.id],
              event=("controller.update", "v1", {}), learned={a.id: 0.9})
    assert ck.trial_ids == [a.id, b.id]
    latest = call("latest_checkpoint", s.id)
    assert latest is not None and latest.version == 1
    assert call("consumed_trial_ids", s.id) == {a.id, b.id}
    assert call("forget_checkpoints", s.id, ("controller.fresh", "fresh", {})) == 1
    assert call("consumed_trial_ids", s.id) == set()
    # the event log
    call("log_event", s.id, "test.note", "a note", {"n": 1})
    kinds = [e.kind for e in call("events", s.id, limit=10)]
    assert kinds[-2:] == ["controller.fresh", "test.note"] and "reused" in kinds
    assert [e.kind for e in call("events", s.id, kinds=["test.note"])] == ["test.note"]
    # rungs
    first = call("record_rung", d.id, 2.0, 2.0, 0.4, _first_above_mean)
    assert (first.promoted, first.count) == (True, 1)
    assert call("record_rung", a.id, 2.0, 2.0, 0.2, _first_above_mean).promoted is False
    assert [r.trial_id for r in call("rung_rows", s.id)] == [a.id, d.id]
    (summary,) = call("rung_summary", s.id)
    assert (summary["reached"], summary["promoted"], summary["stopped"]) == (2, 1, 1)
    assert math.isclose(float(summary["best"] or 0.0), 0.4)
    assert call("turn_rung_off", s.id, 2.0, "off", {}) is True
    assert call("turn_rung_off", s.id, 2.0, "off", {}) is False
    # the daemon lease
    now = time.time()
    mine = DaemonLease(s.id, "daemon-1", "host", 1, "ident", "/run", now, now)
    other = DaemonLease(s.id, "daemon-2", "host", 2, "ident2", "/run", now, now)
    assert call("acquire_daemon_lease", mine, lambda held: True) is None
    holder = call("acquire_daemon_lease", other, lambda held: True)
    assert holder is not None and holder.owner == "daemon-1"
    assert call("renew_daemon_lease", s.id, "daemon-1", now + 1.0) is True
    assert call("renew_daemon_lease", s.id, "daemon-2") is False
    lease = call("daemon_lease", s.id)
    assert lease is not None and lease.heartbeat_at == now + 1.0
    call("release_daemon_lease", s.id, "daemon-1")
    assert call("daemon_lease", s.id) is None
    # deleting a search, then closing
    deleted = call("delete_search", s.id)
    assert deleted["searches"] == 1 and deleted["trials"] == 5
    call("close")
    assert called == set(members(StoreContract)), sorted(set(members(StoreContract)) - called)
