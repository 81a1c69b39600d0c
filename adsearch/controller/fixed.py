"""The ``fixed`` controller of ``adsearch verify`` searches: it draws nothing and learns nothing.

A verify search's trials are a planned list of (regularizer, seed) runs that
:mod:`adsearch.verify` adds to the store itself, so the daemon only schedules them over its
slots. This class keeps the daemon's controller interface uniform (version, baseline,
checkpoint state); the daemon never feeds it results (see ``Daemon._update_controller``).
No torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adsearch.controller.checks import check_state_header
from adsearch.controller.config import ControllerConfig, get_default_config
from adsearch.controller.records import Sample, UpdateStats
from adsearch.errors import DaemonError
from adsearch.patterns import SearchSpace


class FixedController:
    """A controller with no policy: :meth:`sample` refuses, :meth:`update` only counts."""

    kind = "fixed"

    def __init__(self, space: SearchSpace, config: ControllerConfig | None = None,
                 seed: int = 0) -> None:
        self.space = space
        self.config = config or get_default_config()
        self.seed = seed
        self.version = 0
        self.baseline: float | None = None

    def sample(self, n: int) -> list[Sample]:
        raise DaemonError("a fixed (verify) search draws no trials: its trials are planned by "
                          "`adsearch verify`; set its trial budget to the planned count")

    def log_prob(self, samples: Sequence[Sample]) -> list[float]:
        return [s.logp for s in samples]

    def update(self, batch: Sequence[tuple[Sample, float]]) -> UpdateStats:
        rewards = [float(r) for _, r in batch] or [0.0]
        self.version += 1
        mean = sum(rewards) / len(rewards)
        return UpdateStats(baseline=mean, entropy=0.0, mean_reward=mean, loss=0.0,
                           clipped_frac=0.0, version=self.version, n=len(batch),
                           mean_staleness=0.0, max_staleness=0, grad_norm=0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "seed": self.seed,
                "space": {"name": self.space.name, "fingerprint": self.space.fingerprint()},
                "config": self.config.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(state, self.kind, self.space)
        self.version = int(state.get("version", 0))

    def __repr__(self) -> str:
        return f"FixedController(space={self.space.name})"
