"""Task registry and plug-in loader. Importing it is cheap: task modules (and torch) load
only on use, and installed entry points are read only when a name needs them.

A task name is one of (tried in this order, see :func:`get_task`):

- a built-in name in :data:`TASKS` (``cifar10``, ``synthetic``, ...);
- an import path ``package.module:ClassName`` (**ours**: a task plug-in in the user's own
  module, importable through ``PYTHONPATH`` or an installed package);
- the name of an entry point in the group ``adsearch.tasks`` of an installed distribution
  (``[project.entry-points."adsearch.tasks"] mytask = "mypkg.tasks:MyTask"``).

The string itself is what a search stores (``SearchConfig.task``), so the daemon, its
children, ``resume``, ``adsearch worker`` and Ray workers resolve it the same way on every
host. The protocol a plug-in implements is :class:`Task` (docs/tasks.md).
"""

from __future__ import annotations

import importlib
import json
import traceback
from typing import Any, Protocol

from adsearch.errors import AdsearchError, ConfigError
from adsearch.patterns import SearchSpace
from adsearch.tasks.result import Budget, ChildResult

#: name -> "module:attribute" of a class implementing :class:`Task`.
TASKS: dict[str, str] = {
    "cifar10": "adsearch.tasks.image:Cifar10Task",
    "imagenet": "adsearch.tasks.image:ImageNetTask",
    "wikitext2": "adsearch.tasks.lm:WikiText2Task",
    "ptb": "adsearch.tasks.lm:PTBTask",
    "translation": "adsearch.tasks.translation:TranslationTask",
    "synthetic": "adsearch.tasks.synthetic:SyntheticTask",
    "script": "adsearch.tasks.script:ScriptTask",  # the user's own command (script mode)
}

#: tasks whose ``run_child`` calls ``Budget.prune_now`` at its evaluation points (early
#: stopping, see adsearch.daemon.pruning): the image tasks once per epoch, the LM and
#: translation tasks also at each rung (fractional epochs), the synthetic task per epoch.
#: ``script``: through ``adsearch.trial.Trial.report``, which the user's script calls. Plug-ins
#: say so with a class attribute ``supports_pruning = True`` (see :func:`supports_pruning`).
PRUNABLE: frozenset[str] = frozenset({"cifar10", "imagenet", "wikitext2", "ptb", "translation",
                                      "synthetic", "script"})

#: the entry-point group installed packages register their tasks in.
ENTRY_POINT_GROUP = "adsearch.tasks"

#: members every task class must have (the :class:`Task` protocol).
PROTOCOL_METHODS: tuple[str, ...] = ("get_default_config", "config_from_dict", "space", "run_child")

_FIX = "docs/tasks.md, 'Your own task: plug-ins and the Task protocol'"


class Task(Protocol):
    """What every task provides (public API; built-in tasks and plug-ins alike).

    ``config`` objects are the task's own (a frozen dataclass is usual), with a ``to_dict()``
    that returns a JSON object and :meth:`config_from_dict` to rebuild them, so the daemon
    can store them and send them to children on other hosts. Class attribute
    ``supports_pruning: bool`` (default False) says that :meth:`run_child` stops early when
    ``budget.prune_now(...)`` says so; ``data_key``, ``test_data_key`` and ``downloads``
    name the config keys of ``--data``, ``--test-data`` and ``--download``
    (:func:`data_overrides`).
    """

    name: str

    def get_default_config(self) -> Any:
        """The config used when the user gives no overrides."""

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """The config for ``data`` (overrides of the defaults, or a stored ``to_dict()``).
        Raise :class:`~adsearch.errors.ConfigError` naming a bad key or value."""

    def space(self, config: Any) -> SearchSpace:
        """The search space of ``config``: its dropout sites and pattern kind."""

    def run_child(
        self, task_config: Any, regularizer: Any, budget: Budget, device: str, seed: int
    ) -> ChildResult:
        """Train one child with ``regularizer`` (one pattern per site) and return its result."""


def is_builtin(name: str) -> bool:
    """True for a name in :data:`TASKS` (not a plug-in)."""
    return name in TASKS


