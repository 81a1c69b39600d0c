"""The Transformer controller: sampling, the REINFORCE update with staleness correction,
and exact-resume state.

Estimator (**ours**; the paper says only "REINFORCE"; full derivation in
``docs/controller.md``). For a batch of ``n`` finished samples ``(x_k, R_k)``, each drawn
by an older or equal controller version with behaviour log-probability ``log mu(x_k)``:

- baseline: ``b`` is an exponential moving average of batch-mean rewards (the first batch
  uses its own mean); advantages ``A_k = R_k - b``; after the step
  ``b <- d * b + (1 - d) * mean(R)``.
- scale (``normalize_advantage``): ``A_k`` is divided by
  ``s = max(std(R), s_ema, adv_rel_floor * max(|b|, |mean(R)|), adv_std_floor)``, where
  ``s_ema`` is an exponential moving average of past batches' reward std (decay
  ``adv_std_decay``, updated after the step, kept in the checkpoint). Dividing by the batch
  std alone exploded when a batch was nearly tied: round 3 divided a 0.18 gap to the
  baseline by the 1e-3 floor, an advantage of -176. The running std keeps the scale the
  search has seen; the relative floor says a spread below 1% of the reward level is a tie.
- clip: ``A_k`` is clipped to ``[-adv_clip, adv_clip]`` (5 by default). Inside one batch
  a z-score cannot exceed ``(n - 1) / sqrt(n)`` (2.5 for n = 8), so the clip binds only
  when the baseline is far from the batch; it bounds every sample's weight in the loss.
- ratio: ``r_k = exp(log q_theta(x_k) - log mu(x_k))``, with ``q_theta`` the *current*
  behaviour-form policy (same temperature and epsilon mixing), so a fresh sample has
  ``r = 1``.
- ``correction="clip"`` (default, PPO): ``L = -mean_k min(r_k A_k, clip(r_k, 1-c, 1+c) A_k)``,
  lower-bounded by ``dual_clip * A_k`` when ``A_k < 0`` (dual clip); its gradient is
  ``r_k A_k grad log q_theta(x_k)`` inside the band and 0 where clipping binds, so
  on-policy samples get exactly the REINFORCE gradient and stale ones a bounded weight.
  ``c = 0.5`` by default: the ratio is over the whole sequence (24 tokens for conv-3).
- ``correction="truncate"``: ``L = -mean_k min(r_k, truncate_max) A_k log q_theta(x_k)``,
  the weight detached (truncated importance sampling).
- ``correction="none"``: ``L = -mean_k A_k log q_theta(x_k)`` (stale samples treated as
  on-policy; kept as the ablation).
- entropy bonus: ``L -= entropy_coef * mean_k H_k``, ``H_k`` the sum over positions of the
  entropy of the temperature softmax along ``x_k``'s prefixes.

Adam minimises ``L``; gradients are clipped to ``grad_clip`` global norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from adsearch.controller.checks import check_batch, check_state_header
from adsearch.controller.config import ControllerConfig, config_from_dict, get_default_config
from adsearch.controller.policy import PatternPolicy
from adsearch.controller.records import Sample, UpdateStats
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace


class TransformerController:
    """REINFORCE-trained causal Transformer over the tokens of ``space``.

    Args:
        space: the search space whose token sequences are sampled.
        config: hyperparameters (defaults: :func:`get_default_config`).
        seed: seeds both the weight init and the sampling generator.
    """

    kind = "transformer"

    def __init__(
        self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"controller seed: invalid value {seed!r}; expected an integer")
        self.space = space
        self.seed = seed
        self.version = 0
        self.baseline: float | None = None
        self.reward_std: float | None = None  # running std of batch rewards (advantage scale)
        self.generator = torch.Generator().manual_seed(seed)
        self._build(config or get_default_config())

    def _build(self, config: ControllerConfig) -> None:
        self.config = config
        init_gen = torch.Generator().manual_seed(self.seed + 0x5EED)
        self.policy = PatternPolicy(self.space, config, init_gen)
        self._optimizer: torch.optim.Adam | None = None

    @property
    def optimizer(self) -> torch.optim.Adam:
        """The policy's Adam, made on first use: building a torch optimizer imports
        torch._dynamo (seconds), which a daemon need not pay before it reports ready."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(
                self.policy.parameters(),
                lr=self.config.lr,
                betas=(self.config.adam_beta1, self.config.adam_beta2),
                foreach=True,
            )
        return self._optimizer

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int) -> list[Sample]:
        """Draw ``n`` samples from the current policy, stamped with the current version."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"controller.sample: n={n!r}; expected a positive integer")
        self.policy.eval()
        tokens, logq = self.policy.sample(n, self.generator)
        out = []
        for row, lp in zip(tokens.tolist(), logq.tolist(), strict=False):
            out.append(
                Sample(tuple(row), tuple(self.space.decode(row)), min(lp, 0.0), self.version)
            )
        return out

    def log_prob(self, samples: Sequence[Sample]) -> list[float]:
        """Current behaviour-form log-probabilities of ``samples`` (no gradient)."""
        toks = torch.tensor([s.tokens for s in samples], dtype=torch.long)
        with torch.no_grad():
            logq, _ = self.policy.evaluate(toks)
        return logq.tolist()

    # ------------------------------------------------------------------ learning
    def update(self, batch: Sequence[tuple[Sample, float]]) -> UpdateStats:
        """One REINFORCE update on finished samples (see the module docstring).

        Raises:
            ConfigError: empty batch, non-finite reward, or an item that is not a pair.
            PatternError: tokens that do not fit this controller's space.
        """
        samples, rewards = check_batch(self.space, batch)
        cfg = self.config
        toks = torch.tensor([s.tokens for s in samples], dtype=torch.long)
        behaviour = torch.tensor([s.logp for s in samples], dtype=torch.float32)
        r = torch.tensor(rewards, dtype=torch.float32)
        stale = [max(0, self.version - s.version) for s in samples]
        mean_r = float(r.mean())
        base = mean_r if self.baseline is None else self.baseline
        batch_std = float(r.std()) if len(samples) > 1 else 0.0
        scale = self.advantage_scale(batch_std, base, mean_r) if cfg.normalize_advantage else 1.0
        adv = (r - base) / scale
        if cfg.adv_clip > 0:
            adv = adv.clamp(-cfg.adv_clip, cfg.adv_clip)
        self.policy.train()
        first: dict[str, float] = {}
        for epoch in range(cfg.update_epochs):
            logq, ent = self.policy.evaluate(toks)
            log_ratio = (logq - behaviour).clamp(-cfg.max_log_ratio, cfg.max_log_ratio)
            ratio = log_ratio.exp()
            if cfg.correction == "clip":
                clipped = ratio.clamp(1.0 - cfg.clip_ratio, 1.0 + cfg.clip_ratio)
                surr = torch.minimum(ratio * adv, clipped * adv)
                if cfg.dual_clip > 0:  # bound r * A from below when A < 0
                    surr = torch.where(adv < 0, torch.maximum(surr, cfg.dual_clip * adv), surr)
                pg = -surr.mean()
            elif cfg.correction == "truncate":
                weight = ratio.detach().clamp(max=cfg.truncate_max)
                pg = -(weight * adv * logq).mean()
            else:
                pg = -(adv * logq).mean()
            loss = pg - cfg.entropy_coef * ent.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(
                    self.policy.parameters(), cfg.grad_clip, foreach=True
                )
            else:
                gnorm = torch.linalg.vector_norm(
                    torch.stack(
                        [p.grad.norm() for p in self.policy.parameters() if p.grad is not None]
                    )
                )
            if not torch.isfinite(gnorm):
                self.optimizer.zero_grad(set_to_none=True)
                raise ConfigError(
                    f"controller.update: non-finite gradient (norm {float(gnorm)}) at version "
                    f"{self.version}; the update was not applied. Check the rewards' scale or "
                    "lower ControllerConfig.lr"
                )
            self.optimizer.step()
            if epoch == 0:
                band = (ratio.detach() - 1.0).abs() > cfg.clip_ratio
                first = {
                    "loss": float(loss.detach()),
                    "entropy": float(ent.detach().mean()),
                    "clipped_frac": float(band.float().mean()),
                    "grad_norm": float(gnorm),
                }
        d = cfg.baseline_decay
        self.baseline = mean_r if self.baseline is None else d * self.baseline + (1 - d) * mean_r
        if len(samples) > 1:  # one sample has no spread: the running std is left as it was
            ds = cfg.adv_std_decay
            self.reward_std = (batch_std if self.reward_std is None
                               else ds * self.reward_std + (1 - ds) * batch_std)
        self.version += 1
        return UpdateStats(
            baseline=float(base),
            entropy=first["entropy"],
            mean_reward=mean_r,
            loss=first["loss"],
            clipped_frac=first["clipped_frac"],
            version=self.version,
            n=len(samples),
            mean_staleness=sum(stale) / len(stale),
            max_staleness=max(stale),
            grad_norm=first["grad_norm"],
            adv_scale=float(scale),
            adv_max=float(adv.abs().max()),
        )

    def advantage_scale(self, batch_std: float, base: float, mean_r: float) -> float:
        """What advantages are divided by (reward units): the batch's reward std, the running
        std of past batches, a floor relative to the reward level and an absolute floor,
        whichever is largest (module docstring)."""
        cfg = self.config
        level = max(abs(base), abs(mean_r))
        return max(batch_std, self.reward_std or 0.0, cfg.adv_rel_floor * level,
                   cfg.adv_std_floor)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed for an exact resume, as plain data and tensors.

        Keys: ``kind``, ``space`` (name, fingerprint), ``config`` (dict), ``seed``,
        ``version``, ``baseline``, ``reward_std`` (running std of batch rewards, None before
        the first batch of two or more), ``model`` (policy weights), ``optimizer`` (Adam
        state), ``rng`` (``{"torch": sampling generator state}``). Tensors are cloned.
        """
        return {
            "kind": self.kind,
            "space": {"name": self.space.name, "fingerprint": self.space.fingerprint()},
            "config": self.config.to_dict(),
            "seed": self.seed,
            "version": self.version,
            "baseline": self.baseline,
            "reward_std": self.reward_std,
            "model": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": _clone_tensors(self.optimizer.state_dict()),
            "rng": {"torch": self.generator.get_state().clone()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output, config included (the checkpoint's config wins).

        Raises:
            CheckpointError: another kind or space, or missing/mismatched entries.
        """
        check_state_header(state, self.kind, self.space)
        try:
            config = config_from_dict(state["config"])
            seed = int(state["seed"])
            version = int(state["version"])
            baseline = state["baseline"]
            reward_std = state.get("reward_std")  # absent from checkpoints before issue 19
            if config != self.config or seed != self.seed:
                self.seed = seed
                self._build(config)
            self.policy.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["rng"]["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"controller state: cannot restore the transformer controller ({type(exc).__name__}: "
                f"{exc}); the state is incomplete or from an incompatible adsearch version, "
                "load an older checkpoint or start a fresh controller"
            ) from None
        self.version = version
        self.baseline = None if baseline is None else float(baseline)
        self.reward_std = None if reward_std is None else float(reward_std)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.policy.parameters())
        return (
            f"TransformerController(space={self.space.name}, version={self.version}, "
            f"params={n}, n_layer={self.config.n_layer}, d_model={self.config.d_model})"
        )


def _clone_tensors(obj: Any) -> Any:
    """Deep-copy a nested dict/list structure, cloning tensors (optimizer state)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone_tensors(v) for v in obj]
    return obj
