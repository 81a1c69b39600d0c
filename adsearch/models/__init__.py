"""Target networks with dropout sites. Every model takes one ``regularizer`` argument and
exposes ``.space`` (its :class:`~adsearch.patterns.SearchSpace`) and ``.num_sites``.

=======================  =========  ===============================================
model                    space      sites
=======================  =========  ===============================================
``wide_resnet`` (WRN)    conv-3     one per group, after both BNs of each block
``resnet50``             conv-4     one per stage, after bn1/bn2/bn3 of each block
``TransformerLM``        seq-2      two patterns, each at its ``sites`` sub-layers
``Seq2SeqTransformer``   seq-2      same sub-layers, encoder and decoder
=======================  =========  ===============================================
"""

from __future__ import annotations

from typing import Any

from adsearch.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from adsearch.models.sites import BASELINE_SEQ_SITES, regularizer_for_sites, seq_sublayer_specs
from adsearch.models.transformer_lm import LMConfig, TransformerLM
from adsearch.models.wrn import WideResNet, WRNConfig, wide_resnet


def resnet50(num_classes: int = 1000, regularizer: Any = None) -> Any:
    """torchvision ResNet-50 with conv-4 sites (imports torchvision on first use)."""
    from adsearch.models.resnet import resnet50 as _resnet50

    return _resnet50(num_classes, regularizer)


__all__ = [
    "BASELINE_SEQ_SITES",
    "LMConfig",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
    "TransformerLM",
    "WRNConfig",
    "WideResNet",
    "regularizer_for_sites",
    "resnet50",
    "seq_sublayer_specs",
    "wide_resnet",
]
