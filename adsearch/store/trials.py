"""Trial methods of :class:`~adsearch.store.Store`: queueing, state changes, results, queries."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update

from adsearch.errors import StoreError
from adsearch.store import convert
from adsearch.store.base import StoreCore
from adsearch.store.models import EventModel, ResultModel, TrialModel
from adsearch.store.records import (
    TERMINAL_TRIAL_STATES,
    TRIAL_PURPOSES,
    TRIAL_STATES,
    FinishedTrial,
    NewTrial,
    ResultRecord,
    TrialRecord,
    as_utc,
    clean_reward,
    utcnow,
)
from adsearch.store.retry import in_retry, retrying_methods

_CHUNK = 500  # ids per IN (...) list: well under every backend's bound-parameter limit
TRIAL_FIELDS = frozenset({"state", "slot", "attempts", "pid", "error", "started_at", "finished_at"})
"""Trial columns that :meth:`Store.update_trial` may change."""


def check_state(state: str, allowed: Collection[str], what: str) -> None:
    """Raise StoreError unless ``state`` is one of ``allowed``."""
    if state not in allowed:
        raise StoreError(f"invalid {what} state {state!r}: use one of {', '.join(allowed)}")


def _states(expect: str | Collection[str]) -> list[str]:
    states = [expect] if isinstance(expect, str) else list(expect)
    for s in states:
        check_state(s, TRIAL_STATES, "trial")
    return states


def _purposes(purposes: Collection[str]) -> list[str]:
    out = list(purposes)
    for p in out:
        if p not in TRIAL_PURPOSES:
            raise StoreError(f"invalid trial purpose {p!r}: use one of {', '.join(TRIAL_PURPOSES)}")
    return out


def chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    """Split ``ids`` into lists short enough for one ``IN (...)``."""
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


@retrying_methods  # a lost connection costs a retry, not a crash (store/retry.py)
class TrialMethods(StoreCore):
    """Trial half of the store (see :class:`~adsearch.store.Store` for the promises)."""

    # -- trials -----------------------------------------------------------------------

    def add_trials(self, search_id: int, items: Sequence[NewTrial]) -> list[TrialRecord]:
        """Queue new trials (state ``queued``, 0 attempts) in one bulk insert.

        Args:
            search_id: The search they belong to.
            items: The drawn trials, in the order their ids are assigned.

        Returns:
            The stored trials, in the order of ``items``.

        Raises:
            StoreError: Unknown search, an unknown ``purpose`` or a value that is not JSON-able.
        """
        if not items:
            return []
        for it in items:
            if it.purpose not in TRIAL_PURPOSES:
                raise StoreError(f"invalid trial purpose {it.purpose!r}: use one of "
                                 f"{', '.join(TRIAL_PURPOSES)}")
        now = utcnow()
        rows = [
            {
                "search_id": search_id, "pattern": list(it.pattern),
                "pattern_hash": it.pattern_hash, "tokens": [int(t) for t in it.tokens],
                "controller_version": int(it.controller_version), "logp": float(it.logp),
                "seed": int(it.seed), "state": "queued", "slot": None, "attempts": 0,
                "pid": None, "error": None, "created_at": now, "started_at": None,
                "finished_at": None, "purpose": it.purpose,
            }
            for it in items
        ]  # fmt: skip
        with self._session() as s:
            self._search_row(s, search_id)
            stmt = insert(TrialModel).returning(TrialModel.id, sort_by_parameter_order=True)
            ids = s.scalars(stmt, rows).all()
        return [TrialRecord(id=i, **row) for i, row in zip(ids, rows, strict=True)]  # type: ignore[arg-type]

    def add_finished_trials(self, search_id: int,
                            items: Sequence[FinishedTrial]) -> list[TrialRecord]:
        """Store drawn trials that are finished already (state ``done``, 0 attempts: no child
        ran), each with its result and event, all in one transaction: the cache hits and the
        refused patterns of :mod:`adsearch.daemon.dedup`.

        Args:
            search_id: The search they belong to.
            items: The trials with their results, in the order their ids are assigned (and
                the results their finish order).

        Returns:
            The stored trials, in the order of ``items``.

        Raises:
            StoreError: Unknown search, an unknown ``purpose``, a ``cache_of`` that is not a
                trial of the same search, or a value that is not JSON-able; nothing is
                written then.
        """
        if not items:
            return []
        for it in items:
            if it.trial.purpose not in TRIAL_PURPOSES:
                raise StoreError(f"invalid trial purpose {it.trial.purpose!r}: use one of "
                                 f"{', '.join(TRIAL_PURPOSES)}")
        now = utcnow()
        rows = [
            {
                "search_id": search_id, "pattern": list(it.trial.pattern),
                "pattern_hash": it.trial.pattern_hash,
                "tokens": [int(t) for t in it.trial.tokens],
                "controller_version": int(it.trial.controller_version),
                "logp": float(it.trial.logp), "seed": int(it.trial.seed), "state": "done",
                "slot": None, "attempts": 0, "pid": None, "error": it.error,
                "created_at": now, "started_at": None, "finished_at": now,
                "purpose": it.trial.purpose,
            }
            for it in items
        ]  # fmt: skip
        sources = sorted({int(it.cache_of) for it in items if it.cache_of is not None})
        with self._session() as s:
            self._search_row(s, search_id)
            if sources:
                found = set(s.scalars(select(TrialModel.id).where(
                    TrialModel.id.in_(sources), TrialModel.search_id == search_id)))
                if found != set(sources):
                    raise StoreError(f"cannot reuse the result of trial(s) "
                                     f"{sorted(set(sources) - found)}: not trials of search "
                                     f"{search_id}")
            stmt = insert(TrialModel).returning(TrialModel.id, sort_by_parameter_order=True)
            ids = s.scalars(stmt, rows).all()
            for tid, it in zip(ids, items, strict=True):
                s.add(ResultModel(
                    trial_id=tid, search_id=search_id, reward=clean_reward(it.reward),
                    metrics=dict(it.metrics), curve=list(it.curve), seconds=float(it.seconds),
                    created_at=now, cache_of=None if it.cache_of is None else int(it.cache_of)))
                s.flush()  # results in item order: their ids are the finish order
                if it.event is not None:
                    kind, message, data = it.event
                    s.add(EventModel(search_id=search_id, at=now, kind=kind,
                                     message=f"trial {tid} {message}",
                                     data={**data, "trial_id": tid}))
        return [TrialRecord(id=i, **row) for i, row in zip(ids, rows, strict=True)]  # type: ignore[arg-type]

    def dedup_counts(self, search_id: int) -> dict[str, int]:
        """``{"cache_hits": n, "refused": m}``: trials that reused a stored result
        (``results.cache_of``) and patterns refused by the drop cap (``metrics["refused"]``),
        neither of which ran a child (adsearch.daemon.dedup)."""
        hits = select(func.count()).select_from(ResultModel).where(
            ResultModel.search_id == search_id, ResultModel.cache_of.is_not(None))
        refused = select(func.count()).select_from(ResultModel).where(
            ResultModel.search_id == search_id,
            ResultModel.metrics["refused"].as_float() == 1.0)
        with self._session(write=False) as s:
            return {"cache_hits": int(s.execute(hits).scalar_one()),
                    "refused": int(s.execute(refused).scalar_one())}

    def get_trial(self, trial_id: int) -> TrialRecord:
        """Return one trial.

        Raises:
            StoreError: No such trial.
        """
        with self._session(write=False) as s:
            row = s.get(TrialModel, trial_id)
            if row is None:
                raise StoreError(f"no trial with id {trial_id}")
            return convert.trial_record(row)

    def update_trial(
        self, trial_id: int, *, expect_state: str | Collection[str] | None = None, **changes: Any
    ) -> TrialRecord:
        """Change a trial's run fields, as a compare-and-set on its state if asked.

        Args:
            trial_id: The trial.
            expect_state: Only change it while its state is this one (or one of these).
            **changes: New values for ``state``, ``slot``, ``attempts``, ``pid``, ``error``,
                ``started_at``, ``finished_at``.

        Returns:
            The trial after the change.

        Raises:
            StoreError: Unknown trial, unknown field or state, or (with ``expect_state``)
                the trial is in another state; nothing is changed then.
        """
        values = self._trial_values(changes)
        with self._session() as s:
            stmt = update(TrialModel).where(TrialModel.id == trial_id)
            if expect_state is not None:
                stmt = stmt.where(TrialModel.state.in_(_states(expect_state)))
            if values:
                done = s.execute(
                    stmt.values(**values), execution_options={"synchronize_session": False}
                ).rowcount  # type: ignore[attr-defined]
            else:
                check = (
                    select(func.count()).select_from(TrialModel).where(TrialModel.id == trial_id)
                )
                if expect_state is not None:
                    check = check.where(TrialModel.state.in_(_states(expect_state)))
                done = s.scalar(check)
            row = s.get(TrialModel, trial_id, populate_existing=True)
            if row is None:
                raise StoreError(f"no trial with id {trial_id}")
            if not done:
                raise StoreError(
                    f"trial {trial_id} is {row.state!r}, expected {expect_state!r}: "
                    "another process changed it first"
                )
            return convert.trial_record(row)

    def update_trials(
        self,
        trial_ids: Sequence[int],
        *,
        expect_state: str | Collection[str] | None = None,
        **changes: Any,
    ) -> int:
        """Apply the same change to many trials in one transaction (beyond the contract).

        Trials that do not exist or are not in ``expect_state`` are skipped silently.

        Returns:
            How many trials were changed.

        Raises:
            StoreError: Unknown field or state.
        """
        values = self._trial_values(changes)
        if not values or not trial_ids:
            return 0
        total = 0
        with self._session() as s:
            for chunk in chunks(list(trial_ids)):
                stmt = update(TrialModel).where(TrialModel.id.in_(chunk))
                if expect_state is not None:
                    stmt = stmt.where(TrialModel.state.in_(_states(expect_state)))
                total += s.execute(
                    stmt.values(**values), execution_options={"synchronize_session": False}
                ).rowcount  # type: ignore[attr-defined]
        return total

    @staticmethod
    def _trial_values(changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - TRIAL_FIELDS
        if unknown:
            raise StoreError(
                f"cannot change trial field(s) {sorted(unknown)}: "
                f"update_trial changes only {sorted(TRIAL_FIELDS)}"
            )
        if "state" in changes:
            check_state(changes["state"], TRIAL_STATES, "trial")
        return {k: as_utc(v) if isinstance(v, datetime) else v for k, v in changes.items()}

    def finish_trial(
        self,
        trial_id: int,
        reward: float | None,
        metrics: dict[str, Any],
        curve: list[dict[str, Any]],
        seconds: float,
        state: str = "done",
        error: str | None = None,
        cache_of: int | None = None,
    ) -> ResultRecord:
        """Store a trial's result and move it to a terminal state, in one transaction.

        Args:
            trial_id: A trial that is not finished yet.
            reward: The reward (None or NaN when the run produced none).
            metrics: Final metrics (JSON-able).
            curve: Learning curve, one dict per evaluation.
            seconds: Wall-clock seconds of the run.
            state: The terminal state: ``done``, ``failed`` or ``stale``.
            error: The trial's error. A ``done`` trial shows only its own (a bad pattern's
                error, or None: an earlier attempt's error is cleared, it stays in that
                attempt's log); for other states None keeps the error already recorded.
            cache_of: A cache hit: the trial of the same search whose stored result this
                trial reuses (recorded in ``results.cache_of``); None when it was trained.

        Returns:
            The stored result.

        Raises:
            StoreError: Unknown trial, a non-terminal ``state``, the trial is already
                finished (a second call), or ``cache_of`` is not another trial of the same
                search; nothing is written then.
        """
        check_state(state, sorted(TERMINAL_TRIAL_STATES), "terminal trial")
        with self._session() as s:
            row = s.get(TrialModel, trial_id, with_for_update=True)
            if row is None:
                raise StoreError(f"no trial with id {trial_id}")
            if row.state in TERMINAL_TRIAL_STATES:
                stored = s.scalars(select(ResultModel).where(ResultModel.trial_id == trial_id)).first()
                if in_retry() and stored is not None and row.state == state:
                    return convert.result_record(stored)  # the lost commit did go through
                raise StoreError(f"trial {trial_id} is already finished ({row.state!r})")
            if cache_of is not None:
                source = s.get(TrialModel, int(cache_of))
                if source is None or source.search_id != row.search_id or source.id == trial_id:
                    raise StoreError(
                        f"trial {trial_id} cannot reuse trial {cache_of}'s result: it is not "
                        "another trial of the same search"
                    )
            now = utcnow()
            row.state = state
            row.finished_at = now
            if state == "done" or error is not None:
                row.error = error
            result = ResultModel(
                trial_id=trial_id, search_id=row.search_id, reward=clean_reward(reward),
                metrics=dict(metrics), curve=list(curve), seconds=float(seconds), created_at=now,
                cache_of=None if cache_of is None else int(cache_of),
            )  # fmt: skip
            s.add(result)
            s.flush()
            return convert.result_record(result)

    # -- queries ----------------------------------------------------------------------

    def trials(
        self,
        search_id: int,
        states: Iterable[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        purposes: Collection[str] | None = None,
    ) -> list[TrialRecord]:
        """Return a search's trials in id order, optionally only those in ``states`` and with
        one of ``purposes``."""
        stmt = select(TrialModel).where(TrialModel.search_id == search_id)
        if states is not None:
            stmt = stmt.where(TrialModel.state.in_(_states(list(states))))
        if purposes is not None:
            stmt = stmt.where(TrialModel.purpose.in_(_purposes(purposes)))
        stmt = stmt.order_by(TrialModel.id).offset(offset).limit(limit)
        with self._session(write=False) as s:
            return [convert.trial_record(r) for r in s.scalars(stmt)]

    def results(self, search_id: int, trial_ids: Iterable[int] | None = None) -> list[ResultRecord]:
        """Return a search's results in finish order, optionally only for ``trial_ids``."""
        base = select(ResultModel).where(ResultModel.search_id == search_id)
        stmts: list[Select[ResultModel]] = (
            [base]
            if trial_ids is None
            else [base.where(ResultModel.trial_id.in_(c)) for c in chunks(sorted(set(trial_ids)))]
        )
        with self._session(write=False) as s:
            rows = [r for stmt in stmts for r in s.scalars(stmt)]
            rows.sort(key=lambda r: r.id)
            return [convert.result_record(r) for r in rows]

    def top_trials(self, search_id: int, k: int, *, full_only: bool = False,
                   succeeded_only: bool = False, purposes: Collection[str] | None = None,
                   distinct: bool = False) -> list[tuple[TrialRecord, ResultRecord]]:
        """Return the ``k`` done trials with the highest reward, best first (ties: first finished).

        ``full_only``: skip children stopped early by pruning (``metrics["truncated"]``),
        whose reward was measured before the end of training. ``succeeded_only``: skip bad
        patterns (``metrics["bad_pattern"]``), whose reward is the failure reward, earned by
        failing rather than measured. ``purposes``: only trials with one of these purposes
        (``TRIAL_PURPOSES``; None: all). ``distinct``: one trial per ``pattern_hash`` (its
        best), so the ``k`` rows are ``k`` different patterns.
        """
        stmt = (
            select(TrialModel, ResultModel)
            .join(TrialModel, TrialModel.id == ResultModel.trial_id)
            .where(
                ResultModel.search_id == search_id,
                ResultModel.reward.is_not(None),
                TrialModel.state == "done",
            )
            .order_by(ResultModel.reward.desc(), ResultModel.id)
        )
        if purposes is not None:
            stmt = stmt.where(TrialModel.purpose.in_(_purposes(purposes)))
        out: list[tuple[TrialRecord, ResultRecord]] = []
        seen: set[str] = set()
        filtered = full_only or succeeded_only or distinct
        page = k if not filtered else max(4 * k, 32)  # pages, so status never loads every row
        offset = 0
        with self._session(write=False) as s:
            while len(out) < k:
                rows = s.execute(stmt.limit(page).offset(offset)).all()
                for t, r in rows:
                    m = r.metrics or {}
                    if len(out) < k and not (full_only and m.get("truncated")) and not (
                            succeeded_only and m.get("bad_pattern")) and not (
                            distinct and t.pattern_hash in seen):
                        seen.add(t.pattern_hash)
                        out.append((convert.trial_record(t), convert.result_record(r)))
                if len(rows) < page:
                    break
                offset += page
        return out

    def counts(self, search_id: int, purposes: Collection[str] | None = None) -> dict[str, int]:
        """Return the number of trials in each state; every state of ``TRIAL_STATES`` is a key.
        ``purposes``: count only trials with one of these purposes (None: all)."""
        stmt = (
            select(TrialModel.state, func.count())
            .where(TrialModel.search_id == search_id)
            .group_by(TrialModel.state)
        )
        if purposes is not None:
            stmt = stmt.where(TrialModel.purpose.in_(_purposes(purposes)))
        out = dict.fromkeys(TRIAL_STATES, 0)
        with self._session(write=False) as s:
            for state, n in s.execute(stmt):
                out[state] = n
        return out

    def bad_patterns(self, search_id: int) -> tuple[int, str | None]:
        """Return ``(count, last error)`` of the bad-pattern results (``metrics["bad_pattern"]``):
        trials that are ``done`` with the failure reward because their child failed."""
        flag = ResultModel.metrics["bad_pattern"].as_float() == 1.0
        count = select(func.count()).select_from(ResultModel).where(
            ResultModel.search_id == search_id, flag)
        last = (select(TrialModel.error).join(ResultModel, ResultModel.trial_id == TrialModel.id)
                .where(ResultModel.search_id == search_id, flag)
                .order_by(ResultModel.id.desc()).limit(1))
        with self._session(write=False) as s:
            return int(s.execute(count).scalar_one()), s.execute(last).scalar()

    def reward_series(self, search_id: int) -> list[tuple[int, float]]:
        """Return ``(trial_id, reward)`` of every result with a reward, in finish order."""
        stmt = (
            select(ResultModel.trial_id, ResultModel.reward)
            .where(ResultModel.search_id == search_id, ResultModel.reward.is_not(None))
            .order_by(ResultModel.id)
        )
        with self._session(write=False) as s:
            return [(t, r) for t, r in s.execute(stmt) if r is not None]

    def pattern_runs(
        self, search_id: int, pattern_hashes: Iterable[str]
    ) -> list[tuple[TrialRecord, ResultRecord | None]]:
        """Return every trial of ``search_id`` whose ``pattern_hash`` is one of
        ``pattern_hashes``, with its result (None while it has none), in trial id order:
        all runs of those patterns, on every seed and for every purpose (the re-check)."""
        hashes = sorted(set(pattern_hashes))
        if not hashes:
            return []
        out: list[tuple[TrialRecord, ResultRecord | None]] = []
        with self._session(write=False) as s:
            for i in range(0, len(hashes), _CHUNK):
                stmt = (
                    select(TrialModel, ResultModel)
                    .outerjoin(ResultModel, ResultModel.trial_id == TrialModel.id)
                    .where(TrialModel.search_id == search_id,
                           TrialModel.pattern_hash.in_(hashes[i : i + _CHUNK]))
                )
                out += [(convert.trial_record(t), None if r is None else convert.result_record(r))
                        for t, r in s.execute(stmt)]
        out.sort(key=lambda tr: tr[0].id)
        return out
