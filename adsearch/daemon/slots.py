"""Slots (where children run) and the child processes that run in them.

Slot planning, in order of precedence:

1. ``--workers N``: CPU mode, N slots, the CPU threads split evenly between them
   (each child calls ``torch.set_num_threads``; ``OMP_NUM_THREADS`` is set too).
2. ``--gpus 0,2``: those GPUs.
3. ``CUDA_VISIBLE_DEVICES`` (when set): the GPUs it lists; set but empty means CPU mode.
4. ``torch.cuda.device_count()`` (imports torch; 0 means CPU mode with one slot).

``--workers N`` is the CLI's name for N CPU slots (it stays, as the search config's
``workers`` key does); in code a place where one child runs is a *slot*, and a *worker* is
only ``adsearch worker`` (docs/architecture.md, Glossary).

Each GPU gives ``--slots-per-gpu`` slots. A child sees only its GPU: its environment has
``CUDA_VISIBLE_DEVICES=<id>`` and it trains on ``cuda`` (device 0 inside the child).

Children are never orphaned: each one starts in its own session (process group), so the
daemon can kill it with everything it spawned (``os.killpg``); each one asks the kernel for
SIGKILL when the daemon dies (``PR_SET_PDEATHSIG``, see :mod:`adsearch.daemon.child`), and
its queue lease stops being renewed, so a ``kill -9`` of the daemon loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from adsearch.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    """One place a child runs: ``gpu`` is a GPU id (as the machine numbers it) or None (CPU)."""

    index: int
    gpu: str | None
    threads: int  # CPU threads the child may use

    @property
    def name(self) -> str:
        return f"cpu{self.index}" if self.gpu is None else f"gpu{self.gpu}.{self.index}"

    @property
    def device(self) -> str:
        return "cpu" if self.gpu is None else "cuda"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "gpu": self.gpu, "threads": self.threads}


def _parse_gpu_list(text: str, source: str) -> list[str]:
    ids = [t.strip() for t in text.split(",") if t.strip()]
    for t in ids:
        if not t.isdigit() and not t.startswith(("GPU-", "MIG-")):
            raise ConfigError(f"{source}: invalid GPU id {t!r}; give ids such as 0,2")
    return ids


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask (``taskset``, a Slurm or cgroup
    cpuset), not the machine's count, so two searches pinned to one core each do not both
    start two threads per child and thrash."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan_slots(
    *, gpus: list[str] | None, slots_per_gpu: int, workers: int | None,
    env: dict[str, str] | None = None, cpu_count: int | None = None,
) -> tuple[list[Slot], str]:
    """The slots of a search and a one-line description of where they came from."""
    env = dict(os.environ) if env is None else env
    cpus = cpu_count or available_cpus()
    if workers is not None:
        threads = max(1, cpus // workers)
        return ([Slot(i, None, threads) for i in range(workers)],
                f"CPU mode: {workers} slot(s), {threads} thread(s) each")
    source = "--gpus"
    ids: list[str]
    if gpus is not None:
        ids = _parse_gpu_list(",".join(gpus), "--gpus")
    elif "CUDA_VISIBLE_DEVICES" in env:
        source = "CUDA_VISIBLE_DEVICES"
        ids = _parse_gpu_list(env["CUDA_VISIBLE_DEVICES"], "CUDA_VISIBLE_DEVICES")
    else:
        source = "torch.cuda"
        ids = [str(i) for i in range(_cuda_device_count())]
    if not ids:
        return [Slot(0, None, cpus)], f"CPU mode: no GPU found ({source}), 1 worker"
    threads = max(1, cpus // (len(ids) * slots_per_gpu))
    slots = [Slot(n, g, threads)
             for n, g in enumerate(g for g in ids for _ in range(slots_per_gpu))]
    return slots, f"{len(ids)} GPU(s) from {source} ({','.join(ids)}), {slots_per_gpu} slot(s) each"


def _cuda_device_count() -> int:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


_C = TypeVar("_C", bound="RunningChild")


def ended_children(children: dict[int, _C], now: float) -> Iterator[tuple[int, _C, int]]:
    """Yield ``(slot index, child, exit code)`` for each child of ``children`` that has ended,
    after killing those past their timeout; each is reaped and removed from ``children``
    before it is yielded (so the caller may start the slot's next child at once)."""
    for index, child in list(children.items()):
        if child.poll() is None:
            if not child.timed_out(now):
                continue
            child.kill(f"timed out after {child.timeout:.0f} s")
        code = child.reap()
        del children[index]
        yield index, child, code


class RunningChild(ABC):
    """What the daemon tracks of one running child, wherever it runs (a local process:
    :class:`ChildProcess`; a Ray task: ``adsearch.daemon.rayexec.RayChild``). ``started_at``
    is seconds since the epoch, ``timeout`` seconds of wall time."""

    #: The process that runs the child (a Ray task: the driver's, it has none of its own).
    pid: int

    def __init__(self, slot: Slot, trial_id: int, result_path: Path, log_path: Path,
                 timeout: float, attempt: int) -> None:
        self.slot = slot
        self.trial_id = trial_id
        self.attempt = attempt
        self.result_path = result_path
        self.log_path = log_path
        self.timeout = timeout
        self.started_at = time.time()
        self.kill_reason: str | None = None

    def timed_out(self, now: float) -> bool:
        return now - self.started_at > self.timeout

    @abstractmethod
    def poll(self) -> int | None:
        """The exit status once the child ended (0: it left a result), else None."""

    @abstractmethod
    def kill(self, reason: str, grace: float = 2.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after ``grace`` seconds); the first
        ``reason`` given is kept in ``kill_reason``."""

    @abstractmethod
    def reap(self) -> int:
        """Wait for the end, release what the child holds, return its exit status."""

    @abstractmethod
    def fileno(self) -> int:
        """A descriptor that becomes readable when the child ends (for a selector)."""

    @property
    @abstractmethod
    def has_fd(self) -> bool:
        """Whether :meth:`fileno` works here."""


class ChildProcess(RunningChild):
    """One running child: ``python -m adsearch.daemon.child SPEC RESULT`` in its own session.

    ``fileno()`` is a pidfd that becomes readable when the child exits (Linux), so the
    daemon can sleep in a selector and wake within milliseconds of a child's end.
    """

    def __init__(self, slot: Slot, trial_id: int, spec_path: Path, result_path: Path,
                 log_path: Path, timeout: float, attempt: int = 1) -> None:
        super().__init__(slot, trial_id, result_path, log_path, timeout, attempt)
        env = dict(os.environ)
        env["ADSEARCH_PARENT_PID"] = str(os.getpid())
        env["CUDA_VISIBLE_DEVICES"] = "" if slot.gpu is None else slot.gpu
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(slot.threads)
        env["PYTHONUNBUFFERED"] = "1"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in reap()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "adsearch.daemon.child", str(spec_path), str(result_path)],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, close_fds=True,
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self.proc.pid
        self._pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                self._pidfd = os.pidfd_open(self.pid)
            except OSError:
                self._pidfd = None

    def fileno(self) -> int:
        if self._pidfd is None:
            raise OSError("no pidfd on this platform")
        return self._pidfd

    @property
    def has_fd(self) -> bool:
        return self._pidfd is not None

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self, reason: str, grace: float = 2.0) -> None:
        """Stop the child and everything it spawned: SIGTERM to its process group, then
        SIGKILL after ``grace`` seconds."""
        self.kill_reason = self.kill_reason or reason
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # anything left in the group (grandchildren) goes too
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def reap(self) -> int:
        """Wait for the exit, release the file descriptors, return the exit status."""
        code = self.proc.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._log.close()
        return code
