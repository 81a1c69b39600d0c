"""One stop rule for the daemon and ``adsearch worker``: warm first, cold on the second
request or when asked, and the reason kept unless a later request names one."""

from __future__ import annotations

from pathlib import Path

import pytest

from adsearch.daemon.hostworker import HostWorker
from adsearch.daemon.loop import Daemon
from adsearch.daemon.stopping import COLD, WARM


@pytest.mark.parametrize("kind", ["daemon", "worker"])
def test_stop_escalates_warm_then_cold(kind: str, tmp_path: Path) -> None:
    obj = (Daemon(tmp_path / "run") if kind == "daemon"
           else HostWorker("postgresql+psycopg://h/db", "s", work_dir=tmp_path / "w"))
    assert obj.stop_level == 0 and obj.stop_reason == ""
    obj.request_stop(reason="SIGTERM")
    assert (obj.stop_level, obj.stop_reason) == (WARM, "SIGTERM")
    obj.request_stop()
    assert (obj.stop_level, obj.stop_reason) == (COLD, "SIGTERM")


@pytest.mark.parametrize("kind", ["daemon", "worker"])
def test_cold_request_skips_warm(kind: str, tmp_path: Path) -> None:
    obj = (Daemon(tmp_path / "run") if kind == "daemon"
           else HostWorker("postgresql+psycopg://h/db", "s", work_dir=tmp_path / "w"))
    obj.request_stop(cold=True, reason="SIGUSR1")
    assert (obj.stop_level, obj.stop_reason) == (COLD, "SIGUSR1")
