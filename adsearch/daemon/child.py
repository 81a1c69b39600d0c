"""The child process: train one trial and write its outcome. Run by the daemon as
``python -m adsearch.daemon.child SPEC RESULT``; its stdout and stderr go to the trial's log.

``SPEC`` (JSON, written by the daemon)::

    {"trial_id": 7, "attempt": 1, "task": "cifar10", "task_config": {...},
     "space": "conv-3", "patterns": [{...}, ...], "budget": {...}, "device": "cpu",
     "seed": 123, "threads": 1}

``space`` is the search's space (the one the controller draws from). ``adsearch start``
refuses a space that does not fit the task; the child checks it again (a search written by
an older adsearch) and fails as ``"config"`` rather than decode patterns for another space.

``RESULT`` is written atomically (temporary file, rename) and holds ``status``:

- ``"ok"``: a finite reward, with metrics, curve and seconds;
- ``"bad_pattern"``: the pattern broke training: it diverged (a non-finite loss, reported
  by the task as ``metrics["diverged"]``), returned a non-finite reward, or raised what
  :func:`adsearch.daemon.failures.classify` calls a bad pattern (a ``PatternError``, ...).
  That is a legitimate *result* of the pattern: the daemon records it with the search's
  ``failure_reward`` and never retries it;
- ``"error"``: the child's code has a bug (``ImportError``, ``NameError``, ``TypeError``,
  a missing file, ...): not a result; the daemon requeues the trial uncounted and stops the
  search (state ``failed``) with the error and this child's log;
- ``"infra"``: an error that says nothing about the pattern (out of memory on a GPU), so
  the daemon retries it;
- ``"config"``: an adsearch error about the data or the task config (``DataError``,
  ``ConfigError``): handled like ``"error"``.

``error_type`` names the exception's type (or the user's, see ``classify``).

No result file at all (the process was killed, crashed or timed out) is also an
infrastructure failure. The child dies with the daemon: it asks the kernel for SIGKILL when
its parent exits (``prctl(PR_SET_PDEATHSIG)``) and, as a fallback, a thread exits the
process when its parent pid changes.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adsearch.atomic import write_json_atomic
from adsearch.daemon.failures import BAD_PATTERN, CONFIG, classify
from adsearch.errors import ConfigError
from adsearch.rungs import LazySink, RungSink

if TYPE_CHECKING:
    from adsearch.patterns import SearchSpace
    from adsearch.patterns.space import Pattern

_PR_SET_PDEATHSIG = 1
_NO_TORCH = ("synthetic", "script")  # tasks whose child process never imports torch
_STORES: dict[str, Any] = {}  # store URL -> open adsearch.store.Store (see rung_reporter)


def die_with_parent(parent_pid: int) -> None:
    """Make sure this process ends when ``parent_pid`` does."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the watcher below still works
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def write_result(path: Path, data: dict[str, Any]) -> None:
    """Atomic against crashes (rename). Not fsynced: after a power loss the store, which is
    durable, decides: a result it does not hold is simply run again."""
    write_json_atomic(path, data, durable=False, allow_nan=False, default=_jsonable)


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _finite_or_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        else:
            out[k] = v
    return out


def regularizer_of(space: SearchSpace, stored: list[Any]) -> list[Pattern] | dict[str, Any]:
    """A trial's stored ``pattern`` column as a ``run_child`` regularizer: one pattern dict per
    site, or (the planned runs of ``adsearch verify``) one baseline spec dict with a ``kind``
    such as ``{"kind": "dropblock", "drop_prob": 0.1, "block_size": 5}``, or one
    ``{"kind": "patterns", "space": NAME, "patterns": [...]}``: the best pattern of a search
    verify compares that drew from the other family of the same sites (``conv-3`` next to
    ``conv2-3``), decoded with its own space."""
    from adsearch.patterns import SearchSpace, decode_patterns

    if len(stored) == 1 and isinstance(stored[0], dict) and "kind" in stored[0]:
        spec = dict(stored[0])
        if spec["kind"] != "patterns":
            return spec
        own = SearchSpace.from_name(str(spec.get("space")))
        if not own.same_sites(space):
            raise ConfigError(f"patterns of space {own.name} cannot run at the sites of "
                              f"space {space.name}; compare searches of the same sites")
        return list(decode_patterns(spec.get("patterns"), own))

    return list(decode_patterns(stored, space))


