"""The file-locked trial queue: the daemon produces trial ids, one worker per slot claims
them with a lease and keeps the lease alive with a heartbeat. See :mod:`.filequeue`."""

from __future__ import annotations

from adsearch.queue.filequeue import FileQueue, Lease, LeaseLost

__all__ = ["FileQueue", "Lease", "LeaseLost"]
