"""Pieces every child training loop shares: budgets, schedules, devices, divergence.

Conventions (all tasks):

- A child trains for ``total_steps`` optimizer steps, from the :class:`Budget` (steps, or
  epochs times steps per epoch) or else the task config's default; ``Budget.seconds`` also
  stops it once that much *training* time has passed (evaluation excluded).
- ``adsearch.ops.set_progress(model, progress)`` is called before every step with
  ``progress = max(step / total_steps, elapsed / seconds)`` in [0, 1] (DropBlock's schedule).
- A non-finite training loss stops the child: it returns reward 0.0 with
  ``metrics["diverged"] = 1.0`` and ``metrics["diverged_step"]`` (never NaN or inf, so the
  reward is safe for the controller and for JSON).
- On CUDA the forward pass runs under bf16 autocast; on CPU in float32.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import fields
from typing import Any, TypeVar

import torch

from adsearch.errors import ConfigError
from adsearch.strict import check_keys, check_types
from adsearch.tasks.result import Budget

C = TypeVar("C")


def config_from_dict(cls: type[C], data: dict[str, Any], task: str) -> C:
    """Build a frozen config dataclass from a dict; unknown keys, and values that do not fit a
    field's annotation or are not finite (:func:`adsearch.strict.check_types`), raise
    ConfigError."""
    what = f"{task} config"
    names = sorted(f.name for f in fields(cls))  # type: ignore[arg-type]
    data = check_keys(data, names, what)
    if data.get("task", task) != task:
        raise ConfigError(f"config is for task {data.get('task')!r}, not {task!r}")
    check_types(cls, data, what)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def rung_steps(budget: Budget | None, steps_per_epoch: int) -> set[int]:
    """The optimizer steps at which a child crosses a decision rung of ``budget`` (rungs are
    in epochs, fractional allowed): tasks that evaluate between epochs evaluate there too,
    then ask ``budget.prune_now``."""
    rungs = (budget.rungs or ()) if budget is not None else ()
    return {max(1, int(math.ceil(r * steps_per_epoch - 1e-9))) for r in rungs}


def total_steps(budget: Budget | None, steps_per_epoch: int, default_epochs: float | None, default_steps: int | None = None) -> int:
    """Optimizer steps a child runs: the budget's ``steps`` or ``epochs``, whichever is
    smaller when both are set, else the config default. At least 1."""
    b = budget or Budget()
    cands = []
    if b.steps is not None:
        cands.append(int(b.steps))
    if b.epochs is not None:
        cands.append(int(math.ceil(b.epochs * steps_per_epoch)))
    if not cands:
        cands.append(int(default_steps) if default_steps is not None else int(math.ceil((default_epochs or 1) * steps_per_epoch)))
    n = min(cands)
    if n < 1 or (b.seconds is not None and b.seconds <= 0):
        raise ConfigError(f"budget {b} gives no training steps; ask for at least one step, epoch fraction or second")
    return n


def cosine_lr(step: int, total: int, base: float, warmup: int = 0, final_frac: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``final_frac * base``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


def make_optimizer(name: str, model: torch.nn.Module, lr: float, weight_decay: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``sgd`` (Nesterov when momentum > 0; decay on every parameter, as WRN) or ``adamw``
    (betas 0.9/0.98; decoupled decay on matrices only, none on biases and norms)."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    if name == "adamw":
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))
    raise ConfigError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def lr_at(schedule: str, step: int, total: int, base: float, warmup: int = 0, final_frac: float = 0.0) -> float:
    """Learning rate of ``step``: linear warm-up, then ``cosine`` decay or ``constant``."""
    if schedule == "constant":
        return base * (step + 1) / warmup if warmup > 0 and step < warmup else base
    if schedule == "cosine":
        return cosine_lr(step, total, base, warmup, final_frac)
    raise ConfigError(f"unknown schedule {schedule!r}; use one of {', '.join(SCHEDULES)}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``torch.device`` for ``device``; ConfigError for an unknown or unavailable device."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r} ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu")
    return dev


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Clock:
    """Training wall time that can be paused during evaluation (seconds, float)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - t

    def train_seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def wall(self) -> float:
        return time.perf_counter() - self.start


def progress(step: int, total: int, clock: Clock, seconds: float | None) -> float:
    """Training progress in [0, 1]: the larger of the step and the time fractions."""
    p = step / total
    if seconds:
        p = max(p, clock.train_seconds() / seconds)
    return min(1.0, p)


def out_of_time(clock: Clock, seconds: float | None) -> bool:
    return seconds is not None and clock.train_seconds() >= seconds


def diverged_metrics(step: int) -> dict[str, float]:
    """Metrics of a child whose loss became non-finite (reward is then 0.0)."""
    return {"diverged": 1.0, "diverged_step": float(step)}


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global RNG (init, dropout masks) and return a CPU generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
