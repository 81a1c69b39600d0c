"""The one pattern decoder (issue 22): a pattern's JSON (text or object) -> a pattern record.

Every reader of a stored or written pattern calls :func:`decode_pattern` (one pattern) or
:func:`decode_patterns` (one per site): pattern files, the trial spec a script child reads,
the store's trial rows (child, dedup, ``status``, ``show``, ``export``), the enqueued
patterns of a search, a controller :class:`~adsearch.controller.records.Sample` and a
``{"kind": "pattern"}`` dropout spec. The rules, in one place:

- **With a space** the pattern must be of the space's family (its ``pattern_cls``); one that
  parses as the other family of the same kind (v1 <-> v2) is refused with
  :class:`~adsearch.errors.SpaceMismatchError`, which names both and the fix.
- **Without a space** the family is the one whose fields the object shares most (an ``off``
  key counts for none); a tie (``{"size": 3, "stride": 4}`` fits a ConvPattern and a
  SeqPattern alike) is refused with a message listing each family's fields.
- Either way the family's ``from_dict`` then checks the object strictly
  (:func:`adsearch.strict.check_keys`: unknown and missing fields named, with the allowed
  ones; then each value against the family's value table).

Pure data: no torch. It reads a space only through :class:`SpaceLike`, so
:mod:`adsearch.patterns.space` may import it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from adsearch.errors import PatternError, SpaceMismatchError
from adsearch.patterns.conv import CONV_VALUES, OFF_VALUES, ConvPattern
from adsearch.patterns.conv2 import CONV2_VALUES, ConvPattern2
from adsearch.patterns.seq import SEQ_VALUES, SeqPattern
from adsearch.patterns.seq2 import SEQ2_VALUES, SeqPattern2

AnyPattern = ConvPattern | SeqPattern | ConvPattern2 | SeqPattern2
PatternClass = type[ConvPattern] | type[SeqPattern] | type[ConvPattern2] | type[SeqPattern2]

#: Each family and the fields of its JSON object (``off`` aside), in inference order.
FAMILIES: tuple[tuple[PatternClass, tuple[str, ...]], ...] = (
    (ConvPattern, tuple(CONV_VALUES)),
    (SeqPattern, tuple(SEQ_VALUES)),
    (ConvPattern2, tuple(CONV2_VALUES)),
    (SeqPattern2, tuple(SEQ2_VALUES)),
)


class SpaceLike(Protocol):
    """What the decoder reads of a :class:`~adsearch.patterns.SearchSpace`."""

    @property
    def kind(self) -> str: ...
    @property
    def num_sites(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def pattern_cls(self) -> PatternClass: ...
    def other_family(self) -> SpaceLike: ...


def decode_pattern(data: Any, space: SpaceLike | None = None, *,
                   what: str = "pattern") -> AnyPattern:
    """One pattern from its JSON object, its JSON text, or a pattern record (returned as is).

    Args:
        data: A dict of the pattern's fields, a JSON string of one, or a pattern record.
        space: When given, the pattern must be of this space's family (see the module
            docstring); when None, the family is inferred from the fields.
        what: What is read, for messages that cannot name a family (``"Sample.patterns"``).

    Raises:
        SpaceMismatchError: the pattern is of the other family of ``space``'s kind.
        PatternError: invalid JSON, not an object, a family that cannot be told, or a field
            unknown, missing or out of its value table (the message names it).
    """
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise PatternError(f"{what}: invalid JSON ({exc})") from None
    if space is not None:
        return _in_space(data, space)
    if isinstance(data, (ConvPattern, SeqPattern, ConvPattern2, SeqPattern2)):
        return data
    if not isinstance(data, dict):
        raise PatternError(f"{what}: expected a JSON object of pattern fields, got "
                           f"{type(data).__name__}")
    return _infer(data, what).from_dict(data)


def decode_patterns(raw: Any, space: SpaceLike | None = None, *,
                    what: str = "patterns") -> tuple[AnyPattern, ...]:
    """One pattern per element of the JSON list ``raw`` (see :func:`decode_pattern`)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PatternError(f"{what}: invalid JSON ({exc})") from None
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise PatternError(f"{what}: expected a list with one pattern object per site, got "
                           f"{type(raw).__name__}")
    return tuple(decode_pattern(p, space, what=what) for p in raw)


def _in_space(data: Any, space: SpaceLike) -> AnyPattern:
    cls = space.pattern_cls
    if isinstance(data, cls):
        return data
    try:
        if isinstance(data, (ConvPattern, SeqPattern, ConvPattern2, SeqPattern2)):
            raise PatternError(f"space {space.name}: a {type(data).__name__} is no "
                               f"{cls.__name__}")
        return cls.from_dict(data)
    except PatternError as exc:
        other = space.other_family()
        try:
            if not isinstance(data, other.pattern_cls):
                other.pattern_cls.from_dict(data)
        except PatternError:
            raise exc from None
        raise SpaceMismatchError(
            f"space {space.name}: the pattern is a {other.pattern_cls.__name__} of space "
            f"family {other.name} (v{other.version}), not a {cls.__name__} of {space.name}'s "
            f"(v{space.version}); use a file of this family, or search in --space {other.name}"
        ) from None


def _infer(data: dict[str, Any], what: str) -> PatternClass:
    keys = set(data) - set(OFF_VALUES)
    scores = [(len(keys & set(names)), cls) for cls, names in FAMILIES]
    best = max(s for s, _ in scores)
    top = [cls for s, cls in scores if s == best]
    if best == 0 or len(top) > 1:
        has = "; ".join(f"a {cls.__name__} has {', '.join(names)}" for cls, names in FAMILIES)
        raise PatternError(
            f"{what}: cannot tell a ConvPattern from a SeqPattern (v1 or v2) by its fields "
            f"{sorted(data)}; {has}"
        )
    return top[0]
