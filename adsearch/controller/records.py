"""Frozen, JSON-able records that cross the controller boundary: :class:`Sample` and
:class:`UpdateStats`. No torch: the daemon and the store may import these freely.

A :class:`Sample` is what a controller draws: the flat token sequence of a
:class:`~adsearch.patterns.SearchSpace`, the decoded patterns (one per site), the
*behaviour* log-probability of the whole sequence under the policy that drew it (temperature
and epsilon-uniform mixing included) and the controller ``version`` that drew it. The daemon
stores ``tokens``, ``logp`` and ``version`` per trial; :meth:`Sample.from_dict` rebuilds a
sample from exactly those fields (plus the space) after a crash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import Pattern, SearchSpace, decode_pattern
from adsearch.strict import strict_from_dict


@dataclass(frozen=True)
class Sample:
    """One draw of the controller.

    Attributes:
        tokens: token indices, length ``space.num_tokens``; token ``i`` is an index into the
            value list of field ``i % F`` of site ``i // F``.
        patterns: ``space.decode(tokens)``, one pattern per site.
        logp: behaviour log-probability (nats) of the whole token sequence under the policy
            that drew it, i.e. the sum over tokens of ``log q(token | prefix)`` where ``q``
            is the temperature-scaled softmax mixed with the uniform distribution.
        version: the controller version (number of updates applied) that drew the sample.
    """

    tokens: tuple[int, ...]
    patterns: tuple[Pattern, ...]
    logp: float
    version: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", tuple(int(t) for t in self.tokens))
        object.__setattr__(self, "patterns", tuple(self.patterns))
        if (
            not isinstance(self.logp, (int, float))
            or not math.isfinite(self.logp)
            or self.logp > 1e-6
        ):
            raise ConfigError(
                f"Sample.logp: invalid value {self.logp!r}; a log-probability is a finite "
                "number <= 0 (store the logp the controller returned with the sample)"
            )
        object.__setattr__(self, "logp", float(self.logp))
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise ConfigError(
                f"Sample.version: invalid value {self.version!r}; expected the non-negative "
                "integer controller version that drew the sample"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: ``{"tokens": [...], "patterns": [{...}], "logp": float, "version": int}``."""
        return {
            "tokens": list(self.tokens),
            "patterns": [p.to_dict() for p in self.patterns],
            "logp": self.logp,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Any, space: SearchSpace | None = None) -> Sample:
        """Rebuild a sample from :meth:`to_dict` output or from a trial row.

        ``tokens``, ``logp`` and ``version`` (or ``controller_version``) are required;
        other keys are ignored. ``patterns`` (or ``pattern``) is optional when
        ``space`` is given (they are decoded from the tokens, and checked against the
        tokens when both are present).

        Raises:
            ConfigError: a field is missing or has the wrong type.
            PatternError: tokens do not fit ``space``, or patterns disagree with the tokens.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"Sample: expected a JSON object, got {type(data).__name__}")
        # A store TrialRecord names these "controller_version" and "pattern": accept both,
        # so Sample.from_dict(dataclasses.asdict(trial), space) works; other keys are ignored.
        data = dict(data)
        if "version" not in data and "controller_version" in data:
            data["version"] = data["controller_version"]
        if "patterns" not in data and "pattern" in data:
            data["patterns"] = data["pattern"]
        missing = [k for k in ("tokens", "logp", "version") if k not in data]
        if missing:
            raise ConfigError(
                f"Sample: missing field(s) {', '.join(missing)}; a sample needs tokens, logp "
                "and version (the fields the daemon stores per trial)"
            )
        tokens = data["tokens"]
        if not isinstance(tokens, Sequence) or isinstance(tokens, (str, bytes)):
            raise ConfigError(f"Sample.tokens: expected a list of integers, got {tokens!r}")
        if any(isinstance(t, bool) or not isinstance(t, int) for t in tokens):
            raise ConfigError(f"Sample.tokens: expected a list of integers, got {list(tokens)!r}")
        raw_patterns = data.get("patterns")
        if space is not None:
            patterns = tuple(space.decode(list(tokens)))
            if raw_patterns is not None:
                given = tuple(decode_pattern(p, what="Sample.patterns") for p in raw_patterns)
                if given != patterns:
                    raise PatternError(
                        "Sample: the stored patterns disagree with the stored tokens in space "
                        f"{space.name}; the tokens are authoritative, drop 'patterns' to "
                        "rebuild them"
                    )
        elif raw_patterns is not None:
            patterns = tuple(decode_pattern(p, what="Sample.patterns") for p in raw_patterns)
        else:
            raise ConfigError(
                "Sample.from_dict: no 'patterns' field and no space; pass space=SearchSpace(...) "
                "to decode the patterns from the tokens"
            )
        logp = data["logp"]
        if isinstance(logp, bool) or not isinstance(logp, (int, float)):
            raise ConfigError(f"Sample.logp: expected a number, got {logp!r}")
        return cls(tuple(tokens), patterns, float(logp), data["version"])


@dataclass(frozen=True)
class UpdateStats:
    """What one ``controller.update(batch)`` did.

    Attributes:
        baseline: the moving-average baseline used for this batch's advantages (the value
            *before* this batch was folded in).
        entropy: mean over the batch of the policy's entropy, summed over token positions
            (nats), at the sampled prefixes, before the gradient step.
        mean_reward: mean reward of the batch.
        loss: the surrogate loss of the first gradient step (policy term minus entropy bonus).
        clipped_frac: fraction of samples whose importance ratio lay outside
            ``[1 - clip_ratio, 1 + clip_ratio]`` (reported whatever the correction mode).
        version: the controller version *after* the update.
        n: number of samples in the batch.
        mean_staleness: mean of ``version_before - sample.version`` over the batch.
        max_staleness: largest staleness in the batch.
        grad_norm: gradient norm before clipping (first step), 0.0 for the random controller.
        adv_scale: what the advantages were divided by (reward units; 1.0 when they were
            not normalised, 0.0 for the random controller).
        adv_max: the largest ``|advantage|`` used, after clipping (0.0 for random).
    """

    baseline: float
    entropy: float
    mean_reward: float
    loss: float
    clipped_frac: float
    version: int
    n: int = 0
    mean_staleness: float = 0.0
    max_staleness: int = 0
    grad_norm: float = 0.0
    adv_scale: float = 0.0
    adv_max: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> UpdateStats:
        return strict_from_dict(cls, data, "UpdateStats", word="field", types_too=False)
