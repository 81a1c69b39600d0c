"""Copy searches between stores (SQLite to PostgreSQL, or any other pair), losing nothing.

:func:`copy_searches` copies each search with every row that belongs to it: trials,
results, controller checkpoints and the trials each one consumed, the event log and the
queue entries. The whole copy is **one transaction** on the destination: it completes, or
the destination is left as it was.

Ids are **preserved**: trial ids name the run directory's ``trials/<id>/`` folders and sit
in the controller checkpoint files' consumed sets, so a search resumed from the copy must
see the same ids. When an id is already taken in the destination (it holds other searches)
the copy is refused, unless ``remap_ids=True``: then every id gets a new value and every
reference follows it (results, checkpoint trials, queue entries, the ``trial_id`` /
``trial_ids`` / ``requeued`` keys of event data). A remapped copy is for reading, with no
run directory (``adsearch status|show|export --store URL --search NAME``), not for resuming,
since the checkpoint files keep the old ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, insert, select, text

from adsearch.errors import StoreError
from adsearch.store.models import (
    CheckpointModel,
    CheckpointTrialModel,
    EventModel,
    QueueEntryModel,
    ResultModel,
    SearchModel,
    TrialModel,
)
from adsearch.store.storage import Store

_CHUNK = 1000
_TABLES: dict[str, Table] = {m.__tablename__: m.__table__ for m in (  # type: ignore[misc]
    SearchModel, TrialModel, ResultModel, CheckpointModel, CheckpointTrialModel, EventModel,
    QueueEntryModel)}
_ID_TABLES = ("searches", "trials", "results", "checkpoints", "events")
_EVENT_TRIAL_KEYS = ("trial_id", "trial_ids", "requeued")


@dataclass(frozen=True)
class CopyReport:
    """What one search's copy wrote: rows per table, and whether ids were remapped."""

    search: str
    source_id: int
    dest_id: int
    rows: dict[str, int]
    remapped: bool


def _rows(s: Any, table: Table, where: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in s.execute(select(table).where(where).order_by(
        *table.primary_key.columns))]


def _read_search(src: Store, name: str) -> dict[str, list[dict[str, Any]]]:
    t = _TABLES
    with src._session(write=False) as s:  # noqa: SLF001 - the store's transaction helper
        search = s.execute(select(t["searches"]).where(t["searches"].c.name == name)).first()
        if search is None:
            src.get_search(name)  # raises, naming the known searches
            raise StoreError(f"no search named {name!r} in {src.url}")
        sid = search._mapping["id"]
        ckpts = _rows(s, t["checkpoints"], t["checkpoints"].c.search_id == sid)
        ck_ids = [c["id"] for c in ckpts]
        ck_trials: list[dict[str, Any]] = []
        for i in range(0, len(ck_ids), _CHUNK):
            ck_trials += _rows(s, t["checkpoint_trials"],
                               t["checkpoint_trials"].c.checkpoint_id.in_(ck_ids[i:i + _CHUNK]))
        return {
            "searches": [dict(search._mapping)],
            "trials": _rows(s, t["trials"], t["trials"].c.search_id == sid),
            "results": _rows(s, t["results"], t["results"].c.search_id == sid),
            "checkpoints": ckpts,
            "checkpoint_trials": ck_trials,
            "events": _rows(s, t["events"], t["events"].c.search_id == sid),
            "queue_entries": _rows(s, t["queue_entries"], t["queue_entries"].c.search_id == sid),
        }


def _taken(s: Any, table: str, ids: list[int]) -> bool:
    col = _TABLES[table].c.id
    return any(s.scalar(select(func.count()).where(col.in_(ids[i:i + _CHUNK])))
               for i in range(0, len(ids), _CHUNK))