def rung_reporter(store_url: str | None) -> LazySink | None:
    """The reporter of a child's :class:`~adsearch.tasks.result.Budget` (None without a
    store): the store at ``store_url``, opened at the child's first rung, one connection
    pool per process and store, reused by each child this process runs (Ray, workers)."""
    if store_url is None:
        return None

    def open_store() -> RungSink:
        from adsearch.store import Store

        store = _STORES.get(store_url)
        if store is None:
            store = _STORES[store_url] = Store(store_url)
        return store

    return LazySink(open_store)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train the trial described by ``spec`` and return the RESULT document."""
    from adsearch.patterns import SearchSpace
    from adsearch.tasks import Budget, get_task, load_config
    from adsearch.tasks.registry import is_builtin

    started = time.time()
    base = {"trial_id": spec["trial_id"], "attempt": spec["attempt"], "pid": os.getpid()}

    def failed(exc: Exception, status: str) -> dict[str, Any]:
        if hasattr(exc, "user_exception"):  # raised for another process (a script task):
            print(f"[child] {type(exc).__name__}: {exc}", flush=True)  # its traceback is above
        else:
            traceback.print_exc()
        kind = getattr(exc, "user_exception", None) or type(exc).__name__
        return {**base, "status": status, "error": f"{type(exc).__name__}: {exc}"[:2000],
                "error_type": str(kind), "reward": None, "metrics": {}, "curve": [],
                "seconds": time.time() - started, "ended_at": time.time()}

    try:  # nothing here depends on the pattern: a failure is the task's or the setup's
        task = get_task(spec["task"])
        config = load_config(task, spec["task"], spec["task_config"])  # a plug-in's own errors too
        built: SearchSpace = task.space(config)
        # the search's space decodes the patterns (an "+off" space may widen the task's)
        space = SearchSpace.from_name(spec["space"]) if spec.get("space") else built
        if not space.same_sites(built):
            raise ConfigError(f"the search draws patterns for space {space.name} but the task "
                              f"config builds space {built.name}; start a new search with one "
                              "--space")
        patterns = regularizer_of(space, spec["patterns"])
        threads = int(spec.get("threads") or 0)
        # a plug-in that has not imported torch by now gets OMP_NUM_THREADS from its slot instead
        if threads and (spec["task"] not in _NO_TORCH if is_builtin(spec["task"])
                        else "torch" in sys.modules):
            import torch

            torch.set_num_threads(threads)
        data = spec.get("budget") or {}
        budget = Budget.from_dict(data, reporter=rung_reporter(data.get("store_url")))
    except Exception as exc:  # noqa: BLE001 - classified; a "bad pattern" here is a bad setup
        status = classify(exc)
        return failed(exc, CONFIG if status == BAD_PATTERN else status)
    print(f"[child] trial {spec['trial_id']} attempt {spec['attempt']} task {spec['task']} "
          f"device {spec['device']} CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r} "
          f"threads {threads} budget {budget}", flush=True)
    os.environ["ADSEARCH_TRIAL_ID"] = str(spec["trial_id"])  # for the script task's trial spec
    os.environ["ADSEARCH_ATTEMPT"] = str(spec["attempt"])
    try:
        result = task.run_child(config, patterns, budget, spec["device"], int(spec["seed"]))
    except Exception as exc:  # a pattern may legitimately break training; a bug may too
        return failed(exc, classify(exc))
    doc = {**base, "metrics": _finite_or_none(dict(result.metrics)),
           "curve": [_finite_or_none(dict(c)) for c in result.curve],
           "seconds": float(result.seconds or time.time() - started)}
    if not math.isfinite(result.reward) or doc["metrics"].get("diverged"):
        step = doc["metrics"].get("diverged_step")
        why = (f"training diverged at step {step if step is None else int(step)} "
               "(non-finite loss)" if doc["metrics"].get("diverged") else
               f"non-finite reward {result.reward!r} (training diverged)")
        return {**doc, "status": BAD_PATTERN, "reward": None, "error": why,
                "error_type": None, "ended_at": time.time()}
    return {**doc, "status": "ok", "reward": float(result.reward), "error": None,
            "ended_at": time.time()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m adsearch.daemon.child SPEC RESULT", file=sys.stderr)
        return 2
    parent = os.environ.get("ADSEARCH_PARENT_PID")
    if parent:
        die_with_parent(int(parent))
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    doc = run(spec)
    write_result(result_path, doc)
    print(f"[child] trial {spec['trial_id']}: {doc['status']} reward={doc['reward']}", flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: the slot is free as soon as the result is out
