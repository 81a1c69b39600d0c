"""Optuna's TPE sampler behind the controller interface (``--controller tpe``, issue 20 §3).

The library does the work (Optuna's ``TPESampler`` through ``study.ask``/``study.tell``);
this module only maps a search space's tokens to Optuna distributions and keeps the state
exactly reproducible:

- every token is one Optuna parameter ``t<i>_<field>``: an ``IntDistribution`` over the
  value indices where the field's values are ordered numbers (rates, sides, sizes, angles,
  group counts; their grids are sorted, so the index is ordinal), else a
  ``CategoricalDistribution`` (kinds, flags, sub-layer sets, ``repeat`` with None);
- the state is the told history ``(tokens, reward)`` in the order of the updates, plus the
  number of samples drawn so far. Each draw builds a fresh in-memory study from that
  history, with the sampler seeded from ``(seed, len(history), index of the draw)``: the
  same history gives the same next pattern, whether the draws come one by one or in a batch.
  At resume the daemon restores the history from the checkpoint, replays the unconsumed
  results from the store (as for every controller) and sets the draw index from the store
  (:meth:`TPEController.sync_drawn`: the search trials stored), so a kill -9 and a resume
  draw the same next pattern as a run without the kill.
- learning: every reward passed to :meth:`update` joins the history, enqueued trials
  included (TPE is off-policy by construction: it models the observed rewards, not the
  sampling policy). ``logp`` is 0 for every sample (TPE has no sampling probability); the
  staleness correction of the Transformer controller does not apply.

optuna is imported when a TPE controller is built, never by ``status``/``list``/``--help``.
It is the ``tpe`` extra: ``pip install 'adsearch[tpe]'``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from adsearch.controller.checks import check_batch, check_state_header
from adsearch.controller.config import ControllerConfig, config_from_dict, get_default_config
from adsearch.controller.records import Sample, UpdateStats
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace

#: TPE's random start-up trials before its model takes over (Optuna's default is 10).
N_STARTUP = 10


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "--controller tpe needs the optuna package; install it with "
            "`pip install 'adsearch[tpe]'` (or `pip install optuna`), or use --controller "
            "transformer or random"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _ordinal(values: tuple[Any, ...]) -> bool:
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return nums and list(values) == sorted(values) and len(values) > 2


class TPEController:
    """Optuna TPE over ``space`` (see the module docstring).

    Args:
        space: the search space.
        config: a :class:`ControllerConfig` (only ``baseline_decay`` is used, for the
            daemon's bookkeeping).
        seed: the search seed; the sampler's seed is derived from it and the history.
    """

    kind = "tpe"

    def __init__(
        self, space: SearchSpace, config: ControllerConfig | None = None, seed: int = 0
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"controller seed: invalid value {seed!r}; expected an integer")
        self._opt = _optuna()
        self.space = space
        self.config = config or get_default_config()
        self.seed = seed
        self.version = 0
        self.baseline: float | None = None
        self.drawn = 0
        self.history: list[tuple[tuple[int, ...], float]] = []
        dist = self._opt.distributions
        self._names: list[str] = []
        self._dists: dict[str, Any] = {}
        for i, c in enumerate(space.choices()):
            _, field = space.token_field(i)
            name = f"t{i:03d}_{field}"
            vals = space.values[field]
            self._names.append(name)
            self._dists[name] = (
                dist.IntDistribution(0, c - 1) if _ordinal(vals)
                else dist.CategoricalDistribution(list(range(c)))
            )

    def sync_drawn(self, drawn: int) -> None:
        """Set the draw index from the store at resume: the number of trials this controller
        drew (the search's stored trials of purpose ``search``)."""
        self.drawn = int(drawn)

    def _sampler_seed(self) -> int:
        blob = f"{self.seed}:{len(self.history)}:{self.drawn}".encode()
        return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")

    def _study(self) -> Any:
        opt = self._opt
        sampler = opt.samplers.TPESampler(seed=self._sampler_seed(), n_startup_trials=N_STARTUP)
        study = opt.create_study(direction="maximize", sampler=sampler)
        for tokens, reward in self.history:
            params = {n: int(t) for n, t in zip(self._names, tokens, strict=True)}
            study.add_trial(opt.trial.create_trial(
                params=params, distributions=self._dists, value=reward))
        return study

    def sample(self, n: int) -> list[Sample]:
        """``n`` patterns from TPE given the history, stamped with the current version."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"controller.sample: n={n!r}; expected a positive integer")
        out = []
        for _ in range(n):  # one study per draw: a batch equals the same draws one by one
            trial = self._study().ask(self._dists)
            toks = tuple(int(trial.params[name]) for name in self._names)
            out.append(Sample(toks, tuple(self.space.decode(toks)), 0.0, self.version))
            self.drawn += 1
        return out

    def log_prob(self, samples: Sequence[Sample]) -> list[float]:
        return [0.0 for _ in samples]

    def update(self, batch: Sequence[tuple[Sample, float]]) -> UpdateStats:
        """Add the batch to the history (TPE's model is rebuilt from it at the next draw)."""
        samples, rewards = check_batch(self.space, batch)
        self.history.extend((tuple(s.tokens), r) for s, r in zip(samples, rewards, strict=True))
        mean_r = sum(rewards) / len(rewards)
        base = mean_r if self.baseline is None else self.baseline
        d = self.config.baseline_decay
        self.baseline = mean_r if self.baseline is None else d * self.baseline + (1 - d) * mean_r
        stale = [max(0, self.version - s.version) for s in samples]
        self.version += 1
        return UpdateStats(
            baseline=base, entropy=0.0, mean_reward=mean_r, loss=0.0, clipped_frac=0.0,
            version=self.version, n=len(samples), mean_staleness=sum(stale) / len(stale),
            max_staleness=max(stale), grad_norm=0.0,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "space": {"name": self.space.name, "fingerprint": self.space.fingerprint()},
            "config": self.config.to_dict(),
            "seed": self.seed,
            "version": self.version,
            "baseline": self.baseline,
            "drawn": self.drawn,
            "history": [[list(t), r] for t, r in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state_header(state, self.kind, self.space)
        try:
            config = config_from_dict(state["config"])
            history = [(tuple(int(x) for x in t), float(r)) for t, r in state["history"]]
            if any(len(t) != self.space.num_tokens for t, _ in history):
                raise ValueError("a history entry has the wrong number of tokens")
            self.seed = int(state["seed"])
            self.version = int(state["version"])
            self.drawn = int(state["drawn"])
            b = state["baseline"]
            self.baseline = None if b is None else float(b)
            self.history = history
            self.config = config
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"controller state: cannot restore the TPE controller ({type(exc).__name__}: "
                f"{exc}); load an older checkpoint or start a fresh controller"
            ) from None

    def __repr__(self) -> str:
        return f"TPEController(space={self.space.name}, told={len(self.history)})"
