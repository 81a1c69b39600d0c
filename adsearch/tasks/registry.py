"""Task registry. Importing it is cheap: task modules (and torch) load only on use."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from adsearch.errors import ConfigError
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

#: tasks whose ``run_child`` honours ``Budget.prune_epoch``/``prune_below`` (early stopping:
#: one curve point per epoch whose ``val_metric`` is the reward). ``script``: through
#: ``adsearch.trial.Trial.report``, which the user's script calls once per epoch.
PRUNABLE: frozenset[str] = frozenset({"cifar10", "imagenet", "script"})


class Task(Protocol):
    """What every task provides. ``config`` objects are the task's own frozen dataclass,
    with ``to_dict()`` / ``config_from_dict()`` so the daemon can store them as JSON."""

    name: str

    def get_default_config(self) -> Any: ...

    def config_from_dict(self, data: dict[str, Any]) -> Any: ...

    def space(self, config: Any) -> SearchSpace: ...

    def run_child(
        self, task_config: Any, regularizer: Any, budget: Budget, device: str, seed: int
    ) -> ChildResult: ...


def task_names() -> list[str]:
    return sorted(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name raises ConfigError listing the known ones."""
    target = TASKS.get(name)
    if target is None:
        raise ConfigError(f"unknown task {name!r}; known tasks are {', '.join(task_names())}")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls()  # type: ignore[no-any-return]
