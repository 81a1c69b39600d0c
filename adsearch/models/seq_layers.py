"""Pre-LN Transformer layers with the sequence dropout sub-layer sites.

Shared by :mod:`adsearch.models.transformer_lm` and :mod:`adsearch.models.seq2seq`, so a
``seq-2`` pattern acts at the same places in both. Sub-layer sites (``SeqPattern.sites``):

- ``emb``: the token + position embedding, ``(N, T, D)`` (applied by the models);
- ``qkv``: the query, key and value projections, each ``(N, T, D)`` separately (and the
  cross-attention's queries and its keys/values over the source);
- ``attn_out``: the attention output projection, before the residual add;
- ``ffn_hidden``: the FFN hidden activations ``(N, T, 4D)`` after GELU;
- ``ffn_out``: the FFN output, before the residual add;
- ``residual``: the residual stream at the end of each layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.models.sites import SeqDrops, Spec

LAYER_SITES = ("qkv", "attn_out", "ffn_hidden", "ffn_out", "residual")


class Attention(nn.Module):
    """Multi-head attention (self or cross) with the ``qkv`` and ``attn_out`` sites.

    ``x``: (N, T, D) queries; ``mem``: (N, S, D) keys/values source (None = self-attention);
    ``mask``: bool broadcastable to (N, H, T, S), True = may attend; ``causal`` for the LM.
    """

    def __init__(self, d_model: int, n_heads: int, drops: SeqDrops) -> None:
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.drops = drops

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor | None = None, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        n, t, d = x.shape
        src = x if mem is None else mem
        k, v = self.kv(src).chunk(2, dim=-1)
        q, k, v = (self.drops.qkv(z) for z in (self.q(x), k, v))
        h = self.n_heads
        q, k, v = (z.view(n, z.shape[1], h, d // h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)
        y = y.transpose(1, 2).reshape(n, t, d)
        return self.drops.attn_out(self.proj(y))


class FeedForward(nn.Module):
    """Linear(D, 4D) - GELU - [ffn_hidden] - Linear(4D, D) - [ffn_out]."""

    def __init__(self, d_model: int, d_ff: int, drops: SeqDrops) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)
        self.drops = drops

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drops.ffn_out(self.fc2(self.drops.ffn_hidden(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN layer: ``x + attn(ln(x))`` [``+ cross(ln(x), mem)``] ``+ ffn(ln(x))``, then the
    ``residual`` site. One :class:`SeqDrops` per layer, so every layer has its own modules."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, routed: dict[str, list[Spec]], cross: bool = False) -> None:
        super().__init__()
        self.drops = SeqDrops(routed, LAYER_SITES)
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, self.drops)
        self.ln_x = nn.LayerNorm(d_model) if cross else None
        self.cross = Attention(d_model, n_heads, self.drops) if cross else None
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, d_ff, self.drops)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None = None,
        causal: bool = False,
        mem: torch.Tensor | None = None,
        mem_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), mask=self_mask, causal=causal)
        if self.cross is not None and self.ln_x is not None:
            x = x + self.cross(self.ln_x(x), mem=mem, mask=mem_mask)
        x = x + self.ffn(self.ln2(x))
        return self.drops.residual(x)
