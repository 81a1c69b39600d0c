"""A Pre-LN encoder-decoder Transformer for translation, with the same ``seq-2`` sites.

Same layers as the LM (:mod:`adsearch.models.seq_layers`), so a pattern file found on
language modelling applies here unchanged (the paper's transfer, PTB -> WMT En-Fr): a
pattern naming ``emb`` acts on the source and the target embeddings, ``qkv``/``attn_out``
on self- and cross-attention, ``ffn_*`` and ``residual`` in every encoder and decoder layer.
A baseline dict acts at ``emb``, ``attn_out`` and ``ffn_out``.

Separate source and target vocabularies; the decoder's output layer is tied to its input
embedding. Token id ``pad_id`` (0) is padding; learned absolute positions.

Shapes: ``src`` int64 ``(N, S)``, ``tgt_in`` int64 ``(N, T)`` -> logits ``(N, T, tgt_vocab)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.models.seq_layers import Block
from adsearch.models.sites import SeqDrops, regularizer_for_sites, seq_sublayer_specs
from adsearch.models.transformer_lm import _init
from adsearch.patterns import SearchSpace


@dataclass(frozen=True)
class Seq2SeqConfig:
    src_vocab: int = 8000  # source vocabulary size (set from the data)
    tgt_vocab: int = 8000  # target vocabulary size (set from the data)
    max_len: int = 64  # longest source or target sequence, in tokens (incl. BOS/EOS)
    n_layers: int = 2  # layers in the encoder and in the decoder, each
    n_heads: int = 4  # attention heads
    d_model: int = 128  # width of the residual stream
    d_ff: int = 512  # FFN hidden width
    pad_id: int = 0  # padding token id in both vocabularies


def get_default_config() -> Seq2SeqConfig:
    return Seq2SeqConfig()


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer taking one ``regularizer``."""

    def __init__(self, config: Seq2SeqConfig, regularizer: Any = None) -> None:
        super().__init__()
        self.config = config
        self.space = SearchSpace("seq", 2)
        self.num_sites = self.space.num_sites
        routed = seq_sublayer_specs(regularizer_for_sites(regularizer, self.space))
        c = config
        self.src_tok = nn.Embedding(c.src_vocab, c.d_model)
        self.tgt_tok = nn.Embedding(c.tgt_vocab, c.d_model)
        self.pos = nn.Embedding(c.max_len, c.d_model)
        self.emb_drops = SeqDrops(routed, ("emb",))
        self.encoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff, routed) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff, routed, cross=True) for _ in range(c.n_layers))
        self.ln_enc = nn.LayerNorm(c.d_model)
        self.ln_dec = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.tgt_vocab, bias=False)
        self.apply(_init)
        self.head.weight = self.tgt_tok.weight  # tied

    def _embed(self, tok: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds max_len {self.config.max_len}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.emb_drops.emb(tok(ids) + self.pos(pos))

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` (N, S) -> (memory (N, S, D), key mask (N, 1, 1, S), True = real token)."""
        mask = (src != self.config.pad_id)[:, None, None, :]
        x = self._embed(self.src_tok, src)
        for layer in self.encoder:
            x = layer(x, self_mask=mask)
        return self.ln_enc(x), mask

    def decode(self, tgt_in: torch.Tensor, mem: torch.Tensor, mem_mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``tgt_in`` (N, T) -> logits (N, T, tgt_vocab), or (N, 1, tgt_vocab) for the last
        position only (``last_only``, for decoding); causal self-attention."""
        x = self._embed(self.tgt_tok, tgt_in)
        for layer in self.decoder:
            x = layer(x, causal=True, mem=mem, mem_mask=mem_mask)
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_dec(x))

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits and, given ``tgt_out``, the mean token cross-entropy (pads ignored)."""
        mem, mask = self.encode(src)
        logits = self.decode(tgt_in, mem, mask)
        loss = None
        if tgt_out is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=self.config.pad_id
            )
        return logits, loss

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, bos_id: int, eos_id: int, max_new: int, extra: int = 10) -> torch.Tensor:
        """Greedy decoding: (N, S) -> generated ids (N, <= max_new), EOS and after -> pad.

        Stops after ``min(max_new, longest source length + extra)`` tokens (no KV cache:
        every step re-runs the decoder on the prefix, fine for caption-length sentences).
        """
        mem, mask = self.encode(src)
        n = src.shape[0]
        max_new = min(max_new, int(mask.sum(-1).max()) + extra)
        out = torch.full((n, 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(n, dtype=torch.bool, device=src.device)
        for _ in range(min(max_new, self.config.max_len - 1)):
            nxt = self.decode(out, mem, mask, last_only=True)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.config.pad_id), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos_id
            if bool(done.all()):
                break
        gen = out[:, 1:]
        return gen.masked_fill(gen == eos_id, self.config.pad_id)
