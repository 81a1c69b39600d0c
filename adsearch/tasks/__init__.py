"""Tasks: real data, target networks and child training.

``run_child(task_config, regularizer, budget, device, seed) -> ChildResult`` trains one
child. ``task_config`` is a task's config object (it carries its task name in ``.task``).
"""

from __future__ import annotations

from typing import Any

from adsearch.tasks.registry import TASKS, Task, get_task, task_names
from adsearch.tasks.result import Budget, ChildResult


def run_child(
    task_config: Any, regularizer: Any, budget: Budget, device: str = "cpu", seed: int = 0
) -> ChildResult:
    """Train one child of ``task_config.task`` with ``regularizer`` and return its result."""
    return get_task(task_config.task).run_child(task_config, regularizer, budget, device, seed)


__all__ = ["TASKS", "Budget", "ChildResult", "Task", "get_task", "run_child", "task_names"]
