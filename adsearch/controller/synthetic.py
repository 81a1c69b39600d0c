"""Synthetic rewards with a hidden optimum, for testing and benchmarking controllers without
training a child network. Pure Python (no torch); the ``synthetic`` task reuses them.

Both rewards are functions of a token sequence (or of the patterns, which are encoded
first) and a hidden target drawn from a seed. Their noise-free maximum is ``1.0``, reached
exactly at the target tokens, and noise is additive Gaussian with std ``noise_sd`` drawn
from a caller-supplied ``random.Random`` (so a trial's reward is reproducible from its seed).

- ``"match"``: the fraction of tokens equal to the target's. Fields are independent, so a
  policy that factorises per token can solve it.
- ``"interaction"``: token positions are paired by a hidden random perfect matching
  (across fields and sites); each pair scores ``(m_i + m_j + 2 m_i m_j) / 4`` with
  ``m = 1[token == target]``, so half of a pair's credit exists only when both match.
  A random sample's expected reward is far lower than under ``"match"``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import Pattern, SearchSpace

#: Noise std of the benchmark's rewards (the issue's sigma).
DEFAULT_NOISE_SD = 0.05


def hidden_target(space: SearchSpace, seed: int) -> list[int]:
    """The hidden optimum: one uniformly random token per position, from ``seed``."""
    rng = random.Random(f"adsearch-target-{space.name}-{seed}")
    return [rng.randrange(c) for c in space.choices()]


def hidden_pairs(space: SearchSpace, seed: int) -> list[tuple[int, int]]:
    """A random perfect matching of token positions (the last is unpaired if T is odd)."""
    rng = random.Random(f"adsearch-pairs-{space.name}-{seed}")
    order = list(range(space.num_tokens))
    rng.shuffle(order)
    return [(order[k], order[k + 1]) for k in range(0, len(order) - 1, 2)]


def _noise(noise_sd: float, rng: random.Random | None) -> float:
    if noise_sd < 0:
        raise ConfigError(f"synthetic reward: noise_sd={noise_sd!r}; must be >= 0")
    if noise_sd == 0:
        return 0.0
    if rng is None:
        raise ConfigError(
            "synthetic reward: noise_sd > 0 needs rng=random.Random(seed) so the noise is "
            "reproducible; pass one, or noise_sd=0 for the noise-free value"
        )
    return rng.gauss(0.0, noise_sd)


def _tokens(space: SearchSpace, x: Sequence[int] | Sequence[Pattern]) -> list[int]:
    """Token list from tokens or from patterns (one per site)."""
    if len(x) > 0 and all(isinstance(t, int) and not isinstance(t, bool) for t in x):
        toks = list(x)  # type: ignore[arg-type]
        if len(toks) != space.num_tokens:
            raise PatternError(
                f"synthetic reward: expected {space.num_tokens} tokens for space {space.name}, "
                f"got {len(toks)}"
            )
        return toks  # type: ignore[return-value]
    return space.encode(x)  # type: ignore[arg-type]


def match_reward(
    tokens: Sequence[int],
    target: Sequence[int],
    *,
    noise_sd: float = DEFAULT_NOISE_SD,
    rng: random.Random | None = None,
) -> float:
    """Fraction of positions where ``tokens`` equals ``target``, plus N(0, noise_sd^2)."""
    if len(tokens) != len(target):
        raise PatternError(f"match_reward: {len(tokens)} tokens but the target has {len(target)}")
    hits = sum(1 for a, b in zip(tokens, target, strict=False) if a == b)
    return hits / len(target) + _noise(noise_sd, rng)


def interaction_reward(
    tokens: Sequence[int],
    target: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    *,
    noise_sd: float = DEFAULT_NOISE_SD,
    rng: random.Random | None = None,
) -> float:
    """Mean over ``pairs`` of ``(m_i + m_j + 2 m_i m_j) / 4``, plus N(0, noise_sd^2)."""
    if len(tokens) != len(target):
        raise PatternError(
            f"interaction_reward: {len(tokens)} tokens but the target has {len(target)}"
        )
    if not pairs:
        raise PatternError("interaction_reward: no pairs; use hidden_pairs(space, seed)")
    total = 0.0
    for i, j in pairs:
        mi = tokens[i] == target[i]
        mj = tokens[j] == target[j]
        total += (mi + mj + 2 * (mi and mj)) / 4
    return total / len(pairs) + _noise(noise_sd, rng)


#: name -> one-line description, for CLI/task help.
REWARDS: dict[str, str] = {
    "match": "fraction of tokens equal to a hidden target (independent fields)",
    "interaction": "hidden token pairs, half the credit only when both match",
}


def make_reward(
    name: str, space: SearchSpace, seed: int = 0, noise_sd: float = DEFAULT_NOISE_SD
) -> Callable[..., float]:
    """A reward function ``f(tokens_or_patterns, rng=None) -> float`` with a hidden optimum.

    Args:
        name: ``"match"`` or ``"interaction"``.
        space: the search space.
        seed: picks the hidden target (and pairs).
        noise_sd: std of the additive Gaussian noise (0 for the noise-free value).
    Raises:
        ConfigError: unknown name.
    """
    if name not in REWARDS:
        raise ConfigError(
            f"unknown synthetic reward {name!r}; known rewards are {', '.join(REWARDS)}"
        )
    target = hidden_target(space, seed)
    pairs = hidden_pairs(space, seed)

    def reward(x: Sequence[Any], rng: random.Random | None = None, noise: bool = True) -> float:
        toks = _tokens(space, x)
        sd = noise_sd if noise else 0.0
        if name == "match":
            return match_reward(toks, target, noise_sd=sd, rng=rng)
        return interaction_reward(toks, target, pairs, noise_sd=sd, rng=rng)

    reward.target = target  # type: ignore[attr-defined]
    reward.max_reward = 1.0  # type: ignore[attr-defined]
    return reward
