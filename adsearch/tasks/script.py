"""The ``script`` task: each child runs the user's own training command (script mode, **ours**).

``adsearch start --script "python train.py --epochs 30" --space conv-4 [--workdir DIR]``
stores the command line, the working directory and the space in this task's config, so
``resume``, ``adsearch worker`` and Ray workers run the same command. The command runs
without a shell (``shlex.split``), in ``workdir``, with ``ADSEARCH_TRIAL`` set to a trial spec
file (JSON: ``trial_id``, ``attempt``, ``space``, ``patterns``, ``seed``, ``device``,
``budget``, ``threads``); the script reads it with :func:`adsearch.trial.current`, reports
curve points and finishes with a reward (:mod:`adsearch.trial`). Its stdout and stderr go to
the trial's log (with the Ray executor: to the Ray worker's log).

Outcomes (what the daemon records):

- ``trial.finish(reward)`` and exit status 0: the reward, metrics and reported curve;
- stopped by early stopping (``report`` returned True): the reward it finished with, or
  the reported value if it exited without ``finish``, marked ``truncated``;
- exit status non-zero, or 0 without ``finish``: a result of the pattern (``bad_pattern``),
  with the uncaught exception's type name (``user_exception``) when the script imported
  :mod:`adsearch.trial`, so a bug (``NameError``...) can be told from a bad pattern;
- killed by a signal (``kill -9``, the OOM killer): an infrastructure failure, retried.

The script dies with its child process: it is in the child's process group (the daemon's
timeout and cold stop kill the group) and asks the kernel for SIGKILL when the child dies
(``PR_SET_PDEATHSIG``), so a killed child or daemon leaves no orphan training on.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import SearchSpace
from adsearch.reward import from_metric
from adsearch.tasks.result import Budget, ChildResult
from adsearch.trial_files import CURVE_FILE, ENV_TRIAL, EXCEPTION_FILE, RESULT_FILE, SITES_FILE

ENV_TRIAL_ID, ENV_ATTEMPT = "ADSEARCH_TRIAL_ID", "ADSEARCH_ATTEMPT"  # set by the child process
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ScriptConfig:
    task: str = "script"  # registry name (fixed)
    command: str = ""  # the command line of one child, e.g. "python train.py --epochs 3"
    workdir: str = ""  # absolute directory the command runs in
    space: str = ""  # search space the script's dropout sites make, e.g. conv-4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)


class ScriptError(RuntimeError):
    """A script child ended without a result. ``adsearch_failure`` (``"bad_pattern"`` or
    ``"infra"``) and ``user_exception`` (the type name of the script's uncaught exception)
    tell :func:`adsearch.daemon.failures.classify` what it was."""

    def __init__(self, message: str, *, adsearch_failure: str | None = None,
                 user_exception: str | None = None) -> None:
        super().__init__(message)
        self.adsearch_failure = adsearch_failure
        self.user_exception = user_exception


def parse_command(command: Any) -> list[str]:
    """``command`` split as a shell would (no shell runs it); ConfigError names the fix."""
    example = "e.g. --script 'python train.py --epochs 3'"
    if not isinstance(command, str) or not command.strip():
        raise ConfigError(f"--script: the command is empty; give the command that trains one "
                          f"child, {example}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"--script: cannot parse {command!r} ({exc}); quote it as in a "
                          f"shell, {example}") from None
    if not argv:
        raise ConfigError(f"--script: the command is empty; {example}")
    return argv


def _check_program(argv: list[str], workdir: Path) -> None:
    prog = argv[0]
    if os.sep in prog:
        path = Path(prog) if os.path.isabs(prog) else workdir / prog
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"--script: program {prog!r} is not an executable file in "
                              f"{workdir}; fix the path or run it through an interpreter "
                              f"(--script 'python {prog} ...')")
    elif shutil.which(prog) is None:
        raise ConfigError(f"--script: program {prog!r} is not on PATH; give its full path "
                          "or install it")
    if Path(prog).name.startswith("python") and len(argv) > 1 and not argv[1].startswith("-"):
        script = Path(argv[1]) if os.path.isabs(argv[1]) else workdir / argv[1]
        if not script.is_file():
            raise ConfigError(f"--script: {argv[1]} does not exist in {workdir}; fix the path "
                              "or pass --workdir (the directory the command runs in)")


class ScriptTask:
    """Runs the user's command as each child (see the module docstring)."""

    name = "script"
    test_data_key = None  # the script reads its own data: --test-data is refused

    def get_default_config(self) -> ScriptConfig:
        return ScriptConfig()

    def config_from_dict(self, data: dict[str, Any]) -> ScriptConfig:
        known = {f.name for f in fields(ScriptConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            hint = ("; the script reads its own data: pass the path in --script"
                    if "data" in unknown else "")
            raise ConfigError(f"script task config: unknown key(s) {', '.join(unknown)}; known "
                              f"keys are {', '.join(sorted(known))}{hint}")
        cfg = ScriptConfig(**data)
        if cfg.task != "script":
            raise ConfigError(f"script task config: task is {cfg.task!r}, expected 'script'")
        argv = parse_command(cfg.command)
        workdir = Path(cfg.workdir or ".").expanduser()
        if not workdir.is_dir():
            what = "is not a directory" if workdir.exists() else "does not exist"
            raise ConfigError(f"--workdir: {workdir} {what}; give the directory the command "
                              "runs in (default: the current directory)")
        _check_program(argv, workdir)
        if not cfg.space:
            raise ConfigError("--script needs --space: the space of the dropout sites your "
                              "script attaches, e.g. --space conv-4 "
                              "(adsearch.sites.find_sites lists them)")
        try:
            SearchSpace.from_name(cfg.space)
        except PatternError as exc:
            raise ConfigError(f"--space: {exc}") from None
        return ScriptConfig(command=cfg.command, workdir=str(workdir.absolute()), space=cfg.space)

    def space(self, config: ScriptConfig) -> SearchSpace:
        return SearchSpace.from_name(config.space)

    def run_child(self, task_config: ScriptConfig | dict[str, Any], regularizer: Any,
                  budget: Budget, device: str, seed: int) -> ChildResult:
        """Run the command once for these patterns and return what the script finished with.
        Raises :class:`ScriptError` when it ended without a result."""
        c = task_config if isinstance(task_config, ScriptConfig) else self.config_from_dict(task_config)
        space = self.space(c)
        baseline: dict[str, Any] | None = None
        if isinstance(regularizer, dict):  # a baseline spec of `adsearch verify`
            baseline, patterns = dict(regularizer), []
        else:
            patterns = list(getattr(regularizer, "patterns", regularizer) or [])
            space.encode(patterns)  # the count and types fit the space
        started = time.time()
        tdir = Path(tempfile.mkdtemp(prefix="adsearch-trial-"))
        try:
            spec = {"trial_id": int(os.environ.get(ENV_TRIAL_ID, "0")),
                    "attempt": int(os.environ.get(ENV_ATTEMPT, "1")), "space": space.name,
                    "patterns": [p.to_dict() for p in patterns], "baseline": baseline,
                    "seed": int(seed),
                    "device": device, "budget": budget.to_dict(),
                    "threads": int(os.environ.get("OMP_NUM_THREADS") or 0)}
            (tdir / "trial.json").write_text(json.dumps(spec), encoding="utf-8")
            code, stderr = _run(c.argv, Path(c.workdir), tdir / "trial.json")
            try:
                return _outcome(code, tdir, c.command, budget, time.time() - started, stderr)
            except ScriptError as exc:
                if exc.user_exception in _IMPORT_ERRORS:
                    raise ScriptError(f"{exc}{_interpreter_hint(c.argv, Path(c.workdir))}",
                                      user_exception=exc.user_exception) from None
                raise
        finally:
            shutil.rmtree(tdir, ignore_errors=True)


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that makes the script get SIGKILL when this process dies."""
    parent = os.getpid()
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the process-group kill still applies
        prctl = None

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(3)

    return preexec


def _run(argv: list[str], workdir: Path, spec_path: Path) -> tuple[int, str]:
    """Run the command to its end. Its stdout goes to this process's stdout; its stderr is
    copied to this process's stderr as it comes, keeping the last 8 KiB. Returns
    ``(exit status, stderr tail)``."""
    env = dict(os.environ)
    env[ENV_TRIAL] = str(spec_path)
    env.pop("ADSEARCH_PARENT_PID", None)
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"[script] {shlex.join(argv)} (in {workdir})", flush=True)
    try:
        proc = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, close_fds=True,
                                preexec_fn=_die_with_parent())  # noqa: PLW1509
    except OSError as exc:  # the program vanished or is not executable on this host
        raise ConfigError(f"--script: cannot run {argv[0]!r} in {workdir} ({exc.strerror}); "
                          "fix the command or install the program on this host") from None
    tail = bytearray()
    assert proc.stderr is not None

    def pump(src: int) -> None:
        while chunk := os.read(src, 65536):
            os.write(2, chunk)
            tail.extend(chunk)
            del tail[:-8192]

    copier = threading.Thread(target=pump, args=(proc.stderr.fileno(),), daemon=True)
    copier.start()
    code = proc.wait()
    copier.join(timeout=5.0)  # a grandchild may still hold the pipe: do not wait for it
    return code, tail.decode(errors="replace")


_RAISED = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_IMPORT_ERRORS = ("ModuleNotFoundError", "ImportError")


def interpreter(argv: list[str], workdir: Path) -> str | None:
    """The program that ran the script: ``argv[0]`` found on PATH (or in ``workdir``), or,
    for a script run directly, the interpreter of its ``#!`` line; None if unknown."""
    prog = argv[0]
    path = (str(Path(prog) if os.path.isabs(prog) else workdir / prog) if os.sep in prog
            else shutil.which(prog))
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return path
    if not first.startswith(b"#!"):
        return path
    words = first[2:].decode(errors="replace").split()
    if not words:
        return path
    if Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[-1]) or words[-1]
    return words[0]


def _interpreter_hint(argv: list[str], workdir: Path) -> str:
    """``" (run by /usr/bin/python3; ...)"``: which interpreter ran a script that failed on
    an import, and how to run it with the Python adsearch runs in."""
    used = interpreter(argv, workdir)
    if used is None:
        return ""
    if os.path.abspath(used) == os.path.abspath(sys.executable):
        return f" (run by {used})"
    return (f" (run by {used}, not by the Python adsearch runs in, {sys.executable}: give "
            f"that one in --script, e.g. --script '{sys.executable} ...', or install the "
            f"missing module for {used})")


def raised_type(stderr: str) -> str | None:
    """The type name of the exception in the last Python traceback of ``stderr``, if any
    (for scripts that failed before :func:`adsearch.trial.current` installed its hook)."""
    at = stderr.rfind("Traceback (most recent call last):")
    if at < 0:
        return None
    for line in reversed(stderr[at:].splitlines()[1:]):
        if line and not line[0].isspace() and (m := _RAISED.match(line)):
            return m.group(1).rsplit(".", 1)[-1]
    return None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _outcome(code: int, tdir: Path, command: str, budget: Budget, seconds: float,
             stderr: str = "") -> ChildResult:
    curve = [json.loads(line) for line in _lines(tdir / CURVE_FILE)]
    pruned = next((p for p in curve if p.get("pruned")), None)
    marks = pruned["pruned"] if pruned is not None and isinstance(pruned["pruned"], dict) else {}
    for p in curve:  # marks: Budget.truncation() of the rung where the script was stopped
        p.pop("pruned", None)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        raise ScriptError(f"the script was killed by signal {name} ({command!r})",
                          adsearch_failure="infra")
    if code != 0:
        exc = _read(tdir / EXCEPTION_FILE)
        if isinstance(exc, dict) and exc.get("type"):
            raise ScriptError(f"the script exited with status {code} after an uncaught "
                              f"{exc['type']}: {exc.get('message', '')}",
                              user_exception=str(exc["type"]))
        raised = raised_type(stderr)
        if raised is not None:
            last = stderr.strip().splitlines()[-1][:500]
            raise ScriptError(f"the script exited with status {code} after an uncaught {last}",
                              user_exception=raised)
        raise ScriptError(f"the script exited with status {code} (its output is in the trial "
                          "log)", adsearch_failure="bad_pattern")
    result = _read(tdir / RESULT_FILE)
    metrics: dict[str, Any] = {}
    sites = _read(tdir / SITES_FILE)  # each site's map, if the script's attach reported it
    if isinstance(sites, dict) and isinstance(sites.get("maps"), list):
        metrics["site_maps"] = sites["maps"]  # a list: verify's tables skip it
    if pruned is not None:
        metrics.update({"truncated": 1.0, "truncated_at_epoch": float(pruned["epoch"]),
                        **{k: float(v) for k, v in marks.items()}})
    if isinstance(result, dict):
        reward = from_metric("reward", float(result["reward"]))  # the script's, as is
        metrics = {**{k: float(v) for k, v in result.get("metrics", {}).items()}, **metrics}
    elif pruned is not None:
        reward = from_metric("reward", float(pruned["val_metric"]))
    else:
        raise ScriptError("the script exited with status 0 without calling "
                          "adsearch.trial.current().finish(reward)", adsearch_failure="bad_pattern")
    return ChildResult(reward=reward, metrics=metrics, curve=curve, seconds=seconds)


def _lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError:
        return []
