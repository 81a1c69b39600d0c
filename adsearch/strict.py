"""Strict from-dict: the one way a JSON object becomes a record (issue 22). No torch; imports
nothing of ours but :mod:`adsearch.errors`, so every layer may use it.

A record arrives as JSON (a pattern file, ``--task-config``, a stored search, a dropout spec).
:func:`check_keys` refuses a non-object, an unknown key and a missing required key, each with
a message that names the key and the allowed ones; :func:`check_types` refuses a value whose
type does not fit the dataclass field's annotation (``"sleep": true`` for ``sleep: float``)
and any non-finite number (``NaN``, ``Infinity``); :func:`strict_from_dict` does both and
builds the dataclass. The error class is the caller's (``PatternError`` for patterns,
``ConfigError`` for configs), so the CLI's messages stay those of the layer that reads.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar, Union, get_args, get_origin

from adsearch.errors import AdsearchError, ConfigError

T = TypeVar("T")


def check_keys(data: Any, allowed: Iterable[str], what: str, *,
               required: Iterable[str] = (), besides: Iterable[str] = (), word: str = "key",
               error: type[AdsearchError] = ConfigError, hint: str = "") -> dict[str, Any]:
    """``data`` as a dict, refused unless it is a JSON object with only allowed keys.

    Args:
        data: The decoded JSON value.
        allowed: Keys the record may hold (in the order the message lists them).
        what: What is read, for the message (``"ConvPattern"``, ``"cifar10 config"``).
        required: Keys that must be present (a subset of ``allowed``).
        besides: Keys the caller reads itself (e.g. ``kind``): accepted, listed after the rest.
        word: ``"key"`` or ``"field"``, as the record's documentation calls them.
        error: The exception class raised.
        hint: Appended to the unknown-key message (e.g. ``" (was it written by a newer
            adsearch?)"``).

    Raises:
        ``error``: not an object ("expected a JSON object, got list"), unknown keys ("unknown
            key(s) 'p'; allowed keys are drop_prob"), or missing keys ("missing key(s) 'size'").
    """
    if not isinstance(data, dict):
        raise error(f"{what}: expected a JSON object, got {type(data).__name__}")
    names, extra = list(allowed), list(besides)
    unknown = sorted(set(data) - set(names) - set(extra))
    if unknown:
        listed = ", ".join(names) if names else "none"
        if extra:
            listed += " besides " + ", ".join(map(repr, extra))
        raise error(f"{what}: unknown {word}(s) {', '.join(map(repr, unknown))}; allowed "
                    f"{word}s are {listed}{hint}")
    missing = [k for k in required if k not in data]
    if missing:
        raise error(f"{what}: missing {word}(s) {', '.join(map(repr, missing))}")
    return dict(data)


def check_types(cls: type, data: Mapping[str, Any], what: str, *,
                error: type[AdsearchError] = ConfigError) -> None:
    """Raise ``error`` for the first value of ``data`` that does not fit ``cls``'s field.

    Args:
        cls: A dataclass; its annotations (``int``, ``float``, ``str``, ``bool``, ``X | None``,
            ``list[X]``, ``tuple[X, ...]``, ``dict``) say what each key may hold. An ``int`` is
            accepted for a ``float`` field; ``bool`` is never accepted for a number.
        data: Keys and values to check (keys that are no field are left to the caller).
        what: What is read, for the message (``"cifar10 config"``).
        error: The exception class raised.
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            continue
        tp = hints.get(f.name, Any)
        value = data[f.name]
        if not _fits(value, tp):
            raise error(f"{what}: {f.name}: invalid value {_show(value)}; expected "
                        f"{_describe(tp)}")


def strict_from_dict(cls: type[T], data: Any, what: str, *, word: str = "key",
                     error: type[AdsearchError] = ConfigError, hint: str = "",
                     types_too: bool = True) -> T:
    """Build the dataclass ``cls`` from ``data``: :func:`check_keys` (fields without a
    default are required), then :func:`check_types` unless ``types_too`` is False, then the
    constructor, whose own ``TypeError``/``ValueError`` becomes ``error`` (an
    :class:`~adsearch.errors.AdsearchError` it raises passes unchanged)."""
    fs = fields(cls)  # type: ignore[arg-type]
    required = [f.name for f in fs
                if f.default is MISSING and f.default_factory is MISSING and f.init]
    data = check_keys(data, [f.name for f in fs if f.init], what, required=required,
                      word=word, error=error, hint=hint)
    if types_too:
        check_types(cls, data, what, error=error)
    try:
        return cls(**data)
    except AdsearchError:
        raise  # the record's own check said it, in its words
    except (TypeError, ValueError) as exc:
        raise error(f"{what}: {exc}") from None


def _fits(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = get_args(tp)
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(map(_fits, value, args))
        return all(_fits(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True  # a type this check does not know: the record's own checks decide


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    names = {type(None): "null", bool: "true or false", int: "an integer",
             float: "a finite number", str: "a string", dict: "a JSON object"}
    if tp in names:
        return names[tp]
    if origin in (list, tuple) or tp in (list, tuple):
        args = get_args(tp)
        return f"a list of {_describe(args[0])} values" if args else "a list"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    """``value`` as the user wrote it in JSON (``true``, ``"0.1"``), else its repr."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
