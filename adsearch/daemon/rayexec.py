"""The Ray executor: each child is a Ray task; the daemon is the Ray driver.

``adsearch start --executor ray [--ray-address ADDR] --workers N [--ray-gpus F]``: N children
run at once, each a Ray task that asks for ``F`` GPUs (fractions allowed: 0.5 puts two
children on one GPU) and the slot's CPU threads. Ray picks the node and the GPU and sets
``CUDA_VISIBLE_DEVICES`` for the task; the child trains on ``cuda`` when Ray gave it a GPU,
else on ``cpu``.

Failure semantics, as for the local executor:

- a Ray worker process or node that dies mid-child: the task fails (``max_retries = 0``:
  Ray never retries on its own), the daemon sees a run without a result and applies its own
  retry rule, which counts the attempt in the store. So ``--max-attempts`` is the one
  attempt budget under Ray too, and every run shows in the trial's ``attempts`` and log
  (before, Ray's silent retries times adsearch's attempts let a trial run up to 9 times);
- an exception of the child itself never reaches Ray: the task body
  (:func:`adsearch.daemon.child.run`) catches it and returns a document classified by
  :func:`adsearch.daemon.failures.classify` (a bad pattern is a result; a code error stops
  the search in the daemon, as for local children), so Ray never sees an exception to retry
  (``retry_exceptions=False`` besides);
- a cold stop or a timeout cancels the task (``ray.cancel(force=True)``).

The task's result document is written to the trial's ``result.json`` on the driver when it
is collected, so results, recovery and ``adsearch show`` work as with local children.
``adsearch status`` never imports Ray: only the daemon does, through this module.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.slots import RunningChild, Slot
from adsearch.errors import ConfigError, DaemonError


def _child_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Body of a Ray task: run one child where Ray placed it and return its result document."""
    import ray

    from adsearch.daemon.child import run

    gpus = ray.get_gpu_ids()
    spec = {**spec, "device": "cuda" if gpus else "cpu"}
    threads = int(spec.get("threads") or 1)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    doc = run(spec)
    doc["executor"] = {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                       "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                       "gpu_ids": [str(g) for g in gpus]}
    return doc


class RayExecutor:
    """Starts children as Ray tasks. Connects to ``cfg.ray_address`` (``None``: join a
    running ``ray.init`` of this process, or start a local Ray; ``auto``: the cluster of
    this node)."""

    name = "ray"

    def __init__(self, cfg: SearchConfig) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: run `pip install 'adsearch[ray]'`") from None
        self.ray = ray
        self.cfg = cfg
        if not ray.is_initialized():
            try:
                ray.init(address=cfg.ray_address, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise DaemonError(f"--ray-address {cfg.ray_address}: cannot connect to Ray "
                                  f"({exc}); start the cluster with `ray start --head` or fix "
                                  "the address") from None
        have = ray.cluster_resources().get("GPU", 0.0)
        if cfg.ray_gpus and have < cfg.ray_gpus:
            raise DaemonError(f"--ray-gpus {cfg.ray_gpus}: the Ray cluster has {have:g} GPU(s); "
                              "add GPU nodes or lower --ray-gpus")
        self._remote = ray.remote(_child_task)
        # CPUs per child: the slot's share, but never more than the cluster can give each
        # of the search's children at once (a task asking for more would never start).
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self._cpus = max(1, cpus // max(1, cfg.workers or 1))

    def launch(self, slot: Slot, trial_id: int, spec_path: Path, result_path: Path,
               log_path: Path, timeout: float, attempt: int) -> RayChild:
        import json

        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        spec["threads"] = cpus = min(slot.threads, self._cpus)
        opts = self._remote.options(num_gpus=self.cfg.ray_gpus, num_cpus=cpus,
                                    max_retries=0,  # the daemon counts attempts
                                    retry_exceptions=False, name=f"adsearch-trial-{trial_id}")
        return RayChild(self.ray, opts.remote(spec), slot, trial_id, result_path, log_path,
                        timeout, attempt)

    def describe(self) -> str:
        res = self.ray.cluster_resources()
        return (f"Ray tasks ({res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU in the "
                f"cluster; {self.cfg.ray_gpus:g} GPU per child)")

    def close(self) -> None:
        """Leave Ray running when the caller started it; otherwise disconnect."""


class RayChild(RunningChild):
    """A running Ray task with the interface of :class:`~adsearch.daemon.slots.ChildProcess`.

    ``fileno()`` is a pipe that a watcher thread makes readable when the task ends, so the
    daemon sleeps in its selector as it does on local children's pidfds.
    """

    def __init__(self, ray: ModuleType, ref: Any, slot: Slot, trial_id: int, result_path: Path,
                 log_path: Path, timeout: float, attempt: int) -> None:
        super().__init__(slot, trial_id, result_path, log_path, timeout, attempt)
        self.ray = ray
        self.ref = ref
        self.pid = os.getpid()  # the driver's: a task has no pid of its own before it starts
        self._code: int | None = None
        self._r, self._w = os.pipe()
        threading.Thread(target=self._watch, name=f"ray-watch-{trial_id}", daemon=True).start()

    def _watch(self) -> None:
        try:
            self.ray.wait([self.ref], num_returns=1, timeout=None)
        finally:  # this thread owns the write end: no other thread can see it reused
            try:
                os.write(self._w, b"x")
            except OSError:
                pass
            os.close(self._w)

    def fileno(self) -> int:
        return self._r

    @property
    def has_fd(self) -> bool:
        return True

    def poll(self) -> int | None:
        if self._code is not None:
            return self._code
        ready, _ = self.ray.wait([self.ref], num_returns=1, timeout=0)
        return 0 if ready else None

    def kill(self, reason: str, grace: float = 2.0) -> None:
        """Cancel the task (its worker process is killed)."""
        self.kill_reason = self.kill_reason or reason
        try:
            self.ray.cancel(self.ref, force=True)
        except Exception:  # noqa: BLE001 - already finished or gone
            pass

    def reap(self) -> int:
        """Wait for the task; write its result document; 0 with a result, 1 without."""
        from adsearch.daemon.child import write_result

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log:
            try:
                doc = self.ray.get(self.ref)
            except Exception as exc:  # noqa: BLE001 - worker/node lost after Ray's retries, or cancelled
                log.write(f"[ray] trial {self.trial_id}: no result: {type(exc).__name__}: {exc}\n")
                self._code = 1
            else:
                ex = doc.get("executor", {})
                log.write(f"[ray] trial {self.trial_id} attempt {self.attempt}: {doc['status']} "
                          f"on node {ex.get('node')} pid {ex.get('pid')} "
                          f"CUDA_VISIBLE_DEVICES={ex.get('cuda_visible_devices')!r}\n")
                write_result(self.result_path, doc)
                self._code = 0
        os.close(self._r)
        return self._code
