"""Warm and cold stops, shared by the daemon and ``adsearch worker`` (one rule for both).

A stop is two flags that a signal handler may set (:meth:`Stoppable.request_stop` does
nothing else); the loop reads them and does the work. The first request asks for a warm stop
(no new trials, running children finish), a second one, or ``cold=True``, for a cold stop
(children killed, their trials requeued without counting the interrupted run).
"""

from __future__ import annotations

#: ``stop_level`` values: 0 runs, ``WARM`` winds down, ``COLD`` kills children and exits.
WARM, COLD = 1, 2


class Stoppable:
    """The stop flags of a loop object (:class:`~adsearch.daemon.loop.Daemon`,
    :class:`~adsearch.daemon.hostworker.HostWorker`)."""

    stop_level: int = 0
    stop_reason: str = ""  # why: a signal name, "budget-minutes", "code-error", ...

    def request_stop(self, cold: bool = False, reason: str = "") -> None:
        """Ask for a warm stop, or a cold one (``cold`` or a second request). Safe to call
        from a signal handler: it only sets flags. The first reason given stays unless a
        later request names one."""
        self.stop_level = COLD if (cold or self.stop_level >= WARM) else WARM
        self.stop_reason = reason or self.stop_reason
