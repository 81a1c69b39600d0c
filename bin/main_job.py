"""The main job (``make run``): a short, real AutoDropout search on the embedded CIFAR-10
sample, in the foreground, then what its numbers are and its best pattern.

Real children: each trial trains the ``cifar10`` task's WRN child (WRN-10-1 here: width 1,
so that the demo fits in about 5 minutes on one core) on the CIFAR-10 sample that ships
inside the package (2,000 training / 500 validation images) for ``--child-epochs`` epochs
on one CPU thread per worker, and its reward is the validation accuracy. A drawn pattern
that would drop more than half of a site's units is refused before it trains (no child,
reward 0; adsearch/ops/cap.py): most of the untrained controller's draws are.

The demo shows what adsearch is for, a controller that learns: with the defaults (30
trials, batch 3, 2 workers, ``--max-ahead`` batch + workers = 5) the untrained controller
(version 0) draws the first trials only; it is updated from every 3 results, and the later
trials come from versions 1, 2, 3, ... (each progress line names its version). When the
trial budget is spent the search re-checks its top ``--recheck-top`` patterns on
``--recheck-seeds`` more seeds each, and the export picks on the mean over seeds (issue 19
§5). Then the job says plainly what the numbers are: trials per controller version, how
many were refused, the mean reward per version, and how large a difference this small
protocol can tell from noise (not much: it is a demo of the machinery, not a result).
Timing: see README.md (``taskset -c 0 make run``).

When its output is not a terminal (piped, logged, CI) the search prints one line per trial
and per controller update instead of a live table, and the final table once.

It can be stopped (Ctrl-C: warm stop, twice: cold stop) and run again: an unfinished
main-job search under ``--runs-dir`` is resumed, not restarted. A finished one is kept, and
a new search is started beside it.

Usage::

    .venv/bin/python bin/main_job.py [--trials 30] [--workers 2] [--batch-size 3]
                                     [--max-ahead N] [--child-epochs 2]
                                     [--recheck-top 2] [--recheck-seeds 1]
                                     [--runs-dir runs] [--task-config JSON] [--child-steps N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from adsearch.command import activate_hint, adsearch_command

PREFIX = "main-cifar10"
#: The demo's child network: WRN-10-1 (width 2 is the task's default; 1 is 3x cheaper).
DEMO_TASK_CONFIG = {"width": 1}


def adsearch(*args: str, env: dict[str, str]) -> int:
    """Run one ``adsearch`` command in this terminal; return its exit status. The echoed
    command is the one that works in the user's shell (``.venv/bin/adsearch`` when adsearch
    is not on PATH)."""
    print(f"\n$ {adsearch_command()} {' '.join(args)}", flush=True)
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


def summary(run_dir: Path) -> list[str]:
    """What the numbers of the search in ``run_dir`` are, in plain lines: what a child is,
    how many children each controller version drew and their mean reward, the re-check,
    and the noise of one reward at this size."""
    from adsearch.daemon.launch import load_search
    from adsearch.daemon.rundir import RunDir

    store, search = load_search(RunDir(run_dir))
    try:
        cfg = search.config
        tc = cfg.get("task_config") or {}
        trials = store.trials(search.id)
        results = {r.trial_id: r for r in store.results(search.id)}
        updates = store.events(search.id, limit=10_000, kinds=["controller.update"])
    finally:
        store.close()
    own = [t for t in trials if getattr(t, "purpose", "search") == "search"]
    good = [results[t.id].reward for t in own if t.id in results
            and results[t.id].reward is not None
            and not (results[t.id].metrics or {}).get("bad_pattern")]
    n_val = 10 * int(tc["val_per_class"]) if tc.get("val_per_class") else 500
    epochs = cfg.get("child_epochs")
    child = (f"a WRN-{tc.get('depth', 10)}-{tc.get('width', 2)} trained "
             + (f"{epochs:g} epoch(s)" if epochs else f"{cfg.get('child_steps')} step(s)")
             + " on the CIFAR-10 sample in the package")
    lines = [f"{len(own)} trials: each child is {child}; its reward is its accuracy on "
             f"{n_val} held-out validation images (chance: 0.10)."]
    by_version = Counter(t.controller_version for t in own)
    rewards: dict[int, list[float]] = defaultdict(list)
    refused: Counter[int] = Counter()
    for t in own:
        r = results.get(t.id)
        metrics = (r.metrics or {}) if r is not None else {}
        if metrics.get("refused"):
            refused[t.controller_version] += 1
        elif r is not None and r.reward is not None and not metrics.get("bad_pattern"):
            rewards[t.controller_version].append(float(r.reward))
    drawn = "; ".join(
        f"v{v}{' (untrained: uniform random)' if v == 0 else ''}: {n} drawn"
        + (f", {refused[v]} refused" if refused[v] else "")
        + (f", mean reward {sum(rewards[v]) / len(rewards[v]):.3f}" if rewards[v] else "")
        for v, n in sorted(by_version.items()))
    lines.append(f"The controller learned {len(updates)} time(s), from batches of "
                 f"{cfg.get('batch_size')} results. Trials by the controller version that "
                 f"drew them: {drawn}.")
    if refused:
        lines.append(f"Refused: {sum(refused.values())} pattern(s) dropped more than "
                     f"{cfg.get('max_drop', 0.5):.0%} of a site's units, so they were not "
                     "trained (no child) and taught the controller reward 0, which is how it "
                     "learns to avoid patterns that would wipe their network.")
    rechecks = [t for t in trials if getattr(t, "purpose", "search") == "recheck"]
    if rechecks:
        lines.append(f"Re-check: {len(rechecks)} more run(s) of the top pattern(s) on new "
                     "seeds; the export below picks on the mean over seeds.")
    if good:
        p = min(max(sum(good) / len(good), 0.01), 0.99)
        se = math.sqrt(p * (1 - p) / n_val)
        lines.append(
            f"How much is noise: one accuracy on {n_val} images has a standard error of about "
            f"{se:.3f} (at {p:.2f}), so two children closer than about {2.8 * se:.2f} (the "
            "95% range of a difference) are a tie, before a new seed moves them further. "
            "At this size the search shows the machinery (draws, updates, the re-check, the "
            "export), not a better pattern: real searches train hundreds of children for "
            "hours (README.md, Results).")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30,
                        help="trial budget (drawn patterns; a refused one trains no child)")
    parser.add_argument("--workers", type=int, default=2, help="children at once (CPU)")
    parser.add_argument("--batch-size", type=int, default=3, help="results per controller update")
    parser.add_argument("--max-ahead", type=int, default=None,
                        help="most trials drawn before the controller learns from them "
                             "(default: batch size + workers)")
    parser.add_argument("--recheck-top", type=int, default=2,
                        help="patterns re-checked on more seeds after the budget (0: none)")
    parser.add_argument("--recheck-seeds", type=int, default=1,
                        help="more seeds per re-checked pattern")
    parser.add_argument("--child-epochs", type=float, default=2.0, help="epochs per child")
    parser.add_argument("--child-steps", type=int, default=None, help="steps per child (tests)")
    parser.add_argument("--task-config", default=None,
                        help=f"cifar10 task config overrides (JSON; the demo's: "
                             f"{json.dumps(DEMO_TASK_CONFIG)})")
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
        ahead = args.max_ahead or args.batch_size + args.workers
        try:  # fail here, not in the daemon
            given = json.loads(args.task_config) if args.task_config else {}
        except ValueError as exc:
            parser.error(f"--task-config: not JSON ({exc})")
        task_config = {**DEMO_TASK_CONFIG, **given}
        cmd = ["start", "--task", "cifar10", "--name", name, "--controller", "transformer",
               "--workers", str(args.workers), "--budget-trials", str(args.trials),
               "--batch-size", str(args.batch_size), "--max-ahead", str(ahead),
               "--seed", str(args.seed), "--task-config", json.dumps(task_config),
               "--foreground"]
        print(f"adsearch learns dropout patterns: a controller proposes one pattern per stage "
              f"of a network, a child network trains with it, and the child's validation "
              f"accuracy teaches the controller. This search draws {args.trials} patterns "
              f"(trials; one that would drop more than half of a site's units is refused "
              f"without training a child), trains {args.workers} children at a time, and the "
              f"controller learns from every {args.batch_size} results; at most {ahead} trials "
              "are drawn before it has learned from them, so the later ones come from an "
              "updated controller (each line names the version that drew it).", flush=True)
        if args.recheck_top > 0:
            cmd += ["--recheck-top", str(args.recheck_top),
                    "--recheck-seeds", str(args.recheck_seeds)]
            print(f"the search trains {args.trials} children, then re-checks its top "
                  f"{args.recheck_top} pattern(s) on {args.recheck_seeds} more seed(s) each "
                  f"({args.recheck_top * args.recheck_seeds} more children; the display shows "
                  "'stage: re-check: ...' while they run), and the export picks on the mean "
                  "over seeds", flush=True)
        else:
            cmd += ["--no-recheck"]
        if args.child_steps is not None:
            cmd += ["--child-steps", str(args.child_steps)]
        else:
            cmd += ["--child-epochs", str(args.child_epochs)]
        code = adsearch(*cmd, env=env)
    if code != 0:
        return code
    print("\nWhat the numbers are:", flush=True)
    for line in summary(runs / name):
        print(f"- {line}", flush=True)
    best = runs / name / "best.json"
    if adsearch("export", name, "--best", "-o", str(best), env=env) != 0:
        return 1
    if adsearch("pattern", "show", str(best), env=env) != 0:
        return 1
    cmd = adsearch_command()
    hint = activate_hint()
    print(f"\nNext: `{cmd} status {name}` (the table above again), `{cmd} --help`, and "
          "README.md, *Using it*." + (f" `adsearch` is not on this shell's PATH: run `{hint}` "
                                      "to type it as plain `adsearch`." if hint else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
