"""The RL controller: a causal Transformer policy over pattern tokens, trained with
REINFORCE and a PPO-style staleness correction, plus crash-safe checkpoints.

Importing this package does not import torch: the records (:class:`Sample`,
:class:`UpdateStats`), the config, :func:`make_controller`, the random controller and the
synthetic rewards are torch-free; ``TransformerController`` and the checkpoint functions
load torch when first used. See ``docs/controller.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from adsearch.controller.base import KINDS, Controller
from adsearch.controller.config import ControllerConfig, config_from_dict, get_default_config
from adsearch.controller.factory import controller_from_state, make_controller
from adsearch.controller.records import Sample, UpdateStats

_LAZY = {
    "TransformerController": "adsearch.controller.transformer",
    "RandomController": "adsearch.controller.random_search",
    "CheckpointManager": "adsearch.controller.checkpoint",
    "CheckpointInfo": "adsearch.controller.checkpoint",
    "LoadedCheckpoint": "adsearch.controller.checkpoint",
    "CheckpointFallbackWarning": "adsearch.controller.checkpoint",
    "SpaceMismatchError": "adsearch.controller.checkpoint",
    "read_checkpoint": "adsearch.controller.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adsearch.controller' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "KINDS",
    "CheckpointFallbackWarning",
    "CheckpointInfo",
    "CheckpointManager",
    "Controller",
    "ControllerConfig",
    "LoadedCheckpoint",
    "RandomController",
    "Sample",
    "SpaceMismatchError",
    "TransformerController",
    "UpdateStats",
    "config_from_dict",
    "controller_from_state",
    "get_default_config",
    "make_controller",
    "read_checkpoint",
]
