"""The controller's policy network: a small causal Transformer over pattern tokens.

**paper** (Pham & Le 2021): a Transformer controller emits the pattern tokens
autoregressively, like a language model. **ours**: everything below.

Layout (minGPT style). A sequence of ``T = space.num_tokens`` decisions; position ``i`` is
field ``i % F`` of site ``i // F``. The input at position ``i`` is the embedding of the
previous decision (a BOS token at ``i = 0``) plus a learned position embedding. Decisions of
all fields share one output vocabulary of ``V = sum(len(values[f]))`` entries, one block per
field; one linear head maps the residual stream to ``V`` logits, and position ``i`` keeps only
its field's block (the rest are masked to ``-inf``), so each head is restricted to that
field's choices (``SearchSpace.choices()``). A token's *global* id is
``offset[field] + token``; its input id is ``1 + global id`` (0 is BOS).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from adsearch.controller.config import ControllerConfig
from adsearch.patterns import SearchSpace


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention on ``(B, T, d_model)``."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_head, c // self.n_head).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))

    def step(self, x: torch.Tensor, cache: torch.Tensor, i: int) -> torch.Tensor:
        """Incremental decoding: ``x`` is position ``i`` only, ``(B, 1, d_model)``.

        ``cache`` is ``(2, B, n_head, T, head_dim)``; keys and values of position ``i`` are
        written into it and the query attends to positions ``0..i``.
        """
        b, _, c = x.shape
        q, k, v = self.qkv(x).view(b, 1, 3, self.n_head, c // self.n_head).permute(2, 0, 3, 1, 4)
        cache[0, :, :, i : i + 1] = k
        cache[1, :, :, i : i + 1] = v
        y = F.scaled_dot_product_attention(q, cache[0, :, :, : i + 1], cache[1, :, :, : i + 1])
        return self.proj(y.transpose(1, 2).reshape(b, 1, c))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: attention then a 4x GELU MLP, both residual."""

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.out = nn.Linear(4 * config.d_model, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))

    def step(self, x: torch.Tensor, cache: torch.Tensor, i: int) -> torch.Tensor:
        """:meth:`forward` for position ``i`` alone, with a key/value cache."""
        x = x + self.attn.step(self.ln1(x), cache, i)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PatternPolicy(nn.Module):
    """Causal Transformer policy over the token sequence of ``space``.

    Args:
        space: the search space; fixes ``T`` and the choices per position.
        config: network sizes and sampling settings (temperature, epsilon).
        generator: the torch generator used to initialise the weights (the global RNG is
            neither used nor advanced).
    """

    pos_offset: torch.Tensor  # (T,) offset of each position's field in the vocabulary
    allowed: torch.Tensor  # (T, V) bool, True where the entry is one of the field's choices
    uniform: torch.Tensor  # (T, V) the uniform distribution over each position's choices

    def __init__(
        self, space: SearchSpace, config: ControllerConfig, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.space = space
        self.config = config
        choices = space.choices()
        nf = len(space.fields)
        per_field = choices[:nf]
        offsets = [sum(per_field[:j]) for j in range(nf)]
        vocab = sum(per_field)
        self.num_tokens = len(choices)
        self.vocab = vocab
        pos_offset = torch.tensor([offsets[i % nf] for i in range(self.num_tokens)])
        allowed = torch.zeros(self.num_tokens, vocab, dtype=torch.bool)
        for i, n in enumerate(choices):
            allowed[i, pos_offset[i] : pos_offset[i] + n] = True
        self.register_buffer("pos_offset", pos_offset, persistent=False)  # (T,)
        self.register_buffer("allowed", allowed, persistent=False)  # (T, V)
        self.register_buffer(  # (T, V): uniform over each position's choices
            "uniform",
            allowed.float() / torch.tensor(choices, dtype=torch.float32)[:, None],
            persistent=False,
        )
        # Building nn.Linear draws from the global RNG; fork it so construction has no side
        # effect on the caller's randomness, then re-initialise from our own generator.
        with torch.random.fork_rng(devices=[]):
            self.tok_emb = nn.Embedding(1 + vocab, config.d_model)
            self.pos_emb = nn.Embedding(self.num_tokens, config.d_model)
            self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
            self.ln_f = nn.LayerNorm(config.d_model)
            self.head = nn.Linear(config.d_model, vocab)
        for name, p in self.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln_f"):
                continue
            std = config.init_std
            if name.endswith("proj.weight") or name.endswith("out.weight"):
                std = std / math.sqrt(2 * config.n_layer)  # GPT-2 residual scaling
            with torch.no_grad():
                p.normal_(0.0, std, generator=generator)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    p.zero_()

    # ------------------------------------------------------------------ core
    def _trunk(self, ids: torch.Tensor) -> torch.Tensor:
        """Input ids ``(B, t)`` -> final hidden states ``(B, t, d_model)``."""
        t = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb.weight[:t]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def _log_probs(self, h: torch.Tensor, pos: slice | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states -> (log q, log p) over the global vocabulary, masked per position.

        ``p`` is the temperature-scaled softmax (the policy being learned, whose entropy is
        reported); ``q = (1 - epsilon) p + epsilon * uniform`` is what samples are drawn
        from (the behaviour policy). Disallowed entries are ``-inf`` in both.
        """
        logits = self.head(h) / self.config.temperature
        allowed = self.allowed[pos]
        logp = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        eps = self.config.epsilon
        if eps == 0.0:
            return logp, logp
        q = (1.0 - eps) * logp.exp() + eps * self.uniform[pos]
        # log(0) would put inf in the backward pass of masked entries (0 * inf = nan).
        logq = torch.log(q.masked_fill(~allowed, 1.0)).masked_fill(~allowed, float("-inf"))
        return logq, logp

    def input_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs: BOS then ``1 + global id`` of tokens ``0..T-2``."""
        glob = tokens + self.pos_offset
        bos = torch.zeros(tokens.shape[0], 1, dtype=torch.long, device=tokens.device)
        return torch.cat([bos, glob[:, :-1] + 1], dim=1)

    def evaluate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy of complete token sequences (differentiable).

        Args:
            tokens: ``(B, T)`` long, per-field token indices.
        Returns:
            ``(logq, entropy)``, each ``(B,)``: ``logq`` is the behaviour-form
            log-probability of the sequence (sum over tokens); ``entropy`` is the sum over
            positions of the entropy of ``p`` (nats).
        """
        h = self._trunk(self.input_ids(tokens))
        logq, logp = self._log_probs(h, slice(None))
        glob = (tokens + self.pos_offset).unsqueeze(-1)
        seq_logq = logq.gather(-1, glob).squeeze(-1).sum(dim=1)
        ent = -(logp.exp() * logp.masked_fill(~self.allowed, 0.0)).sum(dim=-1).sum(dim=1)
        return seq_logq, ent

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` sequences autoregressively from ``q``, with a key/value cache.

        Returns:
            ``(tokens, logq)``: ``(n, T)`` long per-field indices and ``(n,)`` float
            behaviour log-probabilities.
        """
        t_all, cfg = self.num_tokens, self.config
        caches = [
            torch.empty(2, n, cfg.n_head, t_all, cfg.d_model // cfg.n_head) for _ in self.blocks
        ]
        glob = torch.empty(n, t_all, dtype=torch.long)
        logq_sum = torch.zeros(n)
        prev = torch.zeros(n, 1, dtype=torch.long)  # BOS
        pos = self.pos_emb.weight
        for i in range(t_all):
            x = self.tok_emb(prev) + pos[i]
            for block, cache in zip(self.blocks, caches, strict=True):
                x = block.step(x, cache, i)  # type: ignore[operator]
            logq, _ = self._log_probs(self.ln_f(x[:, 0]), i)
            choice = torch.multinomial(logq.exp(), 1, generator=generator)  # (n, 1)
            logq_sum += logq.gather(-1, choice).squeeze(-1)
            glob[:, i] = choice.squeeze(-1)
            prev = choice + 1
        return glob - self.pos_offset, logq_sum
