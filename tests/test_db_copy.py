"""`adsearch db copy`: a search moves from SQLite to PostgreSQL with nothing lost."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_backends import *  # noqa: F403  (fixtures: pg_base_url)
from store_backends import _fresh_database, new_trials
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.errors import StoreError
from adsearch.queue.dbqueue import DbQueue
from adsearch.store import Store
from adsearch.store.copy import copy_searches


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    yield from _fresh_database(pg_base_url)


def _fill(url: str, name: str, n: int = 30) -> int:
    """A search with every kind of row: trials in each state, results (with a NaN reward),
    checkpoints with consumed trials and learned rewards, a cache hit, a re-check trial,
    events, queue entries with a lease."""
    with Store(url) as st:
        sid = st.create_search(name, {"task": "synthetic", "n": n}).id
        items = new_trials(n)
        items[5] = dataclasses.replace(items[5], purpose="recheck")
        trials = st.add_trials(sid, items)
        for i, t in enumerate(trials[: n // 2]):
            st.update_trial(t.id, state="running", attempts=1, slot=0, pid=100 + i)
            st.finish_trial(t.id, float("nan") if i == 3 else i / n, {"acc": i / n},
                            [{"epoch": 1, "loss": 1.0 - i / n}], 1.5 + i,
                            cache_of=trials[0].id if i == 2 else None)
        st.update_trial(trials[-1].id, state="failed", error="gave up", attempts=3)
        st.add_checkpoint(sid, 1, "/ck/1.pt", [t.id for t in trials[:4]],
                          learned={t.id: 0.5 - k / 8 for k, t in enumerate(trials[:4])})
        st.add_checkpoint(sid, 2, "/ck/2.pt", [t.id for t in trials[4:8]])
        for t in trials[:5]:
            st.log_event(sid, "trial_requeued", f"trial {t.id}", {"trial_id": t.id})
        st.log_event(sid, "controller.update", "v1", {"trial_ids": [t.id for t in trials[:4]]})
        q = DbQueue(st, sid)
        q.push([t.id for t in trials[n // 2 : -1]])
        q.claim("worker-x", "cpu0")
        return sid


def _snapshot(url: str, name: str) -> dict[str, object]:
    with Store(url, readonly=True) as st:
        sid = st.get_search(name).id
        q = DbQueue(st, sid)
        return {
            "search": {k: v for k, v in st.get_search(name).to_dict().items() if k != "id"},
            "trials": [t.to_dict() for t in st.trials(sid)],
            "results": [r.to_dict() for r in st.results(sid)],
            "series": st.reward_series(sid),
            "top": [(t.id, r.reward) for t, r in st.top_trials(sid, 5)],
            "ckpt": st.latest_checkpoint(sid).to_dict(),  # type: ignore[union-attr]
            "consumed": sorted(st.consumed_trial_ids(sid)),
            "events": [(e.kind, e.message, e.data) for e in st.events(sid, limit=1000)],
            "pending": q.pending(),
            "leases": [(le.trial_id, le.owner) for le in q.leases()],
        }


def test_copy_to_postgresql_preserves_every_row_and_id(tmp_path: Path, pg_url: str) -> None:
    src = f"sqlite:///{tmp_path / 'src.db'}"
    _fill(src, "move-me")
    (report,) = copy_searches(src, pg_url, ["move-me"])
    assert not report.remapped and report.rows["trials"] == 30 and report.rows["results"] == 15
    snap = _snapshot(src, "move-me")
    assert _snapshot(pg_url, "move-me") == snap
    results = snap["results"]  # the revision-0005 columns are filled, so the copy checks them
    assert [r["learned_reward"] for r in results][:4] == [0.5, 0.375, 0.25, 0.125]  # type: ignore[index]
    assert results[2]["cache_of"] == 1 and snap["trials"][5]["purpose"] == "recheck"  # type: ignore[index]
    with Store(pg_url) as st:  # sequences moved past the copied ids: new rows do not collide
        sid = st.get_search("move-me").id
        (t,) = st.add_trials(sid, new_trials(1, start=99))
        assert t.id == 31
        assert st.create_search("next", {}).id == 2
    with pytest.raises(StoreError, match="already holds a search named 'move-me'"):
        copy_searches(src, pg_url, ["move-me"])


def test_taken_ids_are_refused_or_remapped_consistently(tmp_path: Path, pg_url: str) -> None:
    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    _fill(a, "first")
    _fill(b, "second", n=12)
    copy_searches(a, pg_url)
    before = _snapshot(pg_url, "first")
    with pytest.raises(StoreError, match="ids of search 'second' are taken"):
        copy_searches(b, pg_url)
    with Store(pg_url, readonly=True) as st:  # nothing half-written
        assert [s.name for s in st.list_searches()] == ["first"]
    (rep,) = copy_searches(b, pg_url, remap_ids=True)
    assert rep.remapped and rep.dest_id == 2
    got, want = _snapshot(pg_url, "second"), _snapshot(b, "second")
    ids = {old["id"]: new["id"] for old, new in zip(want["trials"], got["trials"], strict=True)}  # type: ignore[call-overload]
    assert min(ids.values()) == 31 and len(set(ids.values())) == 12
    assert [ids[t] for t in want["consumed"]] == got["consumed"]  # type: ignore[attr-defined]
    assert [(ids[t], r) for t, r in want["series"]] == got["series"]  # type: ignore[attr-defined]
    assert [(ids[t], o) for t, o in want["leases"]] == got["leases"]  # type: ignore[attr-defined]
    learned = [(ids[r["trial_id"]], r["learned_reward"], r["cache_of"] and ids[r["cache_of"]])
               for r in want["results"]]  # type: ignore[attr-defined]
    assert learned == [(r["trial_id"], r["learned_reward"], r["cache_of"])
                       for r in got["results"]]  # type: ignore[attr-defined]
    assert sum(r["cache_of"] is not None for r in got["results"]) == 1  # type: ignore[attr-defined]
    assert [t["purpose"] for t in got["trials"]] == [t["purpose"] for t in want["trials"]]  # type: ignore[attr-defined]
    assert got["events"][0][2] == {"trial_id": ids[1]}  # type: ignore[index]
    assert _snapshot(pg_url, "first") == before


def test_cli_copy_moves_a_run_directory_and_refuses_bad_input(tmp_path: Path, pg_url: str) -> None:
    src = f"sqlite:///{tmp_path / 'run' / 'adsearch.db'}"
    _fill(src, "cli")
    (tmp_path / "run" / "search.json").write_text(f'{{"name": "cli", "store": "{src}"}}')
    runner = CliRunner()
    res = runner.invoke(app, ["db", "copy", src, pg_url, "--search", "cli",
                              "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "cli: copied to" in res.output and "30 trials" in res.output
    assert "ids preserved" in res.output and "adsearch resume cli" in res.output
    assert pg_url in (tmp_path / "run" / "search.json").read_text()
    res = runner.invoke(app, ["db", "copy", src, pg_url, "--search", "nope"])
    assert res.exit_code == 1 and "no search named 'nope'" in res.output
    res = runner.invoke(app, ["db", "copy", f"sqlite:///{tmp_path / 'missing.db'}", pg_url])
    assert res.exit_code == 1 and "no store at" in res.output
