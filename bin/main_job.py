"""The main job (``make run``): a short, real AutoDropout search on the embedded CIFAR-10
sample, in the foreground, then its status and its best pattern.

Real children: each trial trains the ``cifar10`` task's WRN child on the CIFAR-10 sample
that ships inside the package (2,000 training / 500 validation images) for
``--child-epochs`` epochs on one CPU thread per worker, and its reward is the validation
accuracy. With the defaults (2 workers, 10 trials, 2 epochs) it takes a few minutes on a
2-core CPU.

It can be stopped (Ctrl-C: warm stop, twice: cold stop) and run again: an unfinished
main-job search under ``--runs-dir`` is resumed, not restarted. A finished one is kept, and
a new search is started beside it.

Usage::

    .venv/bin/python bin/main_job.py [--trials 10] [--workers 2] [--child-epochs 2]
                                     [--runs-dir runs] [--task-config JSON] [--child-steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PREFIX = "main-cifar10"


def adsearch(*args: str, env: dict[str, str]) -> int:
    """Run one ``adsearch`` command in this terminal; return its exit status."""
    print(f"\n$ adsearch {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "adsearch", *args], env=env)


def unfinished_search(runs: Path) -> str | None:
    """The newest main-job search under ``runs`` that is not finished, if any."""
    from adsearch.daemon.launch import load_search
    from adsearch.daemon.rundir import RunDir

    if not runs.is_dir():
        return None
    for path in sorted(runs.glob(f"{PREFIX}-*"), reverse=True):
        run = RunDir(path)
        if run.identity() is None:
            continue
        store, search = load_search(run)
        store.close()
        if search.state != "finished":
            return search.name
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trial budget (children)")
    parser.add_argument("--workers", type=int, default=2, help="children at once (CPU)")
    parser.add_argument("--batch-size", type=int, default=5, help="results per controller update")
    parser.add_argument("--child-epochs", type=float, default=2.0, help="epochs per child")
    parser.add_argument("--child-steps", type=int, default=None, help="steps per child (tests)")
    parser.add_argument("--task-config", default=None, help="cifar10 task config overrides (JSON)")
    parser.add_argument("--runs-dir", default="runs", help="where run directories live")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    runs = Path(args.runs_dir).absolute()
    env = dict(os.environ, ADSEARCH_RUNS=str(runs))
    name = unfinished_search(runs)
    if name is not None:
        print(f"resuming the unfinished search {name}", flush=True)
        code = adsearch("resume", name, "--foreground", env=env)
    else:
        name = f"{PREFIX}-{time.strftime('%Y%m%d-%H%M%S')}"
        cmd = ["start", "--task", "cifar10", "--name", name, "--controller", "transformer",
               "--workers", str(args.workers), "--budget-trials", str(args.trials),
               "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--foreground"]
        if args.child_steps is not None:
            cmd += ["--child-steps", str(args.child_steps)]
        else:
            cmd += ["--child-epochs", str(args.child_epochs)]
        if args.task_config:
            json.loads(args.task_config)  # fail here, not in the daemon
            cmd += ["--task-config", args.task_config]
        code = adsearch(*cmd, env=env)
    if code != 0:
        return code
    if adsearch("status", name, env=env) != 0:
        return 1
    best = runs / name / "best.json"
    if adsearch("export", name, "--best", "-o", str(best), env=env) != 0:
        return 1
    return adsearch("pattern", "show", str(best), env=env)


if __name__ == "__main__":
    sys.exit(main())