def _remap(data: dict[str, list[dict[str, Any]]], s: Any) -> None:
    """Give every row a fresh id above the destination's maximum; follow every reference."""
    maps: dict[str, dict[int, int]] = {}
    for table in _ID_TABLES:
        start = int(s.scalar(select(func.coalesce(func.max(_TABLES[table].c.id), 0))))
        maps[table] = {r["id"]: start + n + 1 for n, r in enumerate(data[table])}
        for r in data[table]:
            r["id"] = maps[table][r["id"]]
    sm, tm, cm = maps["searches"], maps["trials"], maps["checkpoints"]
    for table in ("trials", "results", "checkpoints", "events", "queue_entries"):
        for r in data[table]:
            r["search_id"] = sm[r["search_id"]]
    for table in ("results", "queue_entries"):
        for r in data[table]:
            r["trial_id"] = tm[r["trial_id"]]
    for r in data["results"]:  # a cache hit names the trial it reused (revision 0005)
        if r.get("cache_of") is not None:
            r["cache_of"] = tm.get(r["cache_of"], r["cache_of"])
    for r in data["checkpoint_trials"]:
        r["checkpoint_id"], r["trial_id"] = cm[r["checkpoint_id"]], tm[r["trial_id"]]
    for r in data["events"]:
        d = dict(r["data"] or {})
        for key in _EVENT_TRIAL_KEYS:
            v = d.get(key)
            if isinstance(v, int) and v in tm:
                d[key] = tm[v]
            elif isinstance(v, list):
                d[key] = [tm.get(x, x) if isinstance(x, int) else x for x in v]
        r["data"] = d


def _write(s: Any, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    counts = {}
    for table in ("searches", "trials", "results", "checkpoints", "checkpoint_trials",
                  "events", "queue_entries"):
        rows = data[table]
        for i in range(0, len(rows), _CHUNK):
            s.execute(insert(_TABLES[table]), rows[i:i + _CHUNK])
        counts[table] = len(rows)
    if s.get_bind().dialect.name == "postgresql":  # explicit ids do not advance sequences
        for table in _ID_TABLES:
            s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))
    return counts


def copy_searches(src_url: str, dst_url: str, names: Iterable[str] | None = None, *,
                  remap_ids: bool = False, force: bool = False) -> list[CopyReport]:
    """Copy searches from ``src_url`` to ``dst_url`` in one destination transaction.

    Args:
        names: the searches to copy (default: every search of the source).
        remap_ids: when ids are taken in the destination, give new ids instead of refusing.
        force: copy a search whose state says a daemon runs it (a crashed daemon leaves
            ``running``); otherwise refused, since rows written during the copy would be lost.

    Returns:
        One report per search, in copy order.

    Raises:
        StoreError: same store, unknown search, a name the destination already holds, a
            running search without ``force``, taken ids without ``remap_ids``, or any
            database error (the destination is then unchanged).
    """
    src = Store(src_url, readonly=True)
    try:
        dst = Store(dst_url)
    except BaseException:
        src.close()
        raise
    try:
        if src.url == dst.url:
            raise StoreError(f"source and destination are the same store ({src.url})")
        wanted = list(names) if names else [r.name for r in src.list_searches()]
        if not wanted:
            raise StoreError(f"{src.url} holds no search: nothing to copy")
        have = {r.name for r in dst.list_searches()}
        for name in wanted:
            rec = src.get_search(name)
            if name in have:
                raise StoreError(f"{dst.url} already holds a search named {name!r}: refusing to "
                                 "overwrite it (drop it there, or copy into another database)")
            if rec.state in ("running", "stopping") and not force:
                raise StoreError(f"search {name!r} is {rec.state}: stop it first (`adsearch stop "
                                 f"{name}`), or pass --force if its daemon is dead")
        datas = [(name, _read_search(src, name)) for name in wanted]
        reports = []
        with dst._session() as s:  # noqa: SLF001 - one transaction for the whole copy
            for name, data in datas:
                source_id = data["searches"][0]["id"]
                clash = [t for t in _ID_TABLES if data[t] and _taken(s, t, [r["id"] for r in data[t]])]
                if clash and not remap_ids:
                    raise StoreError(
                        f"ids of search {name!r} are taken in {dst.url} ({', '.join(clash)}), which "
                        "holds other searches: to move the search and resume it there, copy it "
                        "into a new database (`createdb`, then `adsearch db upgrade --store URL`), "
                        "which keeps its ids; for a read-only copy here, pass --remap-ids (without "
                        f"--run-dir) and read it with `adsearch status --store {dst.url} "
                        f"--search {name}` (also show, export)")
                if clash:
                    _remap(data, s)
                rows = _write(s, data)
                s.flush()
                reports.append(CopyReport(name, source_id, data["searches"][0]["id"], rows,
                                          bool(clash)))
        return reports
    finally:
        src.close()
        dst.close()
