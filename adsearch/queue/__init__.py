"""The trial queue: the daemon produces trial ids, the owner of each free slot claims
them with a lease and keeps the lease alive with a heartbeat. The contract is
:class:`.base.Queue`; the backends :mod:`.filequeue` (one host) and :mod:`.dbqueue` (rows of
the store, many hosts)."""

from __future__ import annotations

from adsearch.queue.base import Lease, LeaseLost, Queue
from adsearch.queue.filequeue import FileQueue

__all__ = ["FileQueue", "Lease", "LeaseLost", "Queue"]
