"""The run directory of a search and the files the daemon keeps in it. No torch.

Layout of ``<run_dir>`` (default ``./runs/<name>``)::

    search.json        # identity: {"name", "store"}: which search this directory belongs to
    adsearch.db        # the SQLite store (unless --store points elsewhere)
    daemon.lock        # held (flock) by the running daemon: one daemon per search
    daemon.pid         # the running daemon's pid (written after the lock is taken)
    daemon.log         # the detached daemon's stdout/stderr
    daemon-state.json  # live slots and wait reasons, rewritten atomically by the daemon
    elapsed.json       # daemon run time so far (for --budget-minutes across resumes)
    queue/             # the file-locked trial queue (adsearch.queue)
    checkpoints/       # controller checkpoints (adsearch.controller.CheckpointManager)
    trials/<id>/       # spec.json, result.json and attempt-<n>.log of each trial
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from adsearch import atomic
from adsearch.errors import ConfigError, DaemonError

DB_NAME = "adsearch.db"


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """Write JSON to ``path`` so that readers see the old or the new file, never half.
    ``durable`` also fsyncs it (survives power loss, not only a crash)."""
    atomic.write_json_atomic(path, data, durable=durable, indent=1, default=str)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, unreadable or not JSON (a corrupt
    file: callers that care tell "missing" from "corrupt" with ``path.is_file()``)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: JSONDecodeError, UnicodeDecodeError
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as dead).

    A pid alone says nothing about *which* process it is once the OS reuses it: to know
    whether a given daemon still runs, compare :func:`process_identity` instead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_identity(pid: int) -> str | None:
    """``"BOOT_ID:START_TICKS"`` of a live, non-zombie process, or None when ``pid`` does not
    run. The start time (field 22 of ``/proc/PID/stat``, clock ticks since boot) and the boot id
    are fixed for a process's life, so a later process that reuses the pid has another identity.
    Where ``/proc`` is missing (not Linux), a live pid gives ``"pid:PID"`` (pid only)."""
    if not pid_alive(pid):
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{_boot_id()}:{fields[19]}"
    except (OSError, IndexError):
        return f"pid:{pid}"


def shown_state(stored: str, live: bool) -> str:
    """The state to show for a search whose store says ``stored``: a search the store calls
    running or stopping with no live daemon (:meth:`RunDir.daemon_pid`) is ``crashed``. One
    rule for ``status`` and ``list``."""
    return "crashed" if stored in ("running", "stopping") and not live else stored


class RunDir:
    """Paths and small files of one search's run directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()

    # ------------------------------------------------------------------ paths
    @property
    def identity_file(self) -> Path:
        return self.path / "search.json"

    @property
    def default_store_url(self) -> str:
        """``sqlite:///<run_dir>/adsearch.db``, built with ``URL.create`` so that characters
        with a meaning in URLs (``?``, ``#``, ``%``, ``@``) stay part of the path."""
        from sqlalchemy.engine import URL

        return URL.create("sqlite", database=str(self.path / DB_NAME)).render_as_string()

    queue_dir = property(lambda self: self.path / "queue")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    pid_file = property(lambda self: self.path / "daemon.pid")
    lock_file = property(lambda self: self.path / "daemon.lock")
    log_file = property(lambda self: self.path / "daemon.log")
    state_file = property(lambda self: self.path / "daemon-state.json")
    elapsed_file = property(lambda self: self.path / "elapsed.json")

    def trial_dir(self, trial_id: int) -> Path:
        return self.path / "trials" / str(trial_id)

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any] | None:
        data = read_json(self.identity_file)
        return data if isinstance(data, dict) else None

    def check_belongs_to(self, name: str) -> None:
        """Refuse a run directory that belongs to another search."""
        ident = self.identity()
        if ident is None and self.path.exists() and any(
                not p.name.startswith(".search.json.") for p in self.path.iterdir()):
            # a racing `start` links search.json before it writes anything else: files seen
            # after a first read found none mean it appeared meanwhile, so read it again
            ident = self.identity()
            if ident is None:
                raise ConfigError(
                    f"run directory {self.path} is not empty and holds no search.json; pick "
                    "an empty or new --run-dir"
                )
        if ident is not None and ident.get("name") != name:
            raise ConfigError(
                f"run directory {self.path} belongs to search {ident.get('name')!r}, not "
                f"{name!r}; pick another --run-dir (or --name {ident.get('name')} to use it)"
            )

    def require_identity(self) -> dict[str, Any]:
        """The identity, or ConfigError that tells a missing search.json from a corrupt one."""
        ident = self.identity()
        if ident is not None and isinstance(ident.get("name"), str):
            return ident
        if self.identity_file.is_file():
            raise ConfigError(
                f"{self.identity_file} is corrupt (not the JSON object adsearch writes); "
                "restore it from a backup, or rewrite it as "
                '{"name": NAME, "store": URL, "format": 1}'
            )
        if not self.path.exists():
            raise ConfigError(
                f"run directory {self.path} does not exist; check the name or --run-dir "
                "(`adsearch list` shows the searches it finds), or start one with "
                "`adsearch start`"
            )
        raise ConfigError(
            f"{self.path} is not an adsearch run directory (no search.json); start a "
            "search there with `adsearch start`, or pass the right --run-dir"
        )

    def store_url(self) -> str:
        """The store of this search. A run directory that was moved or copied (to an archive,
        to read-only media) keeps its own default store: a stored URL naming
        ``<old place>/<this dir's name>/adsearch.db`` means this directory's ``adsearch.db``."""
        ident = self.require_identity()
        url = str(ident.get("store") or self.default_store_url)
        if url.startswith("sqlite:") and (self.path / DB_NAME).is_file():
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                stored = Path(make_url(url).database or "")
            except ArgumentError:  # a bad URL: the store reports it when it opens it
                return url
            if stored.name == DB_NAME and stored.parent.name == self.path.name:
                return self.default_store_url
        return url

    def claim(self, name: str, store_url: str) -> None:
        """Write (or rewrite) ``search.json``: the directory now belongs to ``name``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.identity_file, {"name": name, "store": store_url, "format": 1})

    def claim_new(self, name: str, store_url: str) -> bool:
        """Create ``search.json`` only if there is none, atomically: of two ``start``s racing
        for one directory exactly one gets True, and the other touches nothing that is the
        winner's. The file appears whole (a complete temp file is hard-linked to its name,
        which fails when the name exists), so readers never see half of it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".search.json.", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"name": name, "store": store_url, "format": 1}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.identity_file)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(tmp)

    # ------------------------------------------------------------------ daemon liveness
    def daemon_pid(self) -> int | None:
        """The running daemon's pid, or None: the one liveness rule of ``status``, ``list``,
        ``stop``, ``resume`` and ``db``. Readers never touch the lock (a status loop must not
        make a starting daemon think the search is taken). The pid file holds the daemon's
        pid *and* its process identity (:func:`process_identity`), and the daemon counts as
        live only while a process with that pid and that identity runs: after a kill -9 the
        stale file names a dead process, or one that merely reuses the pid, and both are
        dead. A file without an identity (written by an older adsearch) is not trusted."""
        pid, ident = self._read_pid_file()
        if pid is None or ident is None:
            return None
        return pid if process_identity(pid) == ident else None

    def _read_pid_file(self) -> tuple[int | None, str | None]:
        try:
            words = self.pid_file.read_text().split()
            pid = int(words[0])
        except (OSError, ValueError, IndexError):
            return None, None
        return pid, (words[1] if len(words) > 1 else None)

    def read_state(self) -> dict[str, Any] | None:
        data = read_json(self.state_file)
        return data if isinstance(data, dict) else None

    def elapsed(self) -> float:
        data = read_json(self.elapsed_file)
        return float(data.get("seconds", 0.0)) if isinstance(data, dict) else 0.0


class DaemonLock:
    """One daemon per search: an exclusive flock on ``daemon.lock`` held for the daemon's life
    (the kernel drops it when the process dies, even on kill -9) plus a pid file."""

    def __init__(self, run: RunDir, name: str) -> None:
        self.run = run
        self.name = name
        self._lock = FileLock(str(run.lock_file), timeout=0)

    def acquire(self) -> None:
        self.run.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            pid = self.run._read_pid_file()[0] or "unknown"
            raise DaemonError(
                f"search {self.name!r} is already running (daemon pid {pid}); stop it with "
                f"`adsearch stop {self.name}` or watch it with `adsearch status {self.name}`"
            ) from None
        pid = os.getpid()
        ident = process_identity(pid) or f"pid:{pid}"
        atomic.write_text_atomic(self.run.pid_file, f"{pid} {ident}\n")

    def release(self) -> None:
        if self._lock.is_locked:
            self.run.pid_file.unlink(missing_ok=True)
            self._lock.release()
