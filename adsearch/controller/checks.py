"""The input checks every controller kind shares: an ``update()`` batch, a state dict's
header. Imported by the concrete controllers; imports none of them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from adsearch.controller.records import Sample
from adsearch.errors import CheckpointError, ConfigError, PatternError
from adsearch.patterns import SearchSpace


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
        theirs = sp.get("name") if isinstance(sp, dict) else repr(sp)
        raise CheckpointError(
            f"controller state: written for search space {theirs} "
            f"(fingerprint {sp.get('fingerprint') if isinstance(sp, dict) else '?'}), but this "
            f"controller uses {space.name} (fingerprint {space.fingerprint()}); load it with "
            "the search it belongs to, or start a fresh controller"
        )
