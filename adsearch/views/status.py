"""What ``adsearch status`` shows: a JSON-able snapshot and its Rich rendering. No torch.

The snapshot combines the store (opened read-only: it never blocks the daemon) with the
daemon's ``daemon-state.json`` (slots, wait reasons, controller statistics), and says why
work waits, including when no daemon runs at all. Its cost does not grow with the number
of trials: counts, the running trials, the top-k and the latest events are indexed queries,
and the reward trend comes from the controller's update events (one point per batch), not
from the full reward series (``adsearch plot`` draws that).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from adsearch.command import runnable
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.recheck import SEARCH_PURPOSES
from adsearch.daemon.rundir import RunDir, shown_state
from adsearch.errors import AdsearchError

SPARK = "▁▂▃▄▅▆▇█"
#: Events status reads: the trend covers the controller updates among the latest of them.
EVENT_WINDOW = 500


def sparkline(values: list[float], width: int = 40) -> str:
    """A one-line chart of ``values`` (the last ``width`` of them)."""
    vals = [v for v in values if v is not None][-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))]
                   for v in vals)


def update_trend(events: list[Any]) -> dict[str, list[Any]]:
    """Batch means and best-so-far from the controller's update events (one point per
    controller batch), so that status never reads the whole reward series."""
    means: list[float] = []
    best: list[float | None] = []
    versions: list[int] = []
    for ev in events:
        if ev.kind == "controller.update":
            means.append(float(ev.data.get("mean_reward", 0.0)))
            b = ev.data.get("best_so_far")  # full-budget results only (None: none yet)
            prev = best[-1] if best else None
            best.append(prev if b is None else float(b) if prev is None else max(float(b), prev))
            versions.append(int(ev.data.get("version", 0)))
    return {"batch_mean": means, "best_so_far": best, "version": versions}


def trend(rewards: list[float], batch_size: int,
          full: list[bool] | None = None) -> dict[str, list[float]]:
    """Batch means (consecutive groups of ``batch_size`` in finish order) and best-so-far
    at the end of each batch, over the rewards flagged ``full`` only (full-budget results,
    not children stopped at a rung nor bad patterns; NaN until there is one). ``full`` None:
    every reward counts."""
    flags = [True] * len(rewards) if full is None else list(full)
    means, best, top = [], [], float("-inf")
    for i in range(0, len(rewards), batch_size):
        chunk = rewards[i:i + batch_size]
        means.append(sum(chunk) / len(chunk))
        top = max([top] + [r for r, f in zip(chunk, flags[i:i + batch_size], strict=True) if f])
        best.append(top if top > float("-inf") else float("nan"))
    return {"batch_mean": means, "best_so_far": best}


def _age(dt: datetime | None, now: float) -> float | None:
    if dt is None:
        return None
    return now - dt.replace(tzinfo=dt.tzinfo or timezone.utc).timestamp()


def budget_progress(cfg: SearchConfig, counts: dict[str, int], elapsed_s: float | None,
                    state: str) -> dict[str, Any]:
    """How far the budget is spent. ``counts`` are the search's own trials (re-check trials
    cost no budget). ``budget_trials`` counts *drawn* trials (the daemon
    stops drawing at the budget and finishes what it drew); ``finished`` are those that
    ended (done, failed or stale). ``trials_per_hour`` is finished trials per hour of daemon
    run time; ``eta_s`` the seconds until the budget is spent at that rate (the sooner of the
    two budgets), None without a budget, a rate, or once the search ended. ``elapsed_s``
    None (no run directory, which holds the run time): no rate, no time-budget estimate.
    The re-check that follows the budget is estimated by :func:`recheck_progress`."""
    drawn = sum(counts.values())
    finished = sum(counts.get(k, 0) for k in ("done", "failed", "stale"))
    rate = finished / (elapsed_s / 3600) if elapsed_s and finished else None
    etas = []
    if cfg.budget_trials is not None and rate:
        etas.append(max(0, cfg.budget_trials - finished) / rate * 3600)
    if cfg.budget_minutes is not None and elapsed_s is not None:
        etas.append(max(0.0, cfg.budget_minutes * 60 - elapsed_s))
    ended = state in ("finished", "failed")
    return {"counts": "drawn", "drawn": drawn, "finished": finished,
            "budget_trials": cfg.budget_trials, "budget_minutes": cfg.budget_minutes,
            "elapsed_s": elapsed_s, "trials_per_hour": rate,
            "eta_s": None if ended or not etas else min(etas)}


def recheck_progress(cfg: SearchConfig, store: Any, search_id: int, state: str,
                     top: list[Any], parallel: int, budget_eta_s: float | None) -> dict[str, Any]:
    """The re-check stage (:mod:`adsearch.daemon.recheck`) as status shows it.

    ``ended``/``total``: re-check trials that ended / exist. ``left``: children still to run,
    the planned ``recheck_top * recheck_seeds`` (an upper bound) before the stage began.
    ``eta_s``: those children in waves of ``parallel`` at the mean length of the full-budget
    children in ``top``; ``done_eta_s``: the budget's ETA plus that, the time until the
    search finishes. ``winner``: the best re-checked pattern on its mean (None before)."""
    from adsearch.daemon import recheck

    ended, total = recheck.progress(store, search_id)
    enabled = cfg.rechecks()
    ends = state in ("finished", "failed")
    if total and ended < total:
        stage = f"re-check: {ended} of {total} done"
    elif ends:
        stage = state + (f" (re-check: {ended} of {total} done)" if total else
                         " (no re-check: --no-recheck)" if not enabled and cfg.verify is None
                         else "")
    else:
        stage = "search"
    if ends or not enabled:
        left = 0
    elif stage == "search":
        left = cfg.recheck_top * cfg.recheck_seeds + total - ended
    else:
        left = total - ended
    secs = [float(r[1].seconds) for r in top if r[1].seconds]
    child_s = sum(secs) / len(secs) if secs else None
    eta = -(-left // max(1, parallel)) * child_s if child_s is not None else None
    winner = None
    if total:
        best = recheck.ranking(store, search_id, cfg, 1).patterns
        if best and best[0].rechecked:
            winner = {"trial_id": best[0].trial_id, "mean": best[0].mean, "n": best[0].n,
                      "reward": best[0].reward}
    return {"enabled": enabled, "top": cfg.recheck_top, "seeds": cfg.recheck_seeds,
            "stage": stage, "ended": ended, "total": total, "left": left,
            "eta_s": None if ends else eta,
            "done_eta_s": (None if ends or eta is None or (budget_eta_s is None
                                                          and stage == "search")
                           else (budget_eta_s or 0.0) + eta),
            "winner": winner}


def entropy_max(space_name: str) -> float | None:
    """Entropy (nats) of the uniform policy over ``space_name``: the sum over tokens of
    log(choices), what the random controller reports and the transformer starts near."""
    import math

    from adsearch.patterns import SearchSpace

    try:
        return sum(math.log(n) for n in SearchSpace.from_name(space_name).choices())
    except AdsearchError:  # a space this adsearch does not know (an old store): no figure
        return None


def _remote_leases(store: Any, search_id: int, cfg: SearchConfig, now: float) -> dict[int, Any]:
    """Trial id -> queue lease, for trials that an ``adsearch worker`` holds with a live
    heartbeat (its owner names the host and pid: ``worker-HOST-PID``). Searches without a
    database queue have none."""
    from adsearch.queue.dbqueue import DbQueue

    return {le.trial_id: le for le in DbQueue(store, search_id).leases()
            if le.owner.startswith("worker-") and now - le.heartbeat_at < cfg.lease_seconds}


#: What ``status`` says when it read the store alone (``--store URL --search NAME``).
NO_RUN_DIR = "no run directory: daemon state unknown"


def build_status(run: RunDir | None, store: Any, search: Any, *, top_k: int = 5) -> dict[str, Any]:
    """The status snapshot of one search (see ``adsearch status --json``). ``run`` None: the
    search was read from its store alone, so the daemon's pid, slots and run time (which only
    the run directory holds) are unknown: ``daemon.alive`` and ``elapsed_s`` are None."""
    now = time.time()
    cfg = SearchConfig.from_dict(search.config)
    counts = store.counts(search.id)
    events = store.events(search.id, limit=EVENT_WINDOW)
    pid = run.daemon_pid() if run is not None else None
    state = (run.read_state() if run is not None else None) or {}
    live = pid is not None and state.get("pid") == pid
    # a daemon that runs this search from another run directory (the store's daemon lease)
    elsewhere = _elsewhere(run, store, search, cfg) if not live else None
    running = store.trials(search.id, states=["running"])
    remote = _remote_leases(store, search.id, cfg, now) if running else {}
    # the search's own trials; a re-check run shows as its pattern's mean and n
    top = store.top_trials(search.id, top_k, full_only=True, succeeded_only=True,
                           purposes=SEARCH_PURPOSES)
    n_bad, last_bad = store.bad_patterns(search.id)
    ctrl = dict(state.get("controller") or {}) if live else {}
    if not ctrl:
        for ev in reversed(events):
            if ev.kind == "controller.update":
                ctrl = {"kind": cfg.controller, **ev.data}
                ctrl.pop("trial_ids", None)
                ctrl.pop("rewards", None)  # in "updates"
                break
    waiting = list(state.get("waiting") or []) if live else []
    if run is None:  # the header says NO_RUN_DIR; a search the store calls active gets why
        if search.state in ("running", "stopping"):
            waiting.append(f"the store says {search.state}, but with no run directory whether "
                           f"a daemon runs it is unknown (`adsearch status {search.name}` on "
                           "the daemon's host says)")
    elif elsewhere is not None:
        waiting.append(f"the daemon of this search runs from another run directory: pid "
                       f"{elsewhere.pid} on {elsewhere.host}, {elsewhere.run_dir} (`adsearch "
                       f"status {search.name} --run-dir {elsewhere.run_dir}` shows its slots)")
    elif not live:
        on_workers = sum(1 for t in running if t.id in remote)
        pending = counts.get("queued", 0) + counts.get("running", 0) - on_workers
        if search.state in ("running", "stopping"):
            waiting.append(f"no daemon is running (it crashed or was killed): {pending} trial(s) "
                           f"wait; continue with `adsearch resume {search.name}`")
        if on_workers:
            waiting.append(f"{on_workers} trial(s) run on live workers; `adsearch resume` "
                           "leaves them to finish there")
        elif search.state in ("stopped", "created", "failed") and pending:
            waiting.append(f"search {search.state}: {pending} trial(s) wait for "
                           f"`adsearch resume {search.name}`")
    if search.state == "failed" and not live:
        for ev in reversed(events):
            if ev.kind in ("daemon.config_error", "daemon.code_error", "daemon.breaker",
                           "worker.code_error", "daemon.failed"):
                # the daemon's exit event holds its whole reason (not "daemon pid N exited")
                why = (ev.data or {}).get("fatal") if ev.kind == "daemon.failed" else None
                waiting.insert(0, f"search failed: {why or ev.message}")
                break
    notes = ctrl.pop("notes", None) if live else None
    if notes is None:  # how the latest daemon restored its controller (fallback, fresh)
        start = next((ev for ev in reversed(events) if ev.kind == "daemon.start"), None)
        notes = list((start.data or {}).get("controller_notes") or []) if start else []
    slot_info = {s.get("index"): s for s in state.get("slots", [])} if live else {}
    tr = update_trend(events)
    best = top[0] if top else None
    if best is not None and best[1].reward is not None and tr["best_so_far"]:
        # the trend has one point per controller update; trials finished since the last
        # update are in the top table already, so the last point is the best full-budget
        # result now (events written before issue 19 may hold a stopped child's rung value)
        tr["best_so_far"][-1] = float(best[1].reward)
    elapsed = run.elapsed() if run is not None else None
    own = store.counts(search.id, purposes=SEARCH_PURPOSES)
    budget = budget_progress(cfg, own, elapsed, search.state)
    parallel = len(state.get("slots") or []) if live else 0
    parallel = parallel or cfg.workers or len(cfg.gpus or []) * cfg.slots_per_gpu or 1
    rc = recheck_progress(cfg, store, search.id, search.state, top, parallel, budget["eta_s"])
    checked = _rechecked(store, search.id, top) if rc["total"] else {}
    return {
        "search": search.name,
        "state": (shown_state(search.state, pid is not None or elsewhere is not None)
                  if run is not None else search.state),
        "stored_state": search.state,
        "run_dir": str(run.path) if run is not None else None,
        "store": store.url,  # password hidden
        "daemon": {"pid": pid, "alive": pid is not None if run is not None else None,
                   "slot_source": state.get("slot_source") if live else None},
        "config": {k: getattr(cfg, k) for k in ("task", "space", "controller", "batch_size",
                                                 "budget_trials", "budget_minutes", "seed")},
        "counts": counts,
        "trials": sum(counts.values()),
        "bad_patterns": {"count": n_bad, "last_error": last_bad},
        **_children(cfg, store, search.id),
        "controller_notes": notes,
        "elapsed_s": elapsed,
        "budget": budget,
        "stage": rc["stage"],
        "recheck": rc,
        "entropy_uniform": entropy_max(cfg.space) if cfg.space else None,
        "slots": [
            {**s, "elapsed_s": (now - s["started_at"]) if s.get("started_at") else None}
            for s in state.get("slots", [])
        ] if live else [],
        "running": [
            {"trial_id": t.id, "slot": t.slot,
             "slot_name": (f"{remote[t.id].owner}/{remote[t.id].slot}" if t.id in remote
                           else (slot_info.get(t.slot) or {}).get("name")),
             "worker": remote[t.id].owner if t.id in remote else None, "pid": t.pid,
             "attempts": t.attempts, "elapsed_s": _age(t.started_at, now)}
            for t in running
        ],
        "top": [
            {"trial_id": t.id, "reward": r.reward, "seconds": r.seconds,
             "controller_version": t.controller_version, "pattern": t.pattern,
             "bad_pattern": bool((r.metrics or {}).get("bad_pattern")),
             "recheck": checked.get(t.pattern_hash), "purpose": t.purpose}
            for t, r in top
        ],  # bad patterns never appear here: their reward was earned by failing
        "best": {"trial_id": best[0].id, "reward": best[1].reward} if best else None,
        "trend": tr,
        "controller": ctrl,
        "waiting": waiting,
        "scheduling": state.get("scheduling") if live else None,
        "rungs": _rungs(cfg, store, search.id),
        "updates": controller_updates(store, search.id),
    }


def _children(cfg: SearchConfig, store: Any, search_id: int) -> dict[str, Any]:
    """Issue 19 §4 (adsearch.daemon.dedup): ``child_seed``, which seed the children train
    with (``{"mode": "shared", "value": S}``: every child ``--child-seed S``;
    ``{"mode": "per-trial", "from_seed": S}``: each its own, drawn from the search seed;
    ``{"mode": "planned"}``: a verify search's planned seeds); ``cache_hits``, trials that
    reused a stored result with no child; ``refused``, patterns refused by the drop cap
    ``max_drop``, with no child either."""
    if cfg.controller == "fixed":
        seed: dict[str, Any] = {"mode": "planned"}
    elif cfg.child_seed is None:
        seed = {"mode": "per-trial", "from_seed": cfg.seed}
    else:
        seed = {"mode": "shared", "value": cfg.child_seed}
    counts = store.dedup_counts(search_id)
    return {"child_seed": seed, "cache_hits": counts["cache_hits"],
            "refused": counts["refused"], "max_drop": cfg.max_drop}


def _children_text(snap: dict[str, Any]) -> str:
    """One status line: the seed mode, the cache hits and the refused patterns."""
    seed = snap.get("child_seed") or {}
    mode = seed.get("mode")
    if mode == "shared":
        what = f"every child trains with seed {seed.get('value')} (--child-seed)"
    elif mode == "per-trial":
        what = f"each child its own seed, drawn from search seed {seed.get('from_seed')}"
    else:
        what = "seeds planned by verify"
    return (f"children: {what}; {snap.get('cache_hits', 0)} cache hit(s) (a stored result of "
            f"the same pattern and seed reused, no child); {snap.get('refused', 0)} refused by "
            f"the drop cap {snap.get('max_drop', 0):.0%} (no child)")


#: Controller updates ``status --json`` lists (the latest), with the rewards of each batch.
UPDATES_SHOWN = 200


def controller_updates(store: Any, search_id: int) -> list[dict[str, Any]]:
    """The latest :data:`UPDATES_SHOWN` controller updates, oldest first: ``version``,
    ``trial_ids`` and ``rewards`` (aligned: the reward the controller learned from for each
    trial, adsearch.reward), ``mean``, ``baseline``, ``entropy`` and ``adv_scale`` (what the
    advantages were divided by). Updates logged before issue 19 have ``rewards`` None."""
    out = []
    for ev in store.events(search_id, limit=UPDATES_SHOWN, kinds=["controller.update"]):
        d = ev.data or {}
        out.append({"version": d.get("version"), "trial_ids": list(d.get("trial_ids") or []),
                    "rewards": d.get("rewards"), "mean": d.get("mean_reward"),
                    "baseline": d.get("baseline"), "entropy": d.get("entropy"),
                    "adv_scale": d.get("adv_scale")})
    return out


def updates_text(updates: list[dict[str, Any]]) -> str:
    """Status lines: the learned rewards of the last batch, and how many batches had none
    of their rewards differ (a controller learns nothing from such a batch)."""
    known = [u for u in updates if u.get("rewards")]
    if not known:
        return "learned rewards: not recorded by the updates shown (written before issue 19)"
    last = known[-1]
    rs = [float(r) for r in last["rewards"]]
    flat = sum(1 for u in known if len(u["rewards"]) > 1 and max(u["rewards"]) == min(u["rewards"]))
    return (f"learned rewards of the last batch (v{last['version']}): "
            f"{' '.join(f'{r:.4f}' for r in rs)}  (spread {max(rs) - min(rs):.4f}); "
            f"batches with no spread: {flat} of {len(known)}")


def _rechecked(store: Any, search_id: int, top: list[Any]) -> dict[str, dict[str, Any]]:
    """pattern hash -> ``{"mean", "n", "seeds"}`` for the top rows whose pattern has a
    re-check result (the mean is over every full-budget run of the pattern)."""
    from adsearch.daemon.recheck import scores

    out = {}
    for h, s in scores(store, search_id, {t.pattern_hash for t, _ in top}).items():
        if s.rechecked:
            out[h] = {"mean": s.mean, "n": s.n, "seeds": [r.seed for r in s.runs],
                      "pending": s.pending}
    return out


def _elsewhere(run: RunDir | None, store: Any, search: Any, cfg: SearchConfig) -> Any:
    """The live daemon lease of a search the store calls active when this run directory has
    no live daemon: the search runs from another directory (a copy of this one, say)."""
    if run is None or search.state not in ("running", "stopping"):
        return None
    from adsearch.daemon.lease import live_holder

    holder = live_holder(store, search.id, cfg.lease_seconds)
    return holder if holder is not None and holder.run_dir != str(run.path) else None


def _rungs(cfg: SearchConfig, store: Any, search_id: int) -> dict[str, Any] | None:
    """Early stopping: the schedule and, per rung, trials that reached it, the threshold the
    latest decision there used and how many were promoted (None when the search has none)."""
    from adsearch.daemon.agreement import rung_agreement

    sched = cfg.schedule()
    cal = cfg.calibration
    calibration = None if cal is None else {"file": cal.get("file"),
                                            "first_rung": cal.get("first_rung"),
                                            "recommended_rungs": cal.get("recommended_rungs")}
    if sched is None:
        if cal is None:
            return None
        return {"scheduler": None, "calibration": calibration, "rungs": [],
                "note": f"no early stopping: calibration {cal.get('file')} recommends none "
                        f"(no epoch before the full budget of {cal.get('full_epochs')} ranks as "
                        "it does); every child trains the full budget"}
    rows = {round(r["rung"], 6): r for r in store.rung_summary(search_id)}
    agree = {round(a.rung, 6): a for a in rung_agreement(store, search_id, cfg) or []}
    points = [*sched.rungs, *([sched.top] if sched.top is not None else [])]
    out = []
    for rung in points:
        r = rows.get(round(rung, 6), {})
        a = agree.get(round(rung, 6))
        out.append({"rung": rung, "top": rung == sched.top, "reached": r.get("reached", 0),
                    "threshold": r.get("threshold"), "promoted": r.get("promoted", 0),
                    "stopped": r.get("stopped", 0), "best": r.get("best"),
                    # rank agreement with the full budget (adsearch.daemon.agreement)
                    "agreement": None if a is None else {"spearman": a.spearman,
                                                         "kendall": a.kendall, "n": a.n},
                    "off": bool(a and a.off)})
    kind = cfg.scheduler or "one rung (--prune-at-epoch)"
    return {"scheduler": kind, "keep": sched.keep, "min_trials": sched.min_trials, "rungs": out,
            "check": {"min": cfg.rung_check_min, "pairs": cfg.rung_check_pairs},
            "rungs_off": list(cfg.rungs_off), "calibration": calibration}


def _agreement_text(r: dict[str, Any]) -> str:
    """A rung's rank agreement with the full budget: ``Spearman +0.52 (n=9)``, and
    ``pruning off`` once the daemon stopped pruning there."""
    a = r.get("agreement")
    if r.get("top") or a is None:
        return "-"
    rho = "-" if a["spearman"] is None else f"{a['spearman']:+.2f}"
    return f"Spearman {rho} (n={a['n']})" + ("; pruning off" if r.get("off") else "")


def _rung_notes(rungs: dict[str, Any]) -> list[Any]:
    """Lines under the rung table: where the rungs came from, and rungs turned off."""
    from rich.text import Text

    out: list[Any] = []
    cal = rungs.get("calibration")
    if cal:
        out.append(Text(f"rungs from calibration {cal.get('file')} (first rung "
                        f"{cal.get('first_rung')})"))
    check = rungs.get("check") or {}
    for r in rungs["rungs"]:
        if r.get("off"):
            a = r.get("agreement") or {}
            rho = "-" if a.get("spearman") is None else f"{a['spearman']:+.2f}"
            out.append(Text(f"rung {r['rung']:g}: pruning stopped: its ranking disagrees with "
                            f"the full budget's (Spearman {rho} over {a.get('n')} trials, "
                            f"minimum {check.get('min')}); every child there goes on",
                            style="yellow"))
    if check.get("min") is None:
        out.append(Text("rung check off (--no-rung-check): rungs prune whatever their "
                        "agreement with the full budget"))
    return out


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    v = max(0.0, v)
    if v < 120:
        return f"{v:.0f}s"
    if v < 7200:
        return f"{v / 60:.1f}m"
    return f"{v / 3600:.1f}h"


def _pattern_text(pattern: list[dict[str, Any]]) -> str:
    parts = []
    for p in pattern:
        if p.get("kind") == "patterns":  # verify: a compared search's pattern, its own space
            parts.append(f"{p.get('space')}: {_pattern_text(list(p.get('patterns') or []))}")
        elif p.get("off"):  # an off site drops nothing: its other fields are inert
            parts.append("off")
        elif "repeat" in p:
            rep = "all" if p.get("repeat") is None else p.get("repeat")
            parts.append(f"{p['size']}/{p['stride']}x{rep} r{p['rotate']}")
        else:
            parts.append(",".join(f"{k}={v}" for k, v in list(p.items())[:3]))
    return "  ".join(parts)


def minutes_budget(elapsed_s: float | None, budget_minutes: float, recheck: bool) -> str:
    """The time budget's words: ``12.3/30 min``; past it, how long the search ran on (the
    children running when it ran out finish, then the re-check) apart from the budget, so
    ``45.5/30.0`` does not read as an overrun of the search."""
    if elapsed_s is None:
        return f"?/{budget_minutes:g} min"
    used = elapsed_s / 60.0
    if used <= budget_minutes:
        return f"{used:.1f}/{budget_minutes:g} min"
    after = "the children running at its end" + (" and the re-check" if recheck else "")
    return (f"{budget_minutes:g}/{budget_minutes:g} min spent, then {used - budget_minutes:.1f} "
            f"min past it ({after}; the budget stops new draws)")


def render_status(snap: dict[str, Any]) -> Any:
    """A Rich renderable of a snapshot: summary, slots, top-k, trend, controller, waits."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    c = snap["counts"]
    cfg = snap["config"]
    alive = snap["daemon"]["alive"]
    daemon = (f"daemon pid {snap['daemon']['pid']}" if alive else
              NO_RUN_DIR if alive is None else "no daemon running")
    b = snap["budget"]
    budget = []
    if cfg["budget_trials"]:
        budget.append(f"{b['drawn']}/{cfg['budget_trials']} trials drawn ({b['finished']} finished)")
    if cfg["budget_minutes"]:
        budget.append(minutes_budget(snap["elapsed_s"], float(cfg["budget_minutes"]),
                                     bool((snap.get("recheck") or {}).get("enabled"))))
    pace = []
    if b["trials_per_hour"]:
        pace.append(f"{b['trials_per_hour']:.1f} trials/hour")
    if b["eta_s"] is not None:
        pace.append(f"budget spent in about {_fmt_s(b['eta_s'])}")
    rc = snap.get("recheck") or {}
    if rc.get("left") and rc.get("eta_s") is not None:
        then = ("" if rc.get("done_eta_s") is None else
                f": search done in about {_fmt_s(rc['done_eta_s'])}")
        pace.append(f"then the re-check, {rc['left']} child(ren) of about "
                    f"{_fmt_s(rc['eta_s'])}{then}")
    head = Text.assemble(
        (f"{snap['search']}", "bold"), f"  [{snap['state']}]  {daemon}  task {cfg['task']} "
        f"({cfg['space']}), controller {cfg['controller']}, batch {cfg['batch_size']}\n",
        f"trials: {c.get('done', 0)} done, {c.get('running', 0)} running, "
        f"{c.get('queued', 0)} queued, {c.get('failed', 0)} failed, {c.get('stale', 0)} stale"
        + (f"   budget: {', '.join(budget)}" if budget else "")
        + (f"\nstage: {snap['stage']}" if snap.get("stage") not in (None, "search") else "")
        + (f"\n{', '.join(pace)}" if pace else ""),
    )
    parts: list[Any] = [head, Text(_children_text(snap))]
    bad = snap["bad_patterns"]
    if bad["count"]:
        last = (bad["last_error"] or "").splitlines()[0][:300] if bad["last_error"] else "?"
        parts.append(Text(f"bad patterns: {bad['count']} (last error: {last})", style="yellow"))
    if snap["running"]:
        title = ("running" if alive else "running (as the store says)" if alive is None else
                 "marked running with no daemon (`resume` requeues those not on a live worker)")
        t = Table(title=title, title_justify="left", expand=False)
        for col in ("trial", "slot", "pid", "attempt", "elapsed"):
            t.add_column(col)
        for r in snap["running"]:
            t.add_row(str(r["trial_id"]), str(r["slot_name"] or r["slot"]), str(r["pid"]),
                      str(r["attempts"]), _fmt_s(r["elapsed_s"]))
        parts.append(t)
    idle = [s["name"] for s in snap["slots"] if not s.get("trial_id")]
    if snap["slots"]:
        parts.append(Text(f"slots: {len(snap['slots'])} ({snap['daemon'].get('slot_source')}); "
                          f"idle: {', '.join(idle) or 'none'}"))
    if snap["top"]:
        t = Table(title=f"top {len(snap['top'])}", title_justify="left")
        checked = any(r.get("recheck") for r in snap["top"])
        cols = ["trial", "reward", *(["re-check mean", "n"] if checked else []), "ctrl v",
                "seconds", "pattern (size/stride x repeat, rotate)"]
        for col in cols:
            t.add_column(col)
        for r in snap["top"]:
            rc_row = r.get("recheck")
            mean = ([f"{rc_row['mean']:.4f}", str(rc_row["n"])] if rc_row else ["-", "1"])
            enq = " (enqueued)" if r.get("purpose") == "enqueued" else ""  # issue 20 §2
            t.add_row(f"{r['trial_id']}{enq}", f"{r['reward']:.4f}", *(mean if checked else []),
                      str(r["controller_version"]), f"{r['seconds']:.1f}",
                      _pattern_text(r["pattern"]))
        parts.append(t)
    win = (snap.get("recheck") or {}).get("winner")
    if win:
        parts.append(Text(f"re-check winner (export --best): trial {win['trial_id']}, mean "
                          f"{win['mean']:.4f} over {win['n']} seeds (its own {win['reward']:.4f})"))
    tr = snap["trend"]
    if tr["batch_mean"]:
        parts.append(Text(
            f"batch mean  {sparkline(tr['batch_mean'])}  last {tr['batch_mean'][-1]:.4f}\n"
            f"best so far {sparkline(tr['best_so_far'])}  " + (
                "none yet (no full-budget result)" if tr["best_so_far"][-1] is None
                else f"{tr['best_so_far'][-1]:.4f} (full-budget results only)")))
    if snap.get("updates"):
        parts.append(Text(updates_text(snap["updates"])))
    ctrl = snap["controller"]
    if ctrl:
        bits = [f"controller {ctrl.get('kind', cfg['controller'])} v{ctrl.get('version', 0)}"]
        if ctrl.get("baseline") is not None:
            bits.append(f"baseline {ctrl['baseline']:.4f}")
        if ctrl.get("kind", cfg["controller"]) == "tpe":  # its 0.0 would read as "settled"
            bits.append("no entropy (TPE keeps density models of good and bad patterns, not "
                        "a policy)")
        elif ctrl.get("entropy") is not None:
            top_h = snap.get("entropy_uniform")
            bits.append(f"entropy {ctrl['entropy']:.3f} nats" + (
                f" of {top_h:.1f} (how unsure the controller is: its policy's entropy summed "
                "over the tokens of one pattern set; the uniform random policy has the maximum, "
                "and it falls as the controller settles)" if top_h else ""))
        parts.append(Text(", ".join(bits)))
    rungs = snap.get("rungs")
    if rungs and rungs.get("scheduler") is None:  # --rungs auto, no rung recommended
        parts.append(Text(rungs.get("note", "no early stopping"), style="yellow"))
    elif rungs:
        t = Table(title=f"rungs ({rungs['scheduler']}: the top {rungs['keep']:.0%} go on, once "
                        f"{rungs['min_trials']} reached a rung)", title_justify="left")
        for col in ("epochs", "reached", "threshold", "promoted", "stopped", "best",
                    "vs full budget"):
            t.add_column(col)
        for r in rungs["rungs"]:
            thr = "full budget" if r["top"] else ("-" if r["threshold"] is None else f"{r['threshold']:.4f}")
            t.add_row(f"{r['rung']:g}", str(r["reached"]), thr,
                      "-" if r["top"] else str(r["promoted"]), "-" if r["top"] else str(r["stopped"]),
                      "-" if r["best"] is None else f"{r['best']:.4f}", _agreement_text(r))
        parts.append(t)
        parts.extend(_rung_notes(rungs))
    for note in snap.get("controller_notes") or []:
        parts.append(Text(f"controller: {note}", style="yellow"))
    for w in snap["waiting"]:
        parts.append(Text(f"waiting: {runnable(w)}", style="yellow"))  # as it runs here
    return Group(*parts)
