"""What every controller provides: the :class:`Controller` protocol and the known kinds.
The factory is :mod:`adsearch.controller.factory`, the input checks every controller shares
:mod:`adsearch.controller.checks` (so no concrete controller imports the factory that
imports it). No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from adsearch.controller.config import ControllerConfig
from adsearch.controller.records import Sample, UpdateStats
from adsearch.patterns import SearchSpace

#: Controller kinds accepted by :func:`adsearch.controller.factory.make_controller`.
KINDS: tuple[str, ...] = ("transformer", "random", "fixed", "tpe")


class Controller(Protocol):
    """The interface the daemon uses (``TransformerController``, ``RandomController``)."""

    kind: str
    space: SearchSpace
    config: ControllerConfig
    seed: int
    version: int  # number of updates applied; stamped on every sample
    baseline: float | None  # EMA of batch-mean rewards (None before the first update)

    def sample(self, n: int) -> list[Sample]: ...

    def update(self, batch: Sequence[tuple[Sample, float]]) -> UpdateStats: ...

    def log_prob(self, samples: Sequence[Sample]) -> list[float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
