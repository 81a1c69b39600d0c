"""A seeded TPE search on a real task, killed with kill -9 and resumed, against the same
search without the kill (issue 20, "Done means"): do the two draw the same patterns?

Runs ``adsearch start --seed-baselines --controller tpe`` twice with one worker: once to
the end (the reference), once killed with SIGKILL after ``--kill-after`` results and then
resumed. Prints and writes (``-o``) the trial sequences (purpose and tokens by trial id),
whether they are equal, and how many trials the resumed daemon drew.

Usage: ``taskset -c 0 python benchmarks/seeded_resume_check.py --task cifar10 --space
conv2-3 --task-config '{"width": 1}' --child-steps 4 --budget 12 --kill-after 9 -o out.json``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def cli(runs: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ADSEARCH_RUNS=str(runs))
    proc = subprocess.run([sys.executable, "-m", "adsearch", *args], env=env, cwd=runs.parent,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"adsearch {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def trials(run_dir: Path) -> list[dict[str, Any]]:
    from adsearch.store import Store

    store = Store(f"sqlite:///{run_dir / 'adsearch.db'}", readonly=True)
    try:
        search = store.get_search(run_dir.name)
        return [{"id": t.id, "purpose": t.purpose, "state": t.state, "tokens": list(t.tokens)}
                for t in store.trials(search.id)]
    finally:
        store.close()


def daemon_pid(run_dir: Path) -> int | None:
    from adsearch.daemon.rundir import RunDir

    return RunDir(run_dir).daemon_pid()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--space", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--task-config", default=None)
    ap.add_argument("--child-steps", type=int, default=4)
    ap.add_argument("--budget", type=int, default=12)
    ap.add_argument("--kill-after", type=int, default=9, help="results before the kill")
    ap.add_argument("-o", "--output", default=None)
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="seeded-resume-"))
    runs = root / "runs"
    base = ["start", "--task", a.task, "--space", a.space, "--controller", "tpe",
            "--seed-baselines", "--workers", "1", "--batch-size", "4", "--budget-trials",
            str(a.budget), "--child-steps", str(a.child_steps), "--no-recheck", "--seed", "1"]
    if a.data:
        base += ["--data", a.data]
    if a.task_config:
        base += ["--task-config", a.task_config]
    t0 = time.time()
    cli(runs, *base, "--name", "ref", "--foreground")
    ref = trials(runs / "ref")
    t_ref = time.time() - t0
    cli(runs, *base, "--name", "k")
    run_dir = runs / "k"
    while len([t for t in trials(run_dir) if t["state"] == "done"]) < a.kill_after:
        time.sleep(0.5)
    pid = daemon_pid(run_dir)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(1.0)
    before = trials(run_dir)
    cli(runs, "resume", "k")
    while daemon_pid(run_dir) is not None:
        time.sleep(1.0)
    after = trials(run_dir)
    strip = [[(t["id"], t["purpose"], t["tokens"]) for t in x] for x in (ref, after)]
    doc = {"task": a.task, "space": a.space, "budget": a.budget, "child_steps": a.child_steps,
           "killed_after_results": a.kill_after, "stored_at_kill": len(before),
           "drawn_after_resume": len(after) - len(before),
           "enqueued": sum(t["purpose"] == "enqueued" for t in ref),
           "same_as_without_kill": strip[0] == strip[1], "reference_seconds": round(t_ref, 1),
           "reference": ref, "killed_and_resumed": after}
    print(json.dumps({k: v for k, v in doc.items() if k not in ("reference", "killed_and_resumed")}))
    if a.output:
        Path(a.output).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
