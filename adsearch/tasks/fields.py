"""Type checks of task config values against their dataclass annotations. No torch.

A task config arrives as JSON (``--task-config``, a stored search, a plug-in's dict): one
generic check here, called by every task's ``config_from_dict``, refuses a value whose type
does not fit the field's annotation (``"sleep": true`` for ``sleep: float``) and any
non-finite number (``NaN``, ``Infinity``), before anything is written or a child runs.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Union, get_args, get_origin

from adsearch.errors import ConfigError


def check_field_types(cls: type, data: Mapping[str, Any], task: str) -> None:
    """Raise ConfigError for the first value of ``data`` that does not fit ``cls``'s field.

    Args:
        cls: A dataclass; its annotations (``int``, ``float``, ``str``, ``bool``, ``X | None``,
            ``list[X]``, ``tuple[X, ...]``, ``dict``) say what each key may hold. An ``int`` is
            accepted for a ``float`` field; ``bool`` is never accepted for a number.
        data: Keys and values to check (keys that are no field are left to the caller).
        task: Task name, for the message.
    """
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            continue
        tp = hints.get(f.name, Any)
        value = data[f.name]
        if not _fits(value, tp):
            raise ConfigError(
                f"{task} config: {f.name}: invalid value {_show(value)}; expected {_describe(tp)}"
            )


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
    return True  # a type this check does not know: the task's own checks decide


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
