"""Rungs checked against the full budget while a search runs (issue 19 §3, **ours**).

No scheduler we compare with (Optuna's pruners, Ray Tune's ASHA, syne-tune, DEHB) checks
whether its low fidelities rank configurations as the full budget does; on the round-3 LM
they ranked regularizers backwards. Here, for every decision rung ``r`` the search's own
trials that have a value at ``r`` *and* at the top rung (the full budget) are paired, and
the rank agreement of the two is Spearman's rho (Kendall's tau-b beside it), with the
count ``n`` of pairs. :func:`check_rungs` (the daemon calls it every few seconds) stops
pruning at a rung once ``n >= rung_check_pairs`` and ``rho < rung_check_min``: the store
adds the rung to the search config's ``rungs_off`` and logs ``rung.off`` in one
transaction, and every child reaching the rung after that is promoted. A rung that was
turned off stays off (its later pairs are no longer a filtered sample, but re-enabling it
on them would let one lucky stretch prune the search again).

What the pairs are: under ASHA only promoted children reach the full budget, so most pairs
come from the top ``1/eta`` at the rung (plus every child before the rung held
``min_trials`` values, and every child once it is off). Rho over a top slice is lower than
over everyone (range restriction), so a low value may mean "the rung cannot tell its best
children apart", not only "it ranks backwards"; either way the rung's cuts are not the full
budget's, and pruning there stops. ``adsearch calibrate`` measures it before a search.

No torch: ``status`` calls :func:`rung_agreement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from adsearch.rank import kendall_tau_b, spearman
from adsearch.rungs import EPS  # rungs closer than this are one rung

if TYPE_CHECKING:
    from adsearch.daemon.config import SearchConfig
    from adsearch.store.contract import StoreContract


@dataclass(frozen=True)
class RungAgreement:
    """Agreement of one decision rung with the full budget.

    Attributes:
        rung: the rung, in epochs.
        n: trials with a value at this rung and at the full budget.
        spearman: Spearman's rho of those pairs (None: fewer than 2, or a side all tied).
        kendall: Kendall's tau-b of the same pairs.
        off: pruning at this rung was stopped (it is in the config's ``rungs_off``).
    """

    rung: float
    n: int
    spearman: float | None
    kendall: float | None
    off: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agreement(rows: Sequence[Any], rungs: Sequence[float], top: float,
              off: Sequence[float] = ()) -> list[RungAgreement]:
    """Per decision rung in ``rungs``: the agreement of its values with the values at
    ``top`` of the same trials. ``rows``: :class:`~adsearch.store.rungs.RungRow` (or anything
    with ``trial_id``, ``rung`` and ``value``)."""
    full = {r.trial_id: float(r.value) for r in rows if abs(float(r.rung) - top) < EPS}
    out = []
    for rung in rungs:
        pairs = [(float(r.value), full[r.trial_id]) for r in rows
                 if abs(float(r.rung) - rung) < EPS and r.trial_id in full]
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        out.append(RungAgreement(float(rung), len(pairs), spearman(xs, ys), kendall_tau_b(xs, ys),
                                 any(abs(float(o) - rung) < EPS for o in off)))
    return out


def rung_agreement(store: StoreContract, search_id: int,
                   cfg: SearchConfig) -> list[RungAgreement] | None:
    """The agreement of every decision rung of the search (None: no early stopping, or a
    full budget that is not a number of epochs)."""
    sched = cfg.schedule()
    if sched is None or sched.top is None or not sched.rungs:
        return None
    return agreement(store.rung_rows(search_id), sched.rungs, float(sched.top), cfg.rungs_off)


def due_off(agreements: Sequence[RungAgreement], cfg: SearchConfig) -> list[RungAgreement]:
    """The rungs to turn off now: on, with enough pairs and a Spearman below the minimum."""
    if cfg.rung_check_min is None:
        return []
    return [a for a in agreements if not a.off and a.n >= cfg.rung_check_pairs
            and a.spearman is not None and a.spearman < cfg.rung_check_min]


def check_rungs(store: StoreContract, search_id: int, cfg: SearchConfig) -> list[RungAgreement]:
    """Turn off pruning at every rung :func:`due_off` names (store and event log, one
    transaction each); return those turned off by this call."""
    found = rung_agreement(store, search_id, cfg)
    if not found:
        return []
    sched = cfg.schedule()
    assert sched is not None  # rung_agreement found rungs: the schedule has them
    done = []
    for a in due_off(found, cfg):
        message = (f"rung {a.rung:g} epochs: pruning stopped; its ranking disagrees with the "
                   f"full budget ({sched.top:g} epochs): Spearman {a.spearman:+.2f} over {a.n} "
                   f"trials that reached both, below {cfg.rung_check_min:g}; every child there "
                   "goes on from now")
        data = {**a.to_dict(), "off": True, "top": sched.top, "min": cfg.rung_check_min,
                "pairs": cfg.rung_check_pairs}
        if store.turn_rung_off(search_id, a.rung, message, data):
            done.append(a)
    return done
