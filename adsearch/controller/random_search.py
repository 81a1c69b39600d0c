"""Random search with the controller interface: the baseline the controller must beat.

Every token is drawn uniformly from its field's choices, so every sample has the same
log-probability ``-sum(log choices)``. ``update()`` learns nothing but keeps the daemon's
bookkeeping uniform: it tracks the same moving-average baseline, reports the (constant)
entropy of the uniform policy, and advances ``version`` by one. No torch: state is a Python
``random.Random`` state (plain tuples of ints), safe for ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

from adsearch.controller.checks import check_batch, check_state_header
from adsearch.controller.config import ControllerConfig, config_from_dict, get_default_config
from adsearch.controller.records import Sample, UpdateStats
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace


class RandomController:
    """Uniform sampling over ``space``; ``config`` only supplies ``baseline_decay``.

    Args:
        space: the search space.
        config: a :class:`ControllerConfig` (kept so checkpoints are uniform across kinds).
        seed: seeds the sampling RNG.
    """

    kind = "random"

    def __init__(
        self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"controller seed: invalid value {seed!r}; expected an integer")
        self.space = space
        self.config = config or get_default_config()
        self.seed = seed
        self.version = 0
        self.baseline: float | None = None
        self.rng = random.Random(seed)
        self._choices = space.choices()
        self._logp = -sum(math.log(c) for c in self._choices)

    def sample(self, n: int) -> list[Sample]:
        """``n`` uniformly random samples, stamped with the current version."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"controller.sample: n={n!r}; expected a positive integer")
        out = []
        for _ in range(n):
            toks = tuple(self.rng.randrange(c) for c in self._choices)
            out.append(Sample(toks, tuple(self.space.decode(toks)), self._logp, self.version))
        return out

    def log_prob(self, samples: Sequence[Sample]) -> list[float]:
        return [self._logp for _ in samples]

    def update(self, batch: Sequence[tuple[Sample, float]]) -> UpdateStats:
        """Validate the batch, fold its mean into the baseline, advance the version."""
        samples, rewards = check_batch(self.space, batch)
        mean_r = sum(rewards) / len(rewards)
        base = mean_r if self.baseline is None else self.baseline
        d = self.config.baseline_decay
        self.baseline = mean_r if self.baseline is None else d * self.baseline + (1 - d) * mean_r
        stale = [max(0, self.version - s.version) for s in samples]
        self.version += 1
        return UpdateStats(
            baseline=base,
            entropy=-self._logp,
            mean_reward=mean_r,
            loss=0.0,
            clipped_frac=0.0,
            version=self.version,
            n=len(samples),
            mean_staleness=sum(stale) / len(stale),
            max_staleness=max(stale),
            grad_norm=0.0,
        )

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {
            "kind": self.kind,
            "space": {"name": self.space.name, "fingerprint": self.space.fingerprint()},
            "config": self.config.to_dict(),
            "seed": self.seed,
            "version": self.version,
            "baseline": self.baseline,
            "rng": {"python": [version, list(internal), gauss]},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(state, self.kind, self.space)
        try:
            config = config_from_dict(state["config"])
            v, internal, gauss = state["rng"]["python"]
            self.rng.setstate((int(v), tuple(int(x) for x in internal), gauss))
            self.seed = int(state["seed"])
            self.version = int(state["version"])
            b = state["baseline"]
            self.baseline = None if b is None else float(b)
            self.config = config
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"controller state: cannot restore the random controller ({type(exc).__name__}: "
                f"{exc}); load an older checkpoint or start a fresh controller"
            ) from None

    def __repr__(self) -> str:
        return f"RandomController(space={self.space.name}, version={self.version})"
