"""Controller configuration: one frozen dataclass, a comment per field (minGPT style).

Every value is ours (the paper gives no controller hyperparameters). The defaults were tuned
on the synthetic rewards of :mod:`adsearch.controller.synthetic` over ``SearchSpace("conv",
3)``; see ``docs/controller.md`` and ``benchmarks/results/controller.md``. A checkpoint stores
``config.to_dict()`` (plain ints, floats, strings, bools) and is rebuilt with
:func:`config_from_dict`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from adsearch.errors import ConfigError

CORRECTIONS: tuple[str, ...] = ("clip", "truncate", "none")


@dataclass(frozen=True)
class ControllerConfig:
    """Hyperparameters of the Transformer controller and its REINFORCE update."""

    # --- policy network (a small causal Transformer over the token sequence)
    n_layer: int = 2  # Transformer blocks
    n_head: int = 4  # attention heads per block; must divide d_model
    d_model: int = 64  # width of the residual stream
    init_std: float = 0.02  # std of the normal init of every Linear/Embedding weight
    # --- sampling
    temperature: float = 1.0  # logits are divided by this before the softmax
    epsilon: float = 0.0  # mix q = (1 - epsilon) * softmax + epsilon * uniform, per token
    # --- optimisation (Adam on the surrogate loss)
    lr: float = 2e-3  # Adam learning rate
    adam_beta1: float = 0.9  # Adam first-moment decay
    adam_beta2: float = 0.999  # Adam second-moment decay
    grad_clip: float = 1.0  # max global gradient norm (0 disables clipping)
    update_epochs: int = 1  # gradient steps per update() on the same batch
    # --- REINFORCE estimator
    baseline_decay: float = 0.5  # EMA baseline: b <- decay * b + (1 - decay) * mean(rewards)
    normalize_advantage: bool = True  # divide advantages by their scale (see transformer.py)
    adv_std_floor: float = 1e-3  # absolute floor of that scale (reward units)
    adv_rel_floor: float = 0.01  # floor relative to the reward level: spread below 1% = ties
    adv_std_decay: float = 0.9  # EMA of batch reward std: s <- decay * s + (1 - decay) * std
    adv_clip: float = 5.0  # advantages are clipped to [-adv_clip, adv_clip] (0 disables)
    entropy_coef: float = 1e-3  # weight of the entropy bonus (entropy summed over tokens)
    # --- staleness correction
    correction: str = "clip"  # "clip" (PPO surrogate), "truncate" (min(r, c) weights), "none"
    clip_ratio: float = 0.5  # ratio clipped to [1 - c, 1 + c]; wide: sequence-level ratio
    dual_clip: float = 3.0  # "clip": r * A >= dual_clip * A when A < 0 (0 disables)
    truncate_max: float = 1.0  # "truncate": importance weight min(r, truncate_max)
    max_log_ratio: float = 20.0  # |log ratio| is clamped before exp() to avoid overflow
    # --- how the caller should batch finished children (not used inside update())
    batch_size: int = 8  # recommended number of (sample, reward) pairs per update

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(
                f"ControllerConfig.{name}: invalid value {getattr(self, name)!r}; {why}"
            )

        for name in ("n_layer", "n_head", "d_model", "update_epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, "must be a positive integer")
        if self.d_model % self.n_head:
            raise bad("d_model", f"must be a multiple of n_head={self.n_head}")
        for name in (
            "init_std",
            "temperature",
            "lr",
            "max_log_ratio",
            "adv_std_floor",
            "truncate_max",
        ):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not (math.isfinite(v) and v > 0)
            ):
                raise bad(name, "must be a finite number > 0")
        unit = {
            "epsilon": (0.0, 1.0),
            "adam_beta1": (0.0, 1.0),
            "adam_beta2": (0.0, 1.0),
            "baseline_decay": (0.0, 1.0),
            "adv_std_decay": (0.0, 1.0),
        }
        for name, (lo, hi) in unit.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise bad(name, f"must be a number in [{lo}, {hi}]")
        if self.baseline_decay == 1.0:
            raise bad("baseline_decay", "must be < 1, or the baseline never moves")
        for name in ("grad_clip", "entropy_coef", "adv_rel_floor", "adv_clip"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not (math.isfinite(v) and v >= 0)
            ):
                raise bad(name, "must be a finite number >= 0")
        if not isinstance(self.clip_ratio, (int, float)) or not 0 < self.clip_ratio < 1:
            raise bad("clip_ratio", "must be a number in (0, 1)")
        if (
            isinstance(self.dual_clip, bool)
            or not isinstance(self.dual_clip, (int, float))
            or not (self.dual_clip == 0 or 1 < self.dual_clip < math.inf)
        ):
            raise bad("dual_clip", "must be 0 (off) or a finite number > 1")
        if self.correction not in CORRECTIONS:
            raise bad("correction", f"allowed values are {', '.join(map(repr, CORRECTIONS))}")
        if not isinstance(self.normalize_advantage, bool):
            raise bad("normalize_advantage", "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (ints, floats, strings, bools): safe for JSON and ``weights_only`` loads."""
        return asdict(self)

    def replace(self, **changes: Any) -> ControllerConfig:
        """A copy with ``changes`` applied (validated)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(
                f"ControllerConfig: unknown field(s) {', '.join(unknown)}; known fields are "
                f"{', '.join(f.name for f in fields(self))}"
            )
        return replace(self, **changes)


def get_default_config() -> ControllerConfig:
    """The tuned defaults."""
    return ControllerConfig()


def config_from_dict(data: Any) -> ControllerConfig:
    """Rebuild a config from :meth:`ControllerConfig.to_dict`; missing fields take defaults.

    Raises:
        ConfigError: ``data`` is not a dict, names an unknown field, or holds a bad value.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"ControllerConfig: expected a dict of settings, got {type(data).__name__}"
        )
    return get_default_config().replace(**data)
