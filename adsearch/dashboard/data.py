"""What the dashboard shows, as JSON-able documents; no web code, no torch.

A :class:`Source` finds searches the way the CLI does: the run directories under a runs root
(``--runs DIR``, default ``$ADSEARCH_RUNS`` or ``./runs``), or every search of one store
(``--store URL``, no run directories: daemon state unknown, as ``status --store``). Every
read opens the store **read-only** (:class:`~adsearch.store.Store` with ``readonly=True``:
SQLite ``mode=ro`` and ``query_only``, a read-only transaction on PostgreSQL) for the length
of one request and closes it; nothing here takes the daemon's lock or writes a file.

The documents of ``/api/search/NAME`` and ``/api/search/NAME/trial/ID`` are exactly those of
``adsearch status NAME --json`` and ``adsearch show NAME ID --json`` (docs/cli.md); the
rows of ``/api/searches`` are those of ``adsearch list --json`` with a few more keys. What
the pages add beyond them (the reward series, the latest trials, the event log, masks) is
under ``.../extra``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adsearch.errors import AdsearchError

#: Points of a reward series sent to a page at most (a long search is thinned, keeping
#: every point that raised the best so far).
SERIES_POINTS = 2000
#: Latest trials listed on a search page, latest events in its log.
LATEST_TRIALS = 50
LATEST_EVENTS = 100
#: Lines of a trial's newest log shown on its page.
LOG_TAIL_LINES = 40
#: Top patterns drawn on a search page, and channels drawn per site.
DRAWN_PATTERNS = 3
PANELS = 2
#: Map shape of a site the space does not size (docs/cli.md, ``pattern show``).
DEFAULT_CONV_SHAPE = (32, 32)
DEFAULT_SEQ_SHAPE = (64, 32)


class NotFound(AdsearchError):
    """An unknown search or trial (the dashboard answers 404)."""


class Source:
    """Where the dashboard finds searches: a runs root, or one store URL (not both).

    Args:
        runs: The directory holding run directories (None with ``store_url``).
        store_url: A store URL whose searches are read with no run directory.
    """

    def __init__(self, runs: Path | None = None, store_url: str | None = None) -> None:
        if (runs is None) == (store_url is None):
            raise AdsearchError("give the dashboard a runs directory or a store URL, not both")
        self.runs = None if runs is None else Path(runs)
        self.store_url = store_url

    def describe(self) -> str:
        """Where the searches come from, in words (password hidden)."""
        if self.runs is not None:
            return f"run directories under {self.runs.absolute()}"
        from sqlalchemy.engine import make_url

        return f"the store {make_url(str(self.store_url)).render_as_string(hide_password=True)}"

    # ------------------------------------------------------------------ finding searches
    def names(self) -> list[str]:
        """The searches the dashboard serves, sorted."""
        if self.runs is not None:
            if not self.runs.is_dir():
                return []
            return sorted(p.name for p in self.runs.iterdir() if (p / "search.json").is_file())
        from adsearch.store import Store

        with Store(str(self.store_url), readonly=True) as store:
            return sorted(s.name for s in store.list_searches())

    def require(self, name: str) -> None:
        """Raise :class:`NotFound` (naming the known searches) unless ``name`` is served;
        this also keeps a name from a URL from walking out of the runs root."""
        names = self.names()
        if name not in names:
            raise NotFound(f"no search {name!r} in {self.describe()} (known: "
                           f"{', '.join(names) or 'none'})")

    @contextmanager
    def open(self, name: str) -> Iterator[tuple[Any, Any, Any]]:
        """``(run directory or None, read-only store, search record)`` of search ``name``;
        the store is closed on exit.

        Raises:
            NotFound: No such search here.
            AdsearchError: Its store cannot be read (the message says why).
        """
        from adsearch.store import Store

        self.require(name)
        if self.runs is not None:
            from adsearch.daemon.launch import load_search
            from adsearch.daemon.rundir import RunDir

            run = RunDir(self.runs / name)
            store, search = load_search(run)
        else:
            run = None
            store = Store(str(self.store_url), readonly=True)
            try:
                search = store.get_search(name)
            except AdsearchError:
                store.close()
                raise
        try:
            yield run, store, search
        finally:
            store.close()

    # ------------------------------------------------------------------ documents
    def searches(self) -> list[dict[str, Any]]:
        """``/api/searches``: one row per search, the keys of ``adsearch list --json`` and
        ``space``, ``stored_state``, ``drawn``, ``finished`` (the budget's counts of the
        search's own trials), ``started`` (ISO-8601), ``eta_s``, ``stage``. A search whose
        store cannot be read has ``state`` ``unreadable`` and the message in ``error``."""
        return [self._row(n) for n in self.names()]

    def _row(self, name: str) -> dict[str, Any]:
        from adsearch.daemon.rundir import shown_state
        from adsearch.views.status import build_status

        try:
            with self.open(name) as (run, store, search):
                snap = build_status(run, store, search, top_k=1)
                pid = run.daemon_pid() if run is not None else None
        except AdsearchError as exc:
            return {"search": name, "state": "unreadable", "daemon_pid": None, "task": None,
                    "controller": None, "trials": None, "done": None, "best": None,
                    "error": str(exc), "space": None, "stored_state": None, "drawn": None,
                    "finished": None, "started": None, "eta_s": None, "stage": None}
        cfg = search.config
        b = snap["budget"]
        return {"search": name,
                "state": (shown_state(search.state, pid is not None) if run is not None
                          else search.state),
                "daemon_pid": pid, "task": cfg.get("task"), "controller": cfg.get("controller"),
                "trials": snap["trials"], "done": snap["counts"].get("done", 0),
                "best": snap["best"], "error": None,
                "space": cfg.get("space"), "stored_state": search.state,
                "drawn": b["drawn"], "finished": b["finished"],
                "started": _iso(search.created_at),
                "eta_s": (snap["recheck"].get("done_eta_s") if snap["recheck"].get("left")
                          else None) or b["eta_s"],
                "stage": snap.get("stage")}

    def status(self, name: str, top_k: int = 5) -> dict[str, Any]:
        """``/api/search/NAME``: exactly ``adsearch status NAME --json`` (``--top-k``)."""
        from adsearch.views.status import build_status

        with self.open(name) as (run, store, search):
            return build_status(run, store, search, top_k=top_k)

    def search_extra(self, name: str) -> dict[str, Any]:
        """``/api/search/NAME/extra``: what the search page adds to the status document.

        ``series``: the search's own results in finish order (a re-check run is no draw),
        ``[{"n", "t" (seconds since the search was created), "trial_id", "reward", "full",
        "kind"}]`` (``full``: a full-budget result, what best-so-far counts; ``kind``:
        :func:`_kind`), thinned to :data:`SERIES_POINTS`; ``trials``: the latest
        :data:`LATEST_TRIALS` trials (id, state, purpose, controller version, seed, reward,
        full, kind, seconds); ``events``: the latest :data:`LATEST_EVENTS` events;
        ``masks``: the top patterns drawn at their sites' maps (:func:`draw_pattern`;
        ``maps_source`` says where the maps come from); ``verify``: whether this is a verify
        search (its page links to the report)."""
        from adsearch.daemon.recheck import SEARCH_PURPOSES
        from adsearch.views.status import build_status

        with self.open(name) as (run, store, search):
            sid = search.id
            own = {t.id for t in store.trials(sid, purposes=SEARCH_PURPOSES)}
            results = [r for r in store.results(sid) if r.trial_id in own]
            born = search.created_at.timestamp()
            series = [{"n": i + 1, "t": r.created_at.timestamp() - born, "trial_id": r.trial_id,
                       "reward": _num(r.reward), "full": _full(r), "kind": _kind(r)}
                      for i, r in enumerate(results)]
            total = sum(store.counts(sid).values())
            latest = store.trials(sid, offset=max(0, total - LATEST_TRIALS))
            res = {r.trial_id: r for r in store.results(sid, [t.id for t in latest])}
            trials = [{"trial_id": t.id, "state": t.state, "purpose": t.purpose,
                       "controller_version": t.controller_version, "seed": t.seed,
                       "reward": _num(res[t.id].reward) if t.id in res else None,
                       "full": _full(res[t.id]) if t.id in res else None,
                       "kind": _kind(res[t.id]) if t.id in res else None,
                       "seconds": res[t.id].seconds if t.id in res else None}
                      for t in reversed(latest)]
            events = [{"at": _iso(e.at), "kind": e.kind, "message": e.message}
                      for e in store.events(sid, limit=LATEST_EVENTS)]
            top = build_status(run, store, search, top_k=DRAWN_PATTERNS)["top"]
            space = search.config.get("space") or ""
            tops = {r.trial_id: r for r in store.results(sid, [t["trial_id"] for t in top])}
            masks = []
            for row in top:
                entry = {"trial_id": row["trial_id"], "reward": row["reward"]}
                try:
                    sides = _sides(store, sid, space, tops.get(row["trial_id"]))
                    entry.update(sites=draw_pattern(space, row["pattern"], row["trial_id"],
                                                    sides), maps_source=sides.source)
                except AdsearchError as exc:  # a space this adsearch cannot draw: say so
                    entry.update(sites=[], error=str(exc))
                masks.append(entry)
        return {"series": _thin(series), "trials": trials, "events": events, "masks": masks,
                "verify": search.config.get("controller") == "fixed"}

    def trial(self, name: str, trial_id: int) -> dict[str, Any]:
        """``/api/search/NAME/trial/ID``: exactly ``adsearch show NAME ID --json``."""
        with self.open(name) as (run, store, search):
            try:
                rec = store.get_trial(trial_id)
            except AdsearchError:
                rec = None
            if rec is None or rec.search_id != search.id:
                raise NotFound(f"search {name!r} has no trial {trial_id}")
            results = store.results(search.id, [trial_id])
            placed = _placements(store, search.id, trial_id)
            # each site's map: recorded for the search (issue 20), else the space's defaults
            sides = _sides(store, search.id, search.config.get("space") or "",
                           results[0] if results else None)
        logs = sorted(str(p) for p in run.trial_dir(trial_id).glob("attempt-*.log")) if run else []
        local = {Path(p).name for p in logs}
        logs += [f"{p['host']}:{p['log']}" for p in placed if Path(p["log"]).name not in local]
        return {"search": search.name, "run_dir": str(run.path) if run else None,
                "trial": rec.to_dict(),
                "result": results[0].to_dict() if results else None, "logs": logs,
                "learned_reward": results[0].learned_reward if results else None,
                "placements": placed, "site_maps": sides.to_dict()}

    def trial_extra(self, name: str, trial_id: int) -> dict[str, Any]:
        """``/api/search/NAME/trial/ID/extra``: ``rungs`` (the trial's rung values:
        ``{"rung", "epoch", "value", "promoted", "threshold"}``), ``log_tail`` (the last
        :data:`LOG_TAIL_LINES` lines of its newest local log, or None) and ``masks`` (its
        pattern drawn at its sites' map sides)."""
        doc = self.trial(name, trial_id)
        with self.open(name) as (_, store, search):
            rungs = [{"rung": r.rung, "epoch": r.epoch, "value": r.value,
                      "promoted": r.promoted, "threshold": r.threshold}
                     for r in store.rung_rows(search.id) if r.trial_id == trial_id]
            space = search.config.get("space") or ""
        local = [p for p in doc["logs"] if Path(p).is_file()]
        tail = None
        if local:
            newest = max(local, key=lambda p: Path(p).stat().st_mtime)
            lines = Path(newest).read_text(errors="replace").splitlines()
            tail = {"path": newest, "lines": lines[-LOG_TAIL_LINES:]}
        try:
            from adsearch.patterns.mapsides import SiteSides

            m = doc["site_maps"]
            sides = SiteSides(tuple(None if x is None else (int(x[0]), int(x[1]))
                                    for x in m["maps"]), m["source"], m["recorded"])
            masks: Any = draw_pattern(space, doc["trial"]["pattern"], trial_id, sides)
            error = None
        except AdsearchError as exc:
            masks, error = [], str(exc)
        return {"rungs": rungs, "log_tail": tail, "masks": masks, "masks_error": error}

    def verify(self, name: str) -> dict[str, Any]:
        """``/api/verify/NAME`` for a verify search (controller ``fixed``): ``report``, the
        document ``adsearch verify`` wrote to ``verify.json`` in its run directory (table,
        paired differences and 95% intervals; docs/verify.md), or None while it runs;
        ``progress``: the runs by state and stage (tuning, test); ``note``: why there is
        no report, in words."""
        with self.open(name) as (run, store, search):
            if search.config.get("controller") != "fixed":
                raise NotFound(f"search {name!r} is no verify search (run `adsearch verify "
                               f"{name}` to make {name + '-verify'!r})")
            trials = store.trials(search.id)
        from adsearch.verify.plan import TUNE_SEED

        progress: dict[str, dict[str, int]] = {}
        for t in trials:  # tuning runs use seeds TUNE_SEED, TUNE_SEED + 1, ...
            stage = "tuning" if t.seed >= TUNE_SEED else "test"
            progress.setdefault(stage, {}).setdefault(t.state, 0)
            progress[stage][t.state] += 1
        report, note = None, None
        if run is None:
            note = "no run directory: the verify report lives in the verify run directory"
        else:
            path = run.path / "verify.json"
            try:
                report = json.loads(path.read_text())
            except FileNotFoundError:
                note = ("no report yet: `adsearch verify` writes verify.json when its "
                        "retraining stage ends")
            except (OSError, ValueError) as exc:
                note = f"cannot read {path}: {exc}"
        return {"search": name, "report": report, "progress": progress, "note": note}

    def compare(self, names: list[str]) -> dict[str, Any]:
        """``/api/compare?s=A&s=B``: per search its config, counts, best and budget, and its
        ``series`` (the search's own results in finish order, as on its page), so that the
        page draws the best so far of each against finished trials on one chart."""
        if len(names) < 1:
            raise NotFound("compare needs searches: /compare?s=NAME&s=OTHER")
        out = []
        for n in names:
            snap = self.status(n, top_k=1)
            extra = self.search_extra_series(n)
            out.append({"search": n, "config": snap["config"], "state": snap["state"],
                        "counts": snap["counts"], "best": snap["best"],
                        "budget": snap["budget"], "stage": snap["stage"], "series": extra})
        return {"searches": out}

    def search_extra_series(self, name: str) -> list[dict[str, Any]]:
        """The ``series`` of :meth:`search_extra` alone (no masks, no events)."""
        from adsearch.daemon.recheck import SEARCH_PURPOSES

        with self.open(name) as (_, store, search):
            own = {t.id for t in store.trials(search.id, purposes=SEARCH_PURPOSES)}
            results = [r for r in store.results(search.id) if r.trial_id in own]
            born = search.created_at.timestamp()
        return _thin([{"n": i + 1, "t": r.created_at.timestamp() - born,
                       "trial_id": r.trial_id, "reward": _num(r.reward), "full": _full(r),
                       "kind": _kind(r)}
                      for i, r in enumerate(results)])


def draw_pattern(space_name: str, pattern: list[dict[str, Any]], seed: int,
                 sides: Any = None) -> list[dict[str, Any]]:
    """Each site of ``pattern`` drawn at its map, as ``adsearch show`` and ``pattern show``
    draw it: ``sides`` (:class:`~adsearch.patterns.mapsides.SiteSides`, the maps recorded
    for the search; None: the space's defaults, e.g. conv-3's 32, 16 and 8 px), else 32x32
    (conv) or 64x32 (seq). ``[{"site", "shape": [H, W], "drop_fraction", "panels": [[row,
    ...], ...]}]``, a row a string with ``#`` dropped and ``.`` kept, :data:`PANELS`
    channels (conv) or examples (seq) per site, seeded by ``seed``."""
    from adsearch.patterns import SearchSpace, decode_patterns
    from adsearch.patterns.mapsides import default_sides
    from adsearch.views.mask_draw import site_masks  # numpy, imported when a page draws

    space = SearchSpace.from_name(space_name)
    decoded = decode_patterns(pattern, space)
    sides = default_sides(space) if sides is None else sides
    fallback = DEFAULT_CONV_SHAPE if space.kind == "conv" else DEFAULT_SEQ_SHAPE
    out = []
    for i, p in enumerate(decoded):
        shape = sides.at(i) or fallback
        masks = site_masks(p, PANELS, shape, seed + i)
        out.append({"site": i, "shape": list(shape),
                    "drop_fraction": float(1.0 - masks.mean()),
                    "panels": [["".join("." if v else "#" for v in row) for row in m]
                               for m in masks]})
    return out


def _sides(store: Any, search_id: int, space_name: str, result: Any) -> Any:
    """The maps of a search's sites (:func:`adsearch.patterns.mapsides.search_sides`)."""
    from adsearch.patterns import SearchSpace
    from adsearch.patterns.mapsides import search_sides

    return search_sides(store, search_id, SearchSpace.from_name(space_name), result)


def _placements(store: Any, search_id: int, trial_id: int) -> list[dict[str, Any]]:
    """Attempts an ``adsearch worker`` ran (PostgreSQL stores only), as ``show --json``."""
    if not store.url.startswith("postgresql"):
        return []
    events = store.events(search_id, limit=1_000_000, kinds=["trial.placed"])
    keys = ("attempt", "host", "owner", "slot", "log")
    return [{k: e.data.get(k) for k in keys} for e in events if e.data.get("trial_id") == trial_id]


def _kind(r: Any) -> str:
    """What a result is: ``full`` (a full-budget result), ``stopped`` (a child stopped at a
    rung: its reward is the rung value), ``bad`` (a bad pattern: failed, or refused by the
    drop cap before training) or ``none`` (no reward)."""
    m = r.metrics or {}
    if m.get("bad_pattern"):
        return "bad"
    if r.reward is None:
        return "none"
    return "stopped" if m.get("truncated") else "full"


def _full(r: Any) -> bool:
    """A full-budget result: neither a child stopped at a rung nor a bad pattern."""
    m = r.metrics or {}
    return r.reward is not None and not m.get("truncated") and not m.get("bad_pattern")


def _num(v: float | None) -> float | None:
    """A float JSON can carry (NaN and infinities as None)."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=dt.tzinfo or timezone.utc).isoformat()


def _thin(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most about :data:`SERIES_POINTS` points: every point that raised the best so far,
    the last one, and evenly spaced others."""
    if len(series) <= SERIES_POINTS:
        return series
    step = math.ceil(len(series) / SERIES_POINTS)
    best = -math.inf
    keep = []
    for i, p in enumerate(series):
        raised = p["full"] and p["reward"] is not None and p["reward"] > best
        if raised:
            best = p["reward"]
        if raised or i % step == 0 or i == len(series) - 1:
            keep.append(p)
    return keep
