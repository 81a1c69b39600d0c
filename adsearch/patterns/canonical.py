"""Canonical patterns (**ours**): one spelling for every pattern list that trains alike.

The controller's token space has spellings that mean the same network:

- an ``off`` site drops nothing, so its other fields are inert: every off site is spelled
  ``ConvPattern(off=True)`` / ``SeqPattern(off=True)`` (the other fields at their defaults);
- hence a pattern list whose every site is off is *none* (no dropout anywhere): all its
  spellings become the one list of canonical off sites, with one ``pattern_hash``;
- a sequence pattern with ``mask="token"`` drops every channel of a dropped step, so its
  ``groups`` and ``share_t`` are inert (the op never reads them, nor draws random numbers
  for them): they are set to the defaults.

No other field is inert (a conv pattern's ``residual`` acts on the shortcut, rotation and
shear move pixels). The daemon stores a trial's pattern in this form and hashes it, so two
draws that train alike share a ``pattern_hash`` (the key of the trial cache,
:mod:`adsearch.daemon.dedup`), while the trial keeps the controller's raw tokens and
log-probability, which the controller learns from. Pattern files are read as written:
canonicalisation happens when a trial is made, never on load. Pure data, no torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from adsearch.patterns.conv import ConvPattern
from adsearch.patterns.decode import decode_patterns
from adsearch.patterns.seq import SeqPattern
from adsearch.patterns.space import Pattern, SearchSpace

_SEQ_DEFAULT = SeqPattern()


def pattern_hash(patterns: list[dict[str, Any]]) -> str:
    """The key of a trial's pattern list (its stored JSON, canonical when drawn): 32 hex
    characters of the SHA-256 of the list with sorted keys."""
    return hashlib.sha256(json.dumps(patterns, sort_keys=True).encode()).hexdigest()[:32]


def canonical_pattern(pattern: Pattern) -> Pattern:
    """The canonical spelling of one site's pattern (see the module docstring). A pattern of
    another family (the v2 spaces) gives its own ``canonical()`` where it has one, and is
    otherwise kept as it is."""
    if isinstance(pattern, ConvPattern):
        return ConvPattern(off=True) if pattern.off else pattern
    if isinstance(pattern, SeqPattern):
        if pattern.off:
            return SeqPattern(off=True)
        if pattern.mask == "token":
            return replace(pattern, groups=_SEQ_DEFAULT.groups, share_t=_SEQ_DEFAULT.share_t)
        return pattern
    own = getattr(pattern, "canonical", None)
    return own() if callable(own) else pattern


def canonical_patterns(patterns: Sequence[Pattern]) -> list[Pattern]:
    """The canonical spelling of a pattern list (one pattern per site)."""
    return [canonical_pattern(p) for p in patterns]


def is_none(patterns: Sequence[Pattern]) -> bool:
    """True when no site drops anything (every site off): the regularizer *none*."""
    return all(p.off for p in patterns)


def canonical_dicts(space: SearchSpace, stored: Sequence[Any]) -> list[Any]:
    """A stored ``pattern`` column in canonical form. A planned baseline spec (``adsearch
    verify``: one dict with a ``kind``) is returned unchanged: it is no pattern list."""
    if len(stored) == 1 and isinstance(stored[0], dict) and "kind" in stored[0]:
        return [dict(stored[0])]
    return [p.to_dict() for p in canonical_patterns(decode_patterns(stored, space))]


__all__ = ["canonical_dicts", "canonical_pattern", "canonical_patterns", "is_none"]
