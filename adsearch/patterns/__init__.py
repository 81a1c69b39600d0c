"""Search spaces and dropout-pattern records. Pure data: imports no torch, nothing of ours
beyond :mod:`adsearch.errors` and :mod:`adsearch.strict`. :func:`decode_pattern` is the one
way a pattern's JSON becomes a record (:mod:`adsearch.patterns.decode`)."""

from __future__ import annotations

from adsearch.patterns.conv import CONV_FIELDS, CONV_VALUES, ConvPattern
from adsearch.patterns.decode import decode_pattern, decode_patterns
from adsearch.patterns.patternset import (
    PatternSet,
    Provenance,
    load_patternset,
    save_patternset,
)
from adsearch.patterns.seq import SEQ_FIELDS, SEQ_SITES, SEQ_VALUES, SeqPattern
from adsearch.patterns.space import SITE_MAP_SIDES, Pattern, SearchSpace

__all__ = [
    "SITE_MAP_SIDES",
    "CONV_FIELDS",
    "CONV_VALUES",
    "ConvPattern",
    "Pattern",
    "PatternSet",
    "Provenance",
    "SEQ_FIELDS",
    "SEQ_SITES",
    "SEQ_VALUES",
    "SearchSpace",
    "SeqPattern",
    "decode_pattern",
    "decode_patterns",
    "load_patternset",
    "save_patternset",
]