def is_import_path(name: str) -> bool:
    """True for a ``package.module:ClassName`` string."""
    return ":" in name


def entry_point_names() -> list[str]:
    """Names of the tasks installed packages register (group ``adsearch.tasks``)."""
    return sorted({ep.name for ep in _entry_points()})


def task_names() -> list[str]:
    """Built-in task names (entry points: :func:`entry_point_names`)."""
    return sorted(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``: a built-in name, ``module:Class`` or an entry point.

    Raises ConfigError (with the fix) for an unknown name, a module that does not import
    (showing the import error and the file it came from), a missing class, a class that
    does not implement :class:`Task`, or one whose constructor fails.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"task name {name!r} is empty; {_known()}")
    if name in TASKS:
        return _instantiate(TASKS[name], _load(TASKS[name], name), name)
    if is_import_path(name):
        return _instantiate(name, _load(name, name), name)
    for ep in _entry_points():
        if ep.name == name:
            target = ep.value
            where = f"entry point {name!r} ({ENTRY_POINT_GROUP}: {target}"
            dist = getattr(getattr(ep, "dist", None), "name", None)
            where += f", package {dist})" if dist else ")"
            return _instantiate(target, _load(target, where), where)
    raise ConfigError(f"unknown task {name!r}; {_known()}")


def supports_pruning(name: str, task: Task) -> bool:
    """Whether ``task`` (resolved from ``name``) honours ``Budget.prune_now``."""
    if name in TASKS:
        return name in PRUNABLE
    return bool(getattr(type(task), "supports_pruning", False))


def data_overrides(task: Task, name: str, *, data: str | None = None,
                   test_data: str | None = None, download: bool = False) -> dict[str, Any]:
    """The task config keys that ``--data``, ``--test-data`` and ``--download`` set for
    ``task`` (resolved from ``name``): each task declares its own with class attributes

    - ``data_key`` (default ``"data"``): the key ``--data`` sets;
    - ``test_data_key`` (default ``"test_data"``): the key ``--test-data`` sets (a
      directory, a file or, for translation, a path prefix); None: the task has no test
      data to point at, and ``--test-data`` is refused;
    - ``downloads`` (default False): ``--download`` may fetch the data into ``--data``.

    ``adsearch train`` and ``adsearch verify`` ask this, so neither holds task knowledge.
    Raises ConfigError for an option the task does not take.
    """
    kind = type(task)
    out: dict[str, Any] = {}
    if data is not None:
        out[str(getattr(kind, "data_key", "data"))] = str(data)
    if test_data is not None:
        key = getattr(kind, "test_data_key", "test_data")
        if key is None:
            raise ConfigError(f"--test-data is not supported by task {name}")
        out[str(key)] = str(test_data)
    if download:
        if not getattr(kind, "downloads", False):
            raise ConfigError(f"--download only applies to tasks that fetch their data "
                              f"(cifar10), not {name}")
        out["download"] = True
    return out


def load_config(task: Task, name: str, data: dict[str, Any]) -> Any:
    """``task.config_from_dict(data)``, checked: it parses, ``to_dict()`` gives a JSON object
    that parses back, and ``task.space(config)`` is a :class:`SearchSpace`.

    A built-in task's own ConfigError/DataError passes unchanged; anything else a plug-in
    raises becomes a ConfigError that names the plug-in and its exception.
    """
    try:
        config = task.config_from_dict(dict(data))
    except AdsearchError:
        raise
    except Exception as exc:
        raise ConfigError(f"task {name}: its config does not parse ({_exc_text(exc)}); fix "
                          f"--task-config or the task's config_from_dict") from None
    to_dict = getattr(config, "to_dict", None)
    if not callable(to_dict):
        raise ConfigError(f"task {name}: config_from_dict returned a {type(config).__name__} "
                          "without to_dict(); return a config object with to_dict() -> dict "
                          f"(e.g. a frozen dataclass, see {_FIX})")
    try:
        stored = to_dict()
        json.dumps(stored, allow_nan=False)
        if not isinstance(stored, dict):
            raise TypeError(f"to_dict() returned a {type(stored).__name__}, not a dict")
        task.config_from_dict(dict(stored))
    except AdsearchError as exc:
        raise ConfigError(f"task {name}: its config does not read back from to_dict() "
                          f"({exc}); make config_from_dict accept what to_dict returns") from None
    except Exception as exc:
        raise ConfigError(f"task {name}: its config is not storable ({_exc_text(exc)}); "
                          "to_dict() must return a JSON object that config_from_dict accepts"
                          ) from None
    check_space(task, name, config)
    return config


