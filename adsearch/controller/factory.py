"""Build a controller: :func:`make_controller` by kind, :func:`controller_from_state` from a
checkpoint. No torch at import time: the Transformer (and TPE's optuna) load only when asked.
"""

from __future__ import annotations

from typing import Any

from adsearch.controller.base import KINDS, Controller
from adsearch.controller.config import ControllerConfig, config_from_dict
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace


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
