"""What every controller provides, the factory, and the input checks they share. No torch
at import time: :func:`make_controller` imports the Transformer controller only when asked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from adsearch.controller.config import ControllerConfig, config_from_dict
from adsearch.controller.records import Sample, UpdateStats
from adsearch.errors import CheckpointError, ConfigError, PatternError
from adsearch.patterns import SearchSpace

#: Controller kinds accepted by :func:`make_controller`.
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


def make_controller(
    kind: str,
    space: SearchSpace,
    config: ControllerConfig | dict[str, Any] | None = None,
    seed: int = 0,
) -> Controller:
    """Build a controller.

    Args:
        kind: ``"transformer"`` (the learned policy) or ``"random"`` (uniform search).
        space: the search space to sample from.
        config: a :class:`ControllerConfig`, a dict of overrides, or ``None`` (defaults).
        seed: seeds weight init and sampling.
    Raises:
        ConfigError: unknown kind or bad config.
    """
    if isinstance(config, dict):
        config = config_from_dict(config)
    if kind == "transformer":
        from adsearch.controller.transformer import TransformerController

        return TransformerController(space, config, seed)
    if kind == "random":
        from adsearch.controller.random_search import RandomController

        return RandomController(space, config, seed)
    if kind == "fixed":
        from adsearch.controller.fixed import FixedController

        return FixedController(space, config, seed)
    if kind == "tpe":  # Optuna's TPE (issue 20); imports optuna here, never at start-up
        from adsearch.controller.tpe import TPEController

        return TPEController(space, config, seed)
    raise ConfigError(
        f"unknown controller kind {kind!r}; known kinds are {', '.join(map(repr, KINDS))}"
    )


def controller_from_state(state: Any, space: SearchSpace) -> Controller:
    """A controller rebuilt from ``state_dict()`` output (kind, config and seed from it).

    Raises:
        CheckpointError: not a controller state, unknown kind, or another search space.
    """
    if not isinstance(state, dict) or state.get("kind") not in KINDS:
        kind = state.get("kind") if isinstance(state, dict) else None
        raise CheckpointError(
            f"controller state: unknown controller kind {kind!r} (known: {', '.join(KINDS)}); "
            "the file is not an adsearch controller checkpoint"
        )
    try:
        config = config_from_dict(state.get("config", {}))
        seed = int(state.get("seed", 0))
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"controller state: bad stored config ({exc})") from None
    ctrl = make_controller(state["kind"], space, config, seed)
    ctrl.load_state_dict(state)
    return ctrl


def check_batch(
    space: SearchSpace, batch: Sequence[tuple[Sample, float]]
) -> tuple[list[Sample], list[float]]:
    """Validate ``update()`` input; shared by every controller kind."""
    if len(batch) == 0:
        raise ConfigError("controller.update: empty batch; pass at least one (Sample, reward) pair")
    samples: list[Sample] = []
    rewards: list[float] = []
    for k, item in enumerate(batch):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], Sample):
            raise ConfigError(
                f"controller.update: batch item {k} is {item!r}; expected a (Sample, reward) pair"
            )
        s, r = item
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            raise ConfigError(
                f"controller.update: reward of batch item {k} is {r!r}; rewards must be finite "
                "numbers (mark a failed child as failed instead of passing NaN)"
            )
        if len(s.tokens) != space.num_tokens:
            raise PatternError(
                f"controller.update: batch item {k} has {len(s.tokens)} tokens but space "
                f"{space.name} needs {space.num_tokens}; was it drawn in another search space?"
            )
        for i, (t, c) in enumerate(zip(s.tokens, space.choices(), strict=False)):
            if not 0 <= t < c:
                raise PatternError(
                    f"controller.update: batch item {k}, token {i} is {t}; allowed values "
                    f"are 0..{c - 1} in space {space.name}"
                )
        samples.append(s)
        rewards.append(float(r))
    return samples, rewards


def check_state_header(state: Any, kind: str, space: SearchSpace) -> None:
    """Refuse a state dict of another controller kind or another search space."""
    if not isinstance(state, dict) or "kind" not in state or "space" not in state:
        raise CheckpointError(
            "controller state: not a controller state dict (missing 'kind'/'space'); load a "
            "file written by CheckpointManager.save or controller.state_dict()"
        )
    if state["kind"] != kind:
        raise CheckpointError(
            f"controller state: written by a {state['kind']!r} controller, cannot load into a "
            f"{kind!r} one; build the controller with make_controller({state['kind']!r}, ...)"
        )
    sp = state["space"]
    if (
        not isinstance(sp, dict)
        or sp.get("name") != space.name
        or sp.get("fingerprint") != space.fingerprint()
    ):
        raise CheckpointError(
            f"controller state: written for search space {sp.get('name') if isinstance(sp, dict) else sp!r} "
            f"(fingerprint {sp.get('fingerprint') if isinstance(sp, dict) else '?'}), but this "
            f"controller uses {space.name} (fingerprint {space.fingerprint()}); load it with "
            "the search it belongs to, or start a fresh controller"
        )
