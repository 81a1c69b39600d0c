"""Rung methods of :class:`~adsearch.store.Store`: the successive-halving tables.

A child records its value at a rung and learns whether it goes on in one write
transaction. On PostgreSQL the transaction first locks the search's row (``SELECT ... FOR
UPDATE``), on SQLite the write transaction is ``BEGIN IMMEDIATE``: either way two children
reaching a rung at once are decided one after the other, each seeing the other's value.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, delete, func, select

from adsearch.errors import StoreError
from adsearch.rungs import EPS, Decide
from adsearch.store.base import StoreCore
from adsearch.store.models import EventModel, RungModel, SearchModel, TrialModel
from adsearch.store.records import utcnow
from adsearch.store.retry import retrying_methods


@dataclass(frozen=True)
class RungDecision:
    """What :meth:`RungMethods.record_rung` decided for one child at one rung.

    ``promoted`` is None at a rung with nothing to decide (the last one); ``threshold`` is
    the value a child needed (None while the rung held too few values to stop anyone);
    ``count`` how many trials' values the rung holds, this one's included.
    """

    rung: float
    value: float
    promoted: bool | None
    threshold: float | None
    count: int


@dataclass(frozen=True)
class RungRow:
    """One stored rung value (see :class:`~adsearch.store.models.RungModel`)."""

    trial_id: int
    rung: float
    epoch: float
    value: float
    promoted: bool | None
    threshold: float | None


@retrying_methods  # a lost connection costs a retry (record_rung replaces its own row)
class RungMethods(StoreCore):
    """Rung half of the store."""

    def record_rung(self, trial_id: int, rung: float, epoch: float, value: float,
                    decide: Decide | None) -> RungDecision:
        """Store ``trial_id``'s ``value`` at ``rung`` (evaluated at ``epoch``) and decide.

        ``decide`` gets every value recorded at the rung so far, this one included, and
        returns ``(promoted, threshold)``; None records without deciding (the last rung).
        A rung in the search config's ``rungs_off`` (see :meth:`turn_rung_off`) promotes
        every child, with threshold None. A second record of the same trial and rung (a
        retried child) replaces the first.

        Raises:
            StoreError: unknown trial, or a database error.
        """
        with self._session() as s:
            trial = s.get(TrialModel, trial_id)
            if trial is None:
                raise StoreError(f"record_rung: no trial with id {trial_id}")
            sid = trial.search_id
            config = s.execute(select(SearchModel.config).where(SearchModel.id == sid)
                               .with_for_update()).scalar_one()
            if decide is not None and _is_off(config, rung):  # pruning stopped at this rung
                decide = _promote_all
            s.execute(delete(RungModel).where(RungModel.trial_id == trial_id,
                                              RungModel.rung > rung - EPS, RungModel.rung < rung + EPS))
            others = s.scalars(select(RungModel.value).where(
                RungModel.search_id == sid, RungModel.rung > rung - EPS,
                RungModel.rung < rung + EPS)).all()
            values = [float(v) for v in others] + [float(value)]
            promoted, threshold = decide(values, float(value)) if decide else (None, None)
            s.add(RungModel(trial_id=trial_id, rung=float(rung), search_id=sid, epoch=float(epoch),
                            value=float(value), promoted=promoted, threshold=threshold,
                            recorded_at=time.time()))
        return RungDecision(rung=float(rung), value=float(value), promoted=promoted,
                            threshold=threshold, count=len(values))

    def turn_rung_off(self, search_id: int, rung: float, message: str,
                      data: dict[str, Any]) -> bool:
        """Stop pruning at ``rung`` for good: add it to the search config's ``rungs_off``
        and log a ``rung.off`` event (``message``, ``data``), in one transaction that holds
        the search row's lock (as :meth:`record_rung` does), so every later decision at the
        rung promotes. Returns False (and writes nothing) when the rung was off already.

        Raises:
            StoreError: unknown search, or a database error.
        """
        with self._session() as s:
            row = s.execute(select(SearchModel).where(SearchModel.id == search_id)
                            .with_for_update()).scalar_one_or_none()
            if row is None:
                raise StoreError(f"turn_rung_off: no search with id {search_id}")
            config = dict(row.config or {})
            if _is_off(config, rung):
                return False
            config["rungs_off"] = sorted([*(config.get("rungs_off") or []), float(rung)])
            row.config = config
            row.updated_at = utcnow()
            s.add(EventModel(search_id=search_id, at=utcnow(), kind="rung.off", message=message,
                             data=dict(data)))
        return True

    def rung_rows(self, search_id: int) -> list[RungRow]:
        """Every rung value of a search, by rung then trial id."""
        with self._session(write=False) as s:
            rows = s.scalars(select(RungModel).where(RungModel.search_id == search_id)
                             .order_by(RungModel.rung, RungModel.trial_id)).all()
            return [RungRow(r.trial_id, r.rung, r.epoch, r.value, r.promoted, r.threshold)
                    for r in rows]

    def rung_summary(self, search_id: int) -> list[dict[str, float | int | None]]:
        """Per rung (ascending): ``rung`` (epochs), ``reached`` (trials with a value there),
        ``promoted`` / ``stopped`` (decisions taken), ``threshold`` (the one the latest
        decision used; None before a rung can stop anyone) and ``best`` (highest value).
        One grouped query and one indexed row per rung."""
        with self._session(write=False) as s:
            groups = s.execute(
                select(RungModel.rung, func.count(), func.max(RungModel.value),
                       func.sum(case((RungModel.promoted.is_(True), 1), else_=0)),
                       func.sum(case((RungModel.promoted.is_(False), 1), else_=0)),
                       func.max(RungModel.recorded_at))
                .where(RungModel.search_id == search_id)
                .group_by(RungModel.rung).order_by(RungModel.rung)).all()
            latest = {float(r): s.scalar(
                select(RungModel.threshold)
                .where(RungModel.search_id == search_id, RungModel.rung == r,
                       RungModel.promoted.is_not(None))
                .order_by(RungModel.recorded_at.desc()).limit(1)) for r, *_ in groups}
        return [{"rung": float(r), "reached": int(n), "best": float(b),
                 "promoted": int(p or 0), "stopped": int(x or 0),
                 "threshold": latest.get(float(r))} for r, n, b, p, x, _ in groups]


def _is_off(config: dict[str, Any] | None, rung: float) -> bool:
    """Whether ``rung`` is in a search config's ``rungs_off``."""
    off = (config or {}).get("rungs_off") or []
    return any(abs(float(r) - rung) < EPS for r in off)


def _promote_all(values: list[float], own: float) -> tuple[bool, float | None]:
    """The rule at a rung whose pruning was stopped: everyone goes on."""
    return True, None