def check_space(task: Task, name: str, config: Any) -> SearchSpace:
    """``task.space(config)``, refused unless it is a :class:`SearchSpace`."""
    try:
        space = task.space(config)
    except AdsearchError as exc:
        raise ConfigError(f"task {name}: its space is invalid ({exc})") from None
    except Exception as exc:
        raise ConfigError(f"task {name}: space(config) raised {_exc_text(exc)}; fix the "
                          "task's space method") from None
    if not isinstance(space, SearchSpace):
        raise ConfigError(
            f"task {name}: space(config) returned {space!r}, not an adsearch.patterns."
            "SearchSpace; return e.g. SearchSpace.from_name('conv-2') (one pattern per "
            "dropout site)"
        )
    return space


# ----------------------------------------------------------------------------- loading
def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def _known() -> str:
    text = f"built-in tasks are {', '.join(task_names())}"
    eps = entry_point_names()
    text += f"; installed plug-ins ({ENTRY_POINT_GROUP}): {', '.join(eps) if eps else 'none'}"
    return text + "; or give a plug-in as --task package.module:ClassName"


def _load(target: str, label: str) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted) and return the attribute."""
    module, _, attr = target.partition(":")
    module, attr = module.strip(), attr.strip()
    if not module or not attr:
        raise ConfigError(f"task {label!r}: expected an import path package.module:ClassName, "
                          f"e.g. mytask:MyTask")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            raise ConfigError(
                f"task {label}: cannot import module {module!r} ({exc}); make it importable "
                f"on this host, e.g. PYTHONPATH=/path/to/its/folder or pip install its package"
            ) from None
        raise ConfigError(f"task {label}: importing module {module!r} failed: "
                          f"{_exc_text(exc)}{_where(exc)}; fix that import") from None
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(f"task {label}: importing module {module!r} failed: "
                          f"{_exc_text(exc)}{_where(exc)}; fix the module") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            classes = sorted(k for k, v in vars(mod).items() if isinstance(v, type)
                             and getattr(v, "__module__", None) == mod.__name__)
            raise ConfigError(
                f"task {label}: module {module!r} ({getattr(mod, '__file__', '?')}) has no "
                f"{attr!r}; classes it defines: {', '.join(classes) or 'none'}"
            )
        obj = getattr(obj, part)
    return obj


def _instantiate(target: str, cls: Any, label: str) -> Task:
    if not isinstance(cls, type):
        raise ConfigError(f"task {label}: {target} is a {type(cls).__name__}, not a class; "
                          f"point --task at a class implementing the Task protocol ({_FIX})")
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            f"task {label}: class {cls.__name__} is missing {', '.join(missing)}; a task "
            f"implements {', '.join(PROTOCOL_METHODS)} and a name attribute ({_FIX})"
        )
    try:
        task = cls()
    except Exception as exc:
        raise ConfigError(f"task {label}: {cls.__name__}() raised {_exc_text(exc)}{_where(exc)}; "
                          "a task class must be constructible without arguments") from None
    if not isinstance(getattr(task, "name", None), str):
        raise ConfigError(f"task {label}: class {cls.__name__} has no name attribute (a str); "
                          f"add e.g. name = {cls.__name__.lower()!r} ({_FIX})")
    return task  # type: ignore[no-any-return]


def _exc_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _where(exc: BaseException) -> str:
    """`` (at FILE:LINE)`` of the innermost frame outside Python's import machinery."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<") and "importlib" not in f.filename
              and not f.filename.endswith("adsearch/tasks/registry.py")]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
