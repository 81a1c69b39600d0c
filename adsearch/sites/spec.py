"""Build a model from a command-line spec: ``torchvision:NAME`` or ``module:function``.

``torchvision:resnet18`` builds ``torchvision.models.get_model("resnet18", weights=None)``
(random init, nothing downloaded); ``package.module:function`` imports the module and calls
the function with no arguments, which must return an ``nn.Module``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from adsearch.errors import ConfigError

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def build_model(spec: str) -> nn.Module:
    """The model a spec names (see the module docstring); ConfigError names the fix."""
    mod_name, sep, attr = str(spec).partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(
            f"model spec {spec!r}: expected 'torchvision:NAME' (e.g. torchvision:resnet18) or "
            "'package.module:function' (a function returning an nn.Module)"
        )
    if mod_name == "torchvision":
        import torchvision

        names = torchvision.models.list_models()
        if attr not in names:
            close = difflib.get_close_matches(attr.lower(), names, n=6, cutoff=0.6)
            hint = f"; close names: {', '.join(close)}" if close else ""
            raise ConfigError(
                f"model spec {spec!r}: torchvision has no model {attr!r}{hint} (all names: "
                "torchvision.models.list_models())"
            )
        return torchvision.models.get_model(attr, weights=None)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(
            f"model spec {spec!r}: cannot import module {mod_name!r} ({exc}); put it on "
            "PYTHONPATH or run from the folder that holds it"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"model spec {spec!r}: module {mod_name!r} has no callable {attr!r}")
    model = fn()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model spec {spec!r}: {attr}() returned {type(model).__name__}, expected a "
            "torch.nn.Module"
        )
    return model


def example_tensor(shape: Sequence[int], dtype: str = "float32") -> torch.Tensor:
    """A zero tensor of ``shape`` (``int64`` for models that take token ids)."""
    if dtype not in _DTYPES:
        raise ConfigError(
            f"--dtype: invalid value {dtype!r}; allowed values are {', '.join(_DTYPES)}"
        )
    return torch.zeros(tuple(shape), dtype=_DTYPES[dtype])


def parse_shape(text: Any) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; every entry a positive integer."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--input: invalid shape {text!r}; expected comma-separated positive integers "
            "such as 1,3,32,32 (batch, channels, height, width)"
        )
    return tuple(int(p) for p in parts)
