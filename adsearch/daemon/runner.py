"""Drive a :class:`~adsearch.daemon.loop.Daemon`: signals, sleeping, readiness, logging.

The driver sleeps in a selector on every running child's pidfd and on the signal wakeup
pipe, so it wakes within milliseconds of a child's exit or a signal, and otherwise at least
every ``tick`` seconds (heartbeats, timeouts, the state file).

Detached start (``adsearch start``): the CLI spawns ``python -m adsearch.daemon RUN_DIR
--ready-fd N`` in a new session (``setsid``) with its output in ``daemon.log``. The daemon
writes ``ok <pid>`` to fd N once :meth:`Daemon.initialize` succeeded, or ``error <message>``
when it failed, so the CLI reports a bad checkpoint or a running daemon in the terminal, not
in a log file.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from adsearch.daemon.loop import Daemon
from adsearch.daemon.stopping import Stoppable
from adsearch.errors import AdsearchError, DaemonError

if TYPE_CHECKING:
    from adsearch.daemon.slots import RunningChild

log = logging.getLogger("adsearch.daemon")


def install_signal_handlers(daemon: Stoppable) -> tuple[int, Callable[[], None]]:
    """SIGTERM/SIGINT: warm stop, then cold on the second; SIGUSR1: cold stop. Handlers only
    set flags; the returned fd becomes readable when a signal arrives (wakes the selector).
    The returned function restores the previous handlers (for in-process use)."""

    def warm_or_cold(signum: int, _frame: Any) -> None:
        daemon.request_stop(reason=signal.Signals(signum).name)

    def cold(signum: int, _frame: Any) -> None:
        daemon.request_stop(cold=True, reason=signal.Signals(signum).name)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    signal.signal(signal.SIGTERM, warm_or_cold)
    signal.signal(signal.SIGINT, warm_or_cold)
    signal.signal(signal.SIGUSR1, cold)
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)

    def restore() -> None:
        signal.set_wakeup_fd(old_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(r)
        os.close(w)

    return r, restore


def wait_for_children(children: Mapping[int, RunningChild], sel: selectors.BaseSelector,
                      wake_fd: int, tick: float) -> None:
    """Sleep until a child ends, a signal arrives (``wake_fd``) or ``tick`` seconds pass."""
    fds: list[RunningChild] = [c for c in children.values() if c.has_fd]
    polling = len(fds) < len(children)  # no pidfd: poll fast
    for f in fds:
        sel.register(f, selectors.EVENT_READ)
    try:
        sel.select(timeout=0.02 if polling else tick)
    finally:
        for f in fds:
            sel.unregister(f)
    try:
        while os.read(wake_fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


def run_daemon(
    run_dir: str,
    *,
    ready_fd: int | None = None,
    on_tick: Callable[[Daemon], None] | None = None,
    tick: float = 0.25,
    max_loops: int | None = None,
    budget_minutes: float | None = None,
    budget_trials: int | None = None,
    fresh_controller: bool = False,
) -> Daemon:
    """Run the daemon of ``run_dir`` to the end. Returns the daemon (for its final state).

    Args:
        ready_fd: a pipe to report readiness on (detached start), closed afterwards.
        on_tick: called after every pass (the foreground progress display).
        tick: longest sleep between passes, in seconds.
        max_loops: burst mode for tests: warm stop after this many passes.
        budget_minutes, budget_trials: a new total budget (``resume --budget-*``), written
            by :meth:`Daemon.initialize` only once every start-up check has passed.
        fresh_controller: start a new controller fed with every stored result.
    """
    daemon = Daemon(run_dir, max_loops=max_loops, budget_minutes=budget_minutes,
                    budget_trials=budget_trials, fresh_controller=fresh_controller)
    wake, restore = install_signal_handlers(daemon)
    try:
        try:
            daemon.initialize()
        except AdsearchError as exc:
            _report_ready(ready_fd, f"error {exc}")
            raise
        except BaseException as exc:
            _report_ready(ready_fd, f"error {type(exc).__name__}: {exc}")
            raise
        _report_ready(ready_fd, f"ok {os.getpid()}")
        sel = selectors.DefaultSelector()
        sel.register(wake, selectors.EVENT_READ)
        try:
            while daemon.loop(time.time()):
                if on_tick is not None:
                    on_tick(daemon)
                wait_for_children(daemon.children, sel, wake, tick)
            if on_tick is not None:
                on_tick(daemon)
        except OSError as exc:  # a full disk, a vanished or read-only directory, ...
            daemon.fatal = daemon.fatal or os_error_text(exc)
            raise DaemonError(f"search {daemon.name!r} failed: {daemon.fatal}") from exc
        except BaseException as exc:
            if daemon.fatal is None and not isinstance(exc, KeyboardInterrupt):
                daemon.fatal = str(exc) if isinstance(exc, AdsearchError) else (
                    f"{type(exc).__name__}: {exc}")
            raise
        finally:
            daemon.shutdown()  # records state "failed" with daemon.fatal for `status`
            sel.close()
    finally:
        restore()
    return daemon


def os_error_text(exc: OSError) -> str:
    """One line for an OS error of the daemon, naming the file (``status`` shows it)."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on device{where}: free space on that file system, then "
                "`adsearch resume`")
    return f"{exc.strerror or exc}{where}"


def _report_ready(fd: int | None, message: str) -> None:
    if fd is None:
        return
    try:
        os.write(fd, (message.replace("\n", " ") + "\n").encode())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """``python -m adsearch.daemon RUN_DIR [--ready-fd N]``: the detached daemon process."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m adsearch.daemon")
    parser.add_argument("run_dir")
    parser.add_argument("--ready-fd", type=int, default=None)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--budget-trials", type=int, default=None)
    parser.add_argument("--fresh-controller", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        daemon = run_daemon(args.run_dir, ready_fd=args.ready_fd,
                            budget_minutes=args.budget_minutes, budget_trials=args.budget_trials,
                            fresh_controller=args.fresh_controller)
    except AdsearchError as exc:
        log.error("%s", exc)
        return 1
    log.info("daemon exiting: finished=%s stop=%s", daemon.finished, daemon.stop_reason)
    return 0
