"""A Pre-LN decoder-only Transformer language model with tied embeddings.

The paper's LM target is Transformer-XL; ours is a plain GPT-style decoder trained on fixed
BPTT windows (**ours**: no Transformer-XL segment memory or relative positions, so a child
is cheap on a CPU; positions are learned absolute embeddings). The output layer shares its
weight with the token embedding (tied, Press & Wolf 2017).

Dropout sites: search space ``seq-2``: two patterns, each acting at the sub-layers named by
its ``sites`` field, in every layer (see :mod:`adsearch.models.seq_layers`); where both name
a sub-layer both act. A baseline dict acts at ``emb``, ``attn_out`` and ``ffn_out``.

Shapes: ``idx`` int64 ``(N, T)`` with ``T <= block_size``; logits ``(N, T, vocab_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.models.seq_layers import Block
from adsearch.models.sites import SeqDrops, regularizer_for_sites, seq_sublayer_specs
from adsearch.patterns import SearchSpace


@dataclass(frozen=True)
class LMConfig:
    vocab_size: int = 33278  # tokens in the vocabulary (WikiText-2's size; set from the data)
    block_size: int = 64  # longest input window (BPTT length), in tokens
    n_layers: int = 2  # Transformer layers
    n_heads: int = 4  # attention heads per layer
    d_model: int = 128  # width of the residual stream
    d_ff: int = 512  # FFN hidden width (4 x d_model)


def get_default_config() -> LMConfig:
    return LMConfig()


class TransformerLM(nn.Module):
    """Decoder-only LM taking one ``regularizer`` (PatternSet/patterns/dict/None)."""

    def __init__(self, config: LMConfig, regularizer: Any = None) -> None:
        super().__init__()
        self.config = config
        self.space = SearchSpace("seq", 2)
        self.num_sites = self.space.num_sites
        routed = seq_sublayer_specs(regularizer_for_sites(regularizer, self.space))
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.block_size, config.d_model)
        self.emb_drops = SeqDrops(routed, ("emb",))
        self.layers = nn.ModuleList(
            Block(config.d_model, config.n_heads, config.d_ff, routed) for _ in range(config.n_layers)
        )
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied
        self.apply(_init)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``idx`` (N, T) -> (logits (N, T, V), mean cross-entropy in nats or None)."""
        n, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.config.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.emb_drops.emb(self.tok(idx) + self.pos(pos))
        for layer in self.layers:
            x = layer(x, causal=True)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, std=0.02)
