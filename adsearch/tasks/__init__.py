"""Tasks: real data, target networks and child training.

``run_child(task_config, regularizer, budget, device, seed) -> ChildResult`` trains one
child. ``task_config`` is a task's config object (it carries its task name in ``.task``).
:func:`get_task` also loads task plug-ins (``package.module:ClassName`` or an entry point of
group ``adsearch.tasks``) implementing the public :class:`Task` protocol (docs/tasks.md).
"""

from __future__ import annotations

from typing import Any

from adsearch.tasks.registry import (
    TASKS,
    Task,
    entry_point_names,
    get_task,
    load_config,
    supports_pruning,
    task_names,
)
from adsearch.tasks.result import Budget, ChildResult


def run_child(
    task_config: Any, regularizer: Any, budget: Budget, device: str = "cpu", seed: int = 0
) -> ChildResult:
    """Train one child of ``task_config.task`` with ``regularizer`` and return its result."""
    return get_task(task_config.task).run_child(task_config, regularizer, budget, device, seed)


__all__ = ["TASKS", "Budget", "ChildResult", "Task", "entry_point_names", "get_task", "load_config",
           "run_child", "supports_pruning", "task_names"]
