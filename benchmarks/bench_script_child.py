"""Fixed cost per trial of a script-mode child against a built-in child (issue 11 §4).

Both run as the daemon runs them: ``python -m adsearch.daemon.child SPEC RESULT`` in a fresh
process, timed from spawn to exit (wall), with the same trivial work and no training:

- **built-in**: the ``synthetic`` task (``sleep 0``: scores the pattern, writes the result);
- **script**: the ``script`` task running ``python trivial.py``, a user script that reads
  its trial with ``adsearch.trial.current()``, reports one curve point and finishes.

The difference of the medians is the fixed cost script mode adds per trial (one more Python
process, its ``import adsearch.trial``, the trial spec file and the result read-back).
Runs alternate (built-in, script, built-in, ...) so drifts in machine load hit both alike.
Target: at most 0.5 s more.

Usage: ``taskset -c 0 .venv/bin/python benchmarks/bench_script_child.py [--runs 21]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL = """\
import adsearch.trial
trial = adsearch.trial.current()
trial.report(1, 0.5)
trial.finish(0.5, {"sites": float(len(trial.patterns.patterns))})
"""


def spec(task: str, task_config: dict[str, object], patterns: list[dict[str, object]]) -> dict[str, object]:
    return {"trial_id": 1, "attempt": 1, "task": task, "task_config": task_config,
            "patterns": patterns, "budget": {}, "device": "cpu", "seed": 0, "threads": 1}


def time_child(root: Path, doc: dict[str, object], n: int) -> float:
    """Wall seconds of one child process, spawn to exit; checks it ended ``ok``."""
    spec_path, result_path = root / f"spec-{n}.json", root / f"result-{n}.json"
    spec_path.write_text(json.dumps(doc))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "adsearch.daemon.child", str(spec_path),
                    str(result_path)], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    result = json.loads(result_path.read_text())
    if result["status"] != "ok":
        raise SystemExit(f"child {doc['task']} ended {result['status']}: {result['error']}")
    return wall


def main() -> None:
    from adsearch.patterns import SearchSpace

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="children of each kind")
    args = ap.parse_args()
    space = SearchSpace.from_name("conv-4")
    import random

    patterns = [p.to_dict() for p in space.sample(random.Random(0))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "trivial.py").write_text(TRIVIAL)
        builtin = spec("synthetic", {"space": "conv-4"}, patterns)
        script = spec("script", {"command": f"{sys.executable} trivial.py", "workdir": str(root),
                                 "space": "conv-4"}, patterns)
        time_child(root, builtin, -1), time_child(root, script, -2)  # warm the page cache
        walls: dict[str, list[float]] = {"built-in": [], "script": []}
        for i in range(args.runs):
            walls["built-in"].append(time_child(root, builtin, 2 * i))
            walls["script"].append(time_child(root, script, 2 * i + 1))
    med = {k: statistics.median(v) for k, v in walls.items()}
    extra = med["script"] - med["built-in"]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} CPU(s) allowed, "
          f"Python {platform.python_version()}")
    for k, v in walls.items():
        print(f"{k:9s} child: median {med[k]:.3f} s  (min {min(v):.3f}, max {max(v):.3f}, "
              f"{len(v)} runs)")
    print(f"script mode adds {extra:.3f} s per trial ({med['script'] / med['built-in']:.2f}x); "
          f"target <= 0.5 s: {'met' if extra <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
