"""Tasks: real data, target networks and child training.

``get_task(name).run_child(task_config, regularizer, budget, device, seed) -> ChildResult``
trains one child. :func:`get_task` also loads task plug-ins (``package.module:ClassName``
or an entry point of group ``adsearch.tasks``) implementing the public :class:`Task`
protocol (docs/tasks.md).
"""

from __future__ import annotations

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

__all__ = ["TASKS", "Budget", "ChildResult", "Task", "entry_point_names", "get_task", "load_config",
           "supports_pruning", "task_names"]
