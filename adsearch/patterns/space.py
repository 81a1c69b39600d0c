"""Search spaces: L dropout sites times a fixed list of discrete fields per site.

A :class:`SearchSpace` turns a list of patterns (one per site) into a flat token sequence
and back. Token ``i`` belongs to site ``i // F`` and field ``i % F`` (``F`` fields per site),
and its value is an index into that field's value list, so the controller's output head for
token ``i`` has exactly ``len(values)`` choices.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from adsearch.errors import PatternError, SpaceMismatchError
from adsearch.patterns.conv import CONV_VALUES, OFF_VALUES, ConvPattern
from adsearch.patterns.conv2 import CONV2_VALUES, ConvPattern2
from adsearch.patterns.decode import decode_pattern
from adsearch.patterns.seq import SEQ_VALUES, SeqPattern
from adsearch.patterns.seq2 import SEQ2_VALUES, SeqPattern2

Pattern: TypeAlias = "ConvPattern | SeqPattern | ConvPattern2 | SeqPattern2"

OFF_SUFFIX = "+off"

#: Side in px of each site's feature map in the built-in target networks at their standard
#: input size (WRN on 32x32 CIFAR: one site per group; ResNet-50 on 224x224: one per stage).
#: ``adsearch pattern show`` and benchmarks/gallery.py draw each site at this size, so the
#: "drops" figure is what the pattern really drops there.
SITE_MAP_SIDES: dict[str, tuple[int, ...]] = {"conv-3": (32, 16, 8), "conv-4": (56, 28, 14, 7)}

_KINDS: dict[str, tuple[type[ConvPattern] | type[SeqPattern], dict[str, tuple[Any, ...]]]] = {
    "conv": (ConvPattern, CONV_VALUES),
    "seq": (SeqPattern, SEQ_VALUES),
}
#: The v2 family (issue 20): ``conv2-K`` and ``seq2-K``, a rate grid with 0 (off) per site.
_KINDS_V2: dict[str, tuple[type[ConvPattern2] | type[SeqPattern2], dict[str, tuple[Any, ...]]]] = {
    "conv": (ConvPattern2, CONV2_VALUES),
    "seq": (SeqPattern2, SEQ2_VALUES),
}
VERSIONS = (1, 2)


@dataclass(frozen=True)
class SearchSpace:
    """A search space: ``kind`` (``"conv"`` or ``"seq"``) with ``num_sites`` sites.

    Its ``name`` is ``"<kind>-<num_sites>"``, e.g. ``"conv-3"`` for WRN-28-k (one pattern per
    group) and ``"seq-2"`` for the Transformer models. A pattern file records the name, and
    a model refuses a file whose kind or number of sites differs.

    ``off`` (**ours**, not the paper's): the space ``"<kind>-<num_sites>+off"`` has one more
    token per site, ``off`` (False, True), after the paper's fields: the controller can answer
    "no dropout here". Spaces without the suffix keep their value table, token layout and
    fingerprint unchanged.

    ``version`` 2 (**ours**, issue 20) is the v2 family, named ``"conv2-K"``/``"seq2-K"``
    (see :mod:`adsearch.patterns.conv2` and :mod:`adsearch.patterns.seq2`): its rate grid
    holds 0, so it always has the off choice (``off`` is True, and ``"conv2-3+off"`` names
    the same space as ``"conv2-3"``). A model runs the patterns of either family
    (:meth:`same_sites`); a search refuses a file of the other family (:meth:`same_family`).
    """

    kind: str
    num_sites: int
    off: bool = False
    version: int = 1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise PatternError(
                f"SearchSpace.kind: invalid value {self.kind!r}; allowed values are "
                f"{', '.join(map(repr, _KINDS))}"
            )
        if not isinstance(self.num_sites, int) or self.num_sites < 1:
            raise PatternError(
                f"SearchSpace.num_sites: invalid value {self.num_sites!r}; must be a positive integer"
            )
        if self.version not in VERSIONS:
            raise PatternError(f"SearchSpace.version: invalid value {self.version!r}; allowed 1, 2")
        if self.version == 2:
            object.__setattr__(self, "off", True)  # rate 0 is in every v2 site's grid

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        if self.version == 2:
            return f"{self.kind}2-{self.num_sites}"
        return f"{self.kind}-{self.num_sites}" + (OFF_SUFFIX if self.off else "")

    def same_family(self, other: SearchSpace) -> bool:
        """True when both spaces are of one family (v1, the paper's, or v2) and kind."""
        return (self.kind, self.version) == (other.kind, other.version)

    def same_sites(self, other: SearchSpace) -> bool:
        """True when ``other`` has the same kind and number of sites (a model built for one
        runs patterns of the other; ``off`` only widens what a site may choose)."""
        return (self.kind, self.num_sites) == (other.kind, other.num_sites)

    @property
    def pattern_cls(self) -> type[ConvPattern] | type[SeqPattern] | type[ConvPattern2] | type[SeqPattern2]:
        return (_KINDS_V2 if self.version == 2 else _KINDS)[self.kind][0]

    @property
    def values(self) -> dict[str, tuple[Any, ...]]:
        """Field name -> its discrete values, in token order."""
        if self.version == 2:
            return _KINDS_V2[self.kind][1]
        table = _KINDS[self.kind][1]
        return {**table, **OFF_VALUES} if self.off else table

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.values)

    @property
    def num_tokens(self) -> int:
        return self.num_sites * len(self.values)

    def choices(self) -> list[int]:
        """Number of choices of each token position (length ``num_tokens``)."""
        per_site = [len(v) for v in self.values.values()]
        return per_site * self.num_sites

    def token_field(self, i: int) -> tuple[int, str]:
        """(site, field name) of token position ``i``."""
        f = len(self.values)
        return i // f, self.fields[i % f]

    def fingerprint(self) -> str:
        """Hash of the value table: two spaces with equal fingerprints encode alike."""
        table = {k: [repr(v) for v in vals] for k, vals in self.values.items()}
        blob = json.dumps({"name": self.name, "values": table}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_name(cls, name: str) -> SearchSpace:
        text = str(name)
        off = text.endswith(OFF_SUFFIX)
        kind, sep, n = text.removesuffix(OFF_SUFFIX).rpartition("-")
        version = 1
        if kind.endswith("2") and kind[:-1] in _KINDS_V2:
            kind, version = kind[:-1], 2
        if not sep or not n.isdigit():
            raise PatternError(
                f"SearchSpace: invalid space name {name!r}; expected '<kind>-<sites>' such as "
                f"'conv-3' or 'seq-2' (add '{OFF_SUFFIX}' for an off choice per site), with "
                f"kind one of {', '.join(_KINDS)}"
            )
        if kind not in _KINDS or int(n) < 1:  # say it in the user's words, not the fields'
            what = f"unknown kind {kind!r}" if kind not in _KINDS else "no site"
            raise PatternError(
                f"invalid space name {name!r}: {what}; a space is conv-K (K stages of a "
                "ConvNet) or seq-K (a Transformer), e.g. conv-3 or seq-2, with "
                f"'{OFF_SUFFIX}' for an off choice per site (`adsearch sites MODEL` prints a "
                "model's)"
            )
        return cls(kind, int(n), off, version)

    # ------------------------------------------------------------------ coding
    def _check_patterns(self, patterns: Sequence[Pattern]) -> None:
        if len(patterns) != self.num_sites:
            raise SpaceMismatchError(
                f"space {self.name}: expected {self.num_sites} pattern(s), one per site, "
                f"got {len(patterns)}"
            )
        for i, p in enumerate(patterns):
            if not isinstance(p, self.pattern_cls):
                raise SpaceMismatchError(
                    f"space {self.name}: site {i} holds a {type(p).__name__}, "
                    f"expected {self.pattern_cls.__name__}"
                )
            if p.off and not self.off:
                raise SpaceMismatchError(
                    f"space {self.name}: site {i} is off, but this space has no off choice; "
                    f"use space {self.name}{OFF_SUFFIX}"
                )

    def encode(self, patterns: Sequence[Pattern]) -> list[int]:
        self._check_patterns(patterns)
        tokens: list[int] = []
        for p in patterns:
            for name, vals in self.values.items():
                tokens.append(vals.index(getattr(p, name)))
        return tokens

    def decode(self, tokens: Sequence[int]) -> list[Pattern]:
        if len(tokens) != self.num_tokens:
            raise PatternError(
                f"space {self.name}: expected {self.num_tokens} tokens, got {len(tokens)}"
            )
        out: list[Pattern] = []
        f = len(self.values)
        for s in range(self.num_sites):
            kw: dict[str, Any] = {}
            for j, (name, vals) in enumerate(self.values.items()):
                t = tokens[s * f + j]
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < len(vals):
                    raise PatternError(
                        f"space {self.name}: token {s * f + j} (site {s}, field {name}) is "
                        f"{t!r}; allowed values are 0..{len(vals) - 1}"
                    )
                kw[name] = vals[t]
            out.append(self.pattern_cls(**kw))
        return out

    def pattern_from_dict(self, data: Any) -> Pattern:
        """A pattern of this space from its JSON object: :func:`adsearch.patterns.decode.
        decode_pattern` with this space (a pattern of the other family is refused with a
        message that names both: a v2 file in a v1 search, or the reverse)."""
        return decode_pattern(data, self)

    def other_family(self) -> SearchSpace:
        """The space of the other family (v1 <-> v2) with this kind and number of sites."""
        return SearchSpace(self.kind, self.num_sites, version=3 - self.version)

    def sample(self, rng: random.Random | None = None) -> list[Pattern]:
        """Uniformly random patterns, one per site."""
        rng = rng or random.Random()
        return self.decode([rng.randrange(c) for c in self.choices()])

    def size(self) -> int:
        """Number of distinct pattern lists in the space."""
        n = 1
        for c in self.choices():
            n *= c
        return n

