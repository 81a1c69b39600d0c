"""The Store contract (docs/architecture.md, "Store"), run on every backend of store_backends."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_backends import *  # noqa: F403  (fixtures: store_url, store, sqlite_url, pg_base_url)
from store_backends import new_trials

from adsearch.errors import StoreError
from adsearch.store import (
    TRIAL_STATES,
    CheckpointRecord,
    EventRecord,
    ResultRecord,
    SearchRecord,
    Store,
    TrialRecord,
)


def _search(store: Store, name: str = "s1") -> SearchRecord:
    return store.create_search(name, {"task": "synthetic", "space": "conv-3"})


def test_create_and_get_search(store: Store) -> None:
    s = _search(store)
    assert s.state == "created" and s.config == {"task": "synthetic", "space": "conv-3"}
    assert s.created_at.tzinfo is timezone.utc
    assert store.get_search("s1") == s
    assert store.get_search_by_id(s.id) == s
    assert [x.name for x in store.list_searches()] == ["s1"]


def test_duplicate_and_unknown_search_names(store: Store) -> None:
    _search(store, "a")
    _search(store, "b")
    with pytest.raises(StoreError, match="named 'a' already exists"):
        _search(store, "a")
    with pytest.raises(StoreError, match=r"no search named 'zz'.*known: a, b"):
        store.get_search("zz")
    with pytest.raises(StoreError, match="must not be empty"):
        store.create_search(" ", {})


def test_set_search_state_validates(store: Store) -> None:
    s = _search(store)
    after = store.set_search_state(s.id, "running")
    assert after.state == "running" and after.updated_at >= s.updated_at
    with pytest.raises(StoreError, match="invalid search state 'paused'"):
        store.set_search_state(s.id, "paused")
    with pytest.raises(StoreError, match="no search with id 999"):
        store.set_search_state(999, "running")


def test_add_trials_returns_records_in_order(store: Store) -> None:
    s = _search(store)
    items = new_trials(5)
    got = store.add_trials(s.id, items)
    assert [t.seed for t in got] == [it.seed for it in items]
    assert len({t.id for t in got}) == 5 and [t.id for t in got] == sorted(t.id for t in got)
    assert all(t.state == "queued" and t.attempts == 0 and t.pid is None for t in got)
    assert store.get_trial(got[2].id) == got[2]
    assert store.add_trials(s.id, []) == []
    with pytest.raises(StoreError, match="no search with id 77"):
        store.add_trials(77, items)


def test_update_trial_compare_and_set(store: Store) -> None:
    s = _search(store)
    (t,) = store.add_trials(s.id, new_trials(1))
    started = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    run = store.update_trial(
        t.id, expect_state="queued", state="running", slot=1, pid=99, attempts=1, started_at=started
    )
    assert (run.state, run.slot, run.pid, run.attempts, run.started_at) == (
        "running", 1, 99, 1, started,
    )  # fmt: skip
    with pytest.raises(StoreError, match="trial .* is 'running', expected 'queued'"):
        store.update_trial(t.id, expect_state="queued", state="running", pid=5)
    assert store.get_trial(t.id).pid == 99  # the failed compare-and-set changed nothing
    assert store.update_trial(t.id, expect_state=["queued", "running"], error="x").error == "x"
    assert store.update_trial(t.id, expect_state="running") == store.get_trial(t.id)  # a check
    with pytest.raises(StoreError, match="is 'running', expected 'done'"):
        store.update_trial(t.id, expect_state="done")
    with pytest.raises(StoreError, match=r"cannot change trial field\(s\) \['seed'\]"):
        store.update_trial(t.id, seed=3)
    with pytest.raises(StoreError, match="invalid trial state 'lost'"):
        store.update_trial(t.id, state="lost")
    with pytest.raises(StoreError, match="no trial with id 12345"):
        store.update_trial(12345, state="queued")


def test_update_trials_bulk_skips_other_states(store: Store) -> None:
    s = _search(store)
    ts = store.add_trials(s.id, new_trials(4))
    store.update_trial(ts[0].id, state="running")
    store.update_trial(ts[1].id, state="running")
    assert store.update_trials([t.id for t in ts], expect_state="running", state="stale") == 2
    assert store.counts(s.id) == {**dict.fromkeys(TRIAL_STATES, 0), "stale": 2, "queued": 2}


def test_finish_trial_once(store: Store) -> None:
    s = _search(store)
    (t,) = store.add_trials(s.id, new_trials(1))
    r = store.finish_trial(t.id, 0.75, {"acc": 0.75}, [{"epoch": 1, "acc": 0.75}], 3.5)
    assert (r.trial_id, r.reward, r.metrics, r.curve, r.seconds) == (
        t.id, 0.75, {"acc": 0.75}, [{"epoch": 1, "acc": 0.75}], 3.5,
    )  # fmt: skip
    done = store.get_trial(t.id)
    assert done.state == "done" and done.finished_at is not None
    with pytest.raises(StoreError, match="already finished"):
        store.finish_trial(t.id, 0.9, {}, [], 1.0)
    assert store.results(s.id) == [r]  # the second call wrote nothing
    with pytest.raises(StoreError, match="invalid terminal trial state 'running'"):
        store.finish_trial(t.id, 0.9, {}, [], 1.0, state="running")


def test_failed_trial_with_nan_reward(store: Store) -> None:
    s = _search(store)
    (t,) = store.add_trials(s.id, new_trials(1))
    r = store.finish_trial(t.id, math.nan, {"error": "diverged"}, [], 0.5, state="failed")
    assert r.reward is None
    assert store.get_trial(t.id).state == "failed"
    assert store.top_trials(s.id, 5) == [] and store.reward_series(s.id) == []


def test_queries_on_a_filled_search(store: Store) -> None:
    s = _search(store)
    other = _search(store, "other")
    ts = store.add_trials(s.id, new_trials(10))
    store.add_trials(other.id, new_trials(3))
    rewards = [0.3, 0.9, 0.1, 0.9, 0.5]
    for t, rw in zip(ts, rewards, strict=False):  # finish order = list order
        store.finish_trial(t.id, rw, {"r": rw}, [], 1.0)
    store.finish_trial(ts[5].id, 0.99, {}, [], 1.0, state="failed")  # not a top trial
    store.update_trials([ts[6].id, ts[7].id], state="running")
    assert store.counts(s.id) == {"queued": 2, "running": 2, "done": 5, "failed": 1, "stale": 0}
    top = store.top_trials(s.id, 3)
    assert [(tr.id, res.reward) for tr, res in top] == [
        (ts[1].id, 0.9),
        (ts[3].id, 0.9),
        (ts[4].id, 0.5),
    ]
    assert all(tr.id == res.trial_id for tr, res in top)
    assert store.reward_series(s.id) == [(t.id, rw) for t, rw in zip(ts, rewards, strict=False)] + [
        (ts[5].id, 0.99)
    ]
    assert [t.id for t in store.trials(s.id, states=["running"])] == [ts[6].id, ts[7].id]
    assert [t.id for t in store.trials(s.id, limit=3, offset=2)] == [t.id for t in ts[2:5]]
    assert len(store.trials(other.id)) == 3
    assert [r.trial_id for r in store.results(s.id, trial_ids=[ts[3].id, ts[0].id, 999])] == [
        ts[0].id, ts[3].id,
    ]  # fmt: skip
    assert store.results(s.id, trial_ids=[]) == []
    assert store.counts(other.id)["queued"] == 3


def test_checkpoints_and_consumed_ids(store: Store) -> None:
    s = _search(store)
    ts = store.add_trials(s.id, new_trials(6))
    assert store.latest_checkpoint(s.id) is None and store.consumed_trial_ids(s.id) == set()
    c1 = store.add_checkpoint(s.id, 1, "ckpt/1.pt", [ts[1].id, ts[0].id, ts[0].id])
    c2 = store.add_checkpoint(s.id, 2, "ckpt/2.pt", [ts[2].id, ts[3].id])
    assert c1.trial_ids == [ts[0].id, ts[1].id]
    assert store.latest_checkpoint(s.id) == c2
    assert store.consumed_trial_ids(s.id) == {t.id for t in ts[:4]}
    with pytest.raises(StoreError):
        store.add_checkpoint(s.id, 3, "ckpt/3.pt", [424242])  # no such trial: nothing stored
    assert store.latest_checkpoint(s.id) == c2


def test_learned_rewards_cache_hits_and_purposes(store: Store) -> None:
    """Revision 0005: the learned reward is written with its checkpoint, all or nothing."""
    s = _search(store)
    items = new_trials(4)
    items[3] = dataclasses.replace(items[3], purpose="recheck")
    ts = store.add_trials(s.id, items)
    assert [t.purpose for t in ts] == ["search"] * 3 + ["recheck"]
    assert [t.purpose for t in store.trials(s.id)] == ["search"] * 3 + ["recheck"]
    with pytest.raises(StoreError, match="invalid trial purpose 'bogus'"):
        store.add_trials(s.id, [dataclasses.replace(items[0], purpose="bogus")])
    r0 = store.finish_trial(ts[0].id, 0.5, {}, [], 1.0)
    r1 = store.finish_trial(ts[1].id, 0.5, {}, [], 0.0, cache_of=ts[0].id)
    assert (r0.cache_of, r0.learned_reward, r1.cache_of) == (None, None, ts[0].id)
    with pytest.raises(StoreError, match="cannot reuse trial 999"):
        store.finish_trial(ts[2].id, 0.5, {}, [], 0.0, cache_of=999)
    assert store.get_trial(ts[2].id).state == "queued"  # the refused call wrote nothing
    with pytest.raises(StoreError, match="must be finite"):
        store.add_checkpoint(s.id, 1, "c/1.pt", [ts[0].id], learned={ts[0].id: math.nan})
    with pytest.raises(StoreError, match="must be finite and belong"):
        store.add_checkpoint(s.id, 1, "c/1.pt", [ts[0].id], learned={ts[1].id: 0.1})
    with pytest.raises(StoreError, match="only 1 of them have a stored result"):
        store.add_checkpoint(s.id, 1, "c/1.pt", [ts[0].id, ts[2].id],
                             learned={ts[0].id: 0.1, ts[2].id: 0.2})
    assert store.latest_checkpoint(s.id) is None  # every refusal left nothing behind
    assert [r.learned_reward for r in store.results(s.id)] == [None, None]
    store.add_checkpoint(s.id, 1, "c/1.pt", [ts[0].id, ts[1].id],
                         learned={ts[0].id: 0.25, ts[1].id: -0.125})
    got = store.results(s.id)
    assert [(r.trial_id, r.learned_reward, r.cache_of) for r in got] == [
        (ts[0].id, 0.25, None), (ts[1].id, -0.125, ts[0].id)]
    assert [r.reward for r in got] == [0.5, 0.5]  # the measured reward is not rewritten


def test_event_log_tail(store: Store) -> None:
    s = _search(store)
    for i in range(7):
        store.log_event(s.id, "trial.done", f"trial {i} done", {"i": i})
    tail = store.events(s.id, limit=3)
    assert [e.data["i"] for e in tail] == [4, 5, 6] and tail[-1].message == "trial 6 done"
    assert len(store.events(s.id)) == 7
    with pytest.raises(StoreError, match="event kind"):
        store.log_event(s.id, "", "x")
    with pytest.raises(StoreError, match="no search with id 5"):
        store.log_event(5, "k", "x")


def test_records_are_frozen_and_not_orm(store: Store) -> None:
    s = _search(store)
    (t,) = store.add_trials(s.id, new_trials(1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.state = "done"  # type: ignore[misc]
    fetched = store.get_trial(t.id)
    assert type(fetched) is TrialRecord and not hasattr(fetched, "_sa_instance_state")


def test_readonly_store_reads_and_refuses_writes(store_url: str) -> None:
    w = Store(store_url)
    s = _search(w)
    w.add_trials(s.id, new_trials(3))
    r = Store(store_url, readonly=True)
    try:
        assert r.counts(s.id)["queued"] == 3 and r.readonly
        with pytest.raises(StoreError, match="open read-only"):
            r.create_search("x", {})
        w.add_trials(s.id, new_trials(2, start=3))  # the writer keeps writing meanwhile
        assert r.counts(s.id)["queued"] == 5
    finally:
        r.close()
        w.close()


def test_readonly_open_of_missing_file_says_how_to_create(sqlite_url: str) -> None:
    with pytest.raises(StoreError, match=r"no store at .*adsearch db upgrade --store sqlite:///"):
        Store(sqlite_url, readonly=True)


def test_bad_urls() -> None:
    with pytest.raises(StoreError, match="unsupported store backend 'mysql'"):
        Store("mysql://u@h/db")
    with pytest.raises(StoreError, match="invalid store URL"):
        Store("not a url")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_dt = st.datetimes(timezones=st.just(timezone.utc))


@settings(max_examples=40, deadline=None)
@given(
    st.builds(SearchRecord, id=st.integers(1), name=st.text(), config=st.dictionaries(st.text(), _json),
              state=st.just("running"), created_at=_dt, updated_at=_dt)
    | st.builds(ResultRecord, trial_id=st.integers(1), reward=st.none() | st.floats(allow_nan=False),
                metrics=st.dictionaries(st.text(), _json), curve=st.lists(st.dictionaries(st.text(), _json)),
                seconds=st.floats(0, 1e6), created_at=_dt,
                learned_reward=st.none() | st.floats(allow_nan=False),
                cache_of=st.none() | st.integers(1))
    | st.builds(CheckpointRecord, id=st.integers(1), search_id=st.integers(1), version=st.integers(0),
                path=st.text(), trial_ids=st.lists(st.integers(1)), created_at=_dt)
    | st.builds(EventRecord, id=st.integers(1), search_id=st.integers(1), at=_dt, kind=st.text(),
                message=st.text(), data=st.dictionaries(st.text(), _json))
)  # fmt: skip
def test_record_json_round_trip(record: object) -> None:
    text = json.dumps(record.to_dict())  # type: ignore[attr-defined]
    assert type(record).from_dict(json.loads(text)) == record  # type: ignore[attr-defined]


def test_trial_record_round_trip_through_the_store(store: Store) -> None:
    s = _search(store)
    (t,) = store.add_trials(s.id, new_trials(1))
    t = store.update_trial(t.id, state="running", started_at=datetime.now(timezone.utc))
    assert TrialRecord.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_readonly_connections_refuse_writes_in_the_database(store_url: str) -> None:
    """Below the store's own check, the database itself refuses a read-only store's writes."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    Store(store_url).close()
    with Store(store_url, readonly=True) as ro, ro._engine.connect() as conn:
        with pytest.raises(DBAPIError, match="(?i)read-only|readonly"):
            conn.execute(
                text(
                    "INSERT INTO searches (name, config, state, created_at, updated_at) "
                    "VALUES ('x', '{}', 'created', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
