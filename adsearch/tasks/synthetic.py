"""The ``synthetic`` task: a reward that is a known function of the pattern, for tests,
dry runs and scheduling benchmarks. It never imports torch and never stands in for a real
task where quality is measured.

The reward is :func:`adsearch.controller.synthetic.make_reward` (``"match"`` or
``"interaction"`` with a hidden target drawn from ``target_seed``), plus Gaussian noise drawn
from the trial seed, so a trial's reward is reproducible. A child may ``sleep`` to stand in
for training time. ``bad_fraction`` / ``nan_fraction`` make a deterministic share of patterns
(chosen by the pattern's hash) raise or return NaN, to exercise the bad-pattern path;
``bug`` makes every child raise a built-in exception, to exercise the code-error path.

For ``adsearch verify`` it also scores baseline spec dicts (:func:`baseline_reward`, a known
optimum at drop_prob 0.1) and reports ``test_reward``, a held-out score whose noise is
shared by every regularizer of one seed, as paired runs of a real network are.

Learning curve (**ours**, for early stopping): one point per epoch ``e`` (1, 2, ... up to
the budget) with ``val_metric = clean * (1 - 2**(-4 e / E)) / (1 - 2**-4) + noise`` (``E``
= the config's ``epochs``; the noise, ``noise_sd`` per point, is drawn from the trial seed
and the epoch), so early values rank patterns like the final one, with noise. At ``E`` the
value is the reward, unchanged from before curves existed. Each point calls
``budget.prune_now``; ``sleep`` is spread evenly over the epochs. ``curve="reverse"`` makes
early epochs rank patterns backwards (see :func:`_early`), for tests of the rung checks.
Baseline specs get the same per-epoch curve.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import SearchSpace
from adsearch.reward import from_metric
from adsearch.strict import check_types
from adsearch.tasks.result import Budget, ChildResult


@dataclass(frozen=True)
class SyntheticConfig:
    task: str = "synthetic"  # registry name (fixed)
    space: str = "conv-3"  # search space name, e.g. conv-3 or seq-2
    reward: str = "match"  # "match" or "interaction" (see adsearch.controller.synthetic)
    target_seed: int = 0  # picks the hidden optimum
    noise_sd: float = 0.05  # std of the additive reward noise
    sleep: float = 0.0  # seconds a child sleeps per `epochs` (stands in for training time)
    epochs: float = 4.0  # the full budget in epochs (a Budget's epochs override it)
    bad_fraction: float = 0.0  # share of patterns whose child raises (a bad pattern)
    nan_fraction: float = 0.0  # share of patterns whose child returns a NaN reward
    curve: str = "agree"  # learning curves: "agree" (early epochs rank as the end does, with
    # noise) or "reverse" (they rank backwards until half the budget, as over-fitting children
    # did on the round-3 LM; for the rung checks of issue 19 §3)
    input_side: int = 0  # > 0: the patterns stand for a network whose conv sites act on maps
    # of side input_side, /2, /4, ... px (site i: input_side >> i), so the drop cap applies
    # (adsearch.ops.cap; seq spaces: the cap's map-free rule); 0: no network, no cap
    bug: str = ""  # a built-in exception type (e.g. "NameError") every child raises: stands in
    # for a bug in task code, which is no result (adsearch.daemon.failures); "" = none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BadPatternError(RuntimeError):
    """Raised by a synthetic child for a pattern in the configured ``bad_fraction``: the
    stand-in for a pattern that breaks training, so it is a bad-pattern *result* (see
    :func:`adsearch.daemon.failures.classify`), never a code error."""

    adsearch_failure = "bad_pattern"


def _unit(patterns: list[dict[str, Any]], salt: str) -> float:
    """A number in [0, 1) fixed by the patterns: picks the bad/NaN share deterministically."""
    blob = json.dumps([salt, patterns], sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") / 2**64


class SyntheticTask:
    """A task whose reward is a known function of the pattern tokens."""

    name = "synthetic"
    test_data_key = None  # no data: --test-data is refused (registry.data_overrides)

    def get_default_config(self) -> SyntheticConfig:
        return SyntheticConfig()

    def config_from_dict(self, data: dict[str, Any]) -> SyntheticConfig:
        known = {f.name for f in fields(SyntheticConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"synthetic task config: unknown key(s) {', '.join(unknown)}; known keys are "
                f"{', '.join(sorted(known))}"
            )
        check_types(SyntheticConfig, data, "synthetic task config")
        cfg = SyntheticConfig(**data)
        if cfg.task != "synthetic":
            raise ConfigError(f"synthetic task config: task is {cfg.task!r}, expected 'synthetic'")
        try:
            SearchSpace.from_name(cfg.space)
        except PatternError as exc:
            raise ConfigError(f"synthetic task config: space: {exc}") from None
        from adsearch.controller.synthetic import REWARDS

        if cfg.reward not in REWARDS:
            raise ConfigError(
                f"synthetic task config: unknown reward {cfg.reward!r}; choose one of "
                f"{', '.join(REWARDS)}"
            )
        if cfg.input_side < 0:
            raise ConfigError(f"synthetic task config: input_side={cfg.input_side!r}; must be "
                              "an integer >= 0 (0: no network)")
        for name in ("noise_sd", "sleep", "bad_fraction", "nan_fraction"):
            v = getattr(cfg, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"synthetic task config: {name}={v!r}; must be a number >= 0")
        if cfg.bug and not (isinstance(cfg.bug, str) and isinstance(
                getattr(builtins, cfg.bug, None), type) and issubclass(
                getattr(builtins, cfg.bug), Exception)):
            raise ConfigError(f"synthetic task config: bug={cfg.bug!r}; give the name of a "
                              "built-in exception such as NameError, or omit it")
        if cfg.curve not in CURVES:
            raise ConfigError(f"synthetic task config: curve={cfg.curve!r}; choose one of "
                              f"{', '.join(CURVES)}")
        if cfg.bad_fraction + cfg.nan_fraction > 1:
            raise ConfigError("synthetic task config: bad_fraction + nan_fraction must be <= 1")
        return cfg

    def space(self, config: SyntheticConfig) -> SearchSpace:
        return SearchSpace.from_name(config.space)

    def site_maps(self, config: SyntheticConfig) -> list[tuple[tuple[int, int], ...]] | None:
        """The maps the drop cap checks (adsearch.daemon.dedup.task_site_maps): None (no
        network, no cap) unless ``input_side`` is set; then site ``i`` of a conv space acts on
        one ``(input_side >> i)``-px square map, and a seq site needs none."""
        if config.input_side <= 0:
            return None
        space = self.space(config)
        if space.kind != "conv":
            return [()] * space.num_sites
        return [((max(1, config.input_side >> i),) * 2,) for i in range(space.num_sites)]

    def run_child(self, task_config: SyntheticConfig, regularizer: Any, budget: Budget,
                  device: str, seed: int) -> ChildResult:
        """Sleep ``config.sleep`` seconds (capped by ``budget.seconds``), then score the
        patterns. ``regularizer`` is a PatternSet or a list of patterns (one per site)."""
        from adsearch.controller.synthetic import make_reward

        started = time.time()
        space = self.space(task_config)
        if isinstance(regularizer, dict):  # a baseline spec (adsearch verify's tuned baselines)
            return self._run_baseline(task_config, regularizer, budget, seed, started)
        patterns = list(getattr(regularizer, "patterns", regularizer) or [])
        tokens = space.encode(patterns)
        dicts = [p.to_dict() for p in patterns]
        budget = budget or Budget()
        full = float(task_config.epochs)
        epochs = float(budget.epochs) if budget.epochs is not None else full
        pause = task_config.sleep * epochs / full
        if budget.seconds is not None:
            pause = min(pause, budget.seconds)
        u = _unit(dicts, f"fail-{task_config.target_seed}")
        fn = make_reward(task_config.reward, space, task_config.target_seed, task_config.noise_sd)
        clean = fn(tokens, noise=False)
        points = [float(e) for e in range(1, int(epochs) + 1)]
        if not points or points[-1] < epochs - 1e-9:
            points.append(epochs)
        curve: list[dict[str, float]] = []
        metrics = {"clean_reward": clean, "device_gpu": float(device != "cpu")}
        reward = float("nan")
        for e in points:
            if pause > 0:
                time.sleep(pause * (e - (curve[-1]["epoch"] if curve else 0.0)) / epochs)
            if task_config.bug:
                raise getattr(builtins, task_config.bug)(f"synthetic bug: {task_config.bug} (the "
                                                         "task config's bug=...)")
            if u < task_config.bad_fraction:
                raise BadPatternError("synthetic bad pattern: this pattern is in bad_fraction")
            if u < task_config.bad_fraction + task_config.nan_fraction:
                break  # a NaN reward: nothing to report
            if abs(e - full) < 1e-9:
                value = fn(tokens, rng=random.Random(seed))  # the reward as before curves
            else:
                value = (_early(task_config, clean, e)
                         + random.Random(f"{seed}-{e}").gauss(0.0, task_config.noise_sd))
            curve.append({"step": e, "epoch": e, "val_metric": value})
            reward = from_metric("reward", value)  # identity: the value is the reward
            if budget.prune_now(e, value, last=e >= epochs - 1e-9):
                metrics.update(budget.truncation())
                break
        metrics["test_reward"] = test_reward(clean, dicts, seed, task_config.noise_sd)
        return ChildResult(reward=reward, metrics=metrics, curve=curve, seconds=time.time() - started)

    def _run_baseline(self, c: SyntheticConfig, spec: dict[str, Any], budget: Budget, seed: int,
                      started: float) -> ChildResult:
        """Score a baseline spec by :func:`baseline_reward` (plus the seed's noise)."""
        if c.bug:  # every child raises it, baselines too
            raise getattr(builtins, c.bug)(f"synthetic bug: {c.bug} (the task config's bug=...)")
        pause = c.sleep if budget.seconds is None else min(c.sleep, budget.seconds)
        if pause > 0:
            time.sleep(pause)
        clean = baseline_reward(spec)
        reward = clean + random.Random(seed).gauss(0.0, c.noise_sd)
        metrics = {"clean_reward": clean, "test_reward": test_reward(clean, spec, seed, c.noise_sd)}
        full = float(c.epochs)  # one point per epoch, shaped as a pattern's (calibrate reads it)
        epochs = float(budget.epochs) if budget.epochs is not None else full
        points = [float(e) for e in range(1, int(epochs) + 1) if e < epochs - 1e-9] + [epochs]
        curve = [{"step": e, "epoch": e, "val_metric": reward if abs(e - epochs) < 1e-9 else
                  _early(c, clean, e) + random.Random(f"{seed}-{e}").gauss(0.0, c.noise_sd)}
                 for e in points]
        return ChildResult(reward=reward, metrics=metrics, curve=curve, seconds=time.time() - started)


CURVES = ("agree", "reverse")  # SyntheticConfig.curve


def _early(c: SyntheticConfig, clean: float, epoch: float) -> float:
    """The noise-free curve value at ``epoch`` before the full budget ``E = c.epochs``:
    ``clean * (1 - 2**(-4 e / E)) / (1 - 2**-4)`` (curve "agree": ranks as ``clean``); for
    curve "reverse" ``clean`` is first replaced by ``w * clean + (1 - w) * (1 - clean)``
    with ``w = e / E``, which ranks backwards before ``E / 2`` and forwards after it."""
    full = float(c.epochs)
    frac = (1 - 2 ** (-4 * epoch / full)) / (1 - 2**-4)
    if c.curve == "reverse":
        w = min(1.0, epoch / full)
        return frac * (w * clean + (1 - w) * (1 - clean))
    return clean * frac


def baseline_reward(spec: dict[str, Any]) -> float:
    """The noise-free synthetic reward of a baseline spec: 0.4 for none; else peaks at 0.5 for
    ``drop_prob`` 0.1 (and ``block_size`` 5 for DropBlock), a known optimum for tests of the
    tuned-baseline grid. Raises PatternError on a spec without a known kind."""
    kind = spec.get("kind")
    if kind == "none":
        return 0.4
    if kind not in ("dropout", "spatial", "dropblock", "variational"):
        raise PatternError(f"synthetic task: unknown baseline kind {kind!r}")
    p = float(spec.get("drop_prob", 0.1))
    value = 0.5 - abs(p - 0.1)
    if kind == "dropblock":
        value -= 0.01 * abs(int(spec.get("block_size", 5)) - 5)
    return value


def test_reward(clean: float, regularizer: Any, seed: int, noise_sd: float) -> float:
    """A held-out "test" score: ``clean`` plus noise shared by every regularizer of one seed
    (as a real network's init and data order are) and a smaller part of its own."""
    own = json.dumps([seed, regularizer], sort_keys=True)
    return (clean + noise_sd * random.Random(f"test-{seed}").gauss(0.0, 1.0)
            + 0.5 * noise_sd * random.Random(own).gauss(0.0, 1.0))
