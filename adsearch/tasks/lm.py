"""Language-modelling children: a Pre-LN Transformer LM on WikiText-2 / PTB.

Training: AdamW, linear warm-up then cosine decay, gradient clipping; each epoch visits the
non-overlapping BPTT windows of the batchified training stream in a random order (no
Transformer-XL memory: each window starts from an empty context).

Reward (**ours**, as ENAS): ``80 / val_ppl``, a decreasing function of the validation
perplexity (1.0 at perplexity 80). ``metrics``: ``val_ppl``, ``val_loss`` (nats/token),
``train_loss``, ``steps``, ``epochs``, ``params``, ``vocab_size``, ``diverged`` and, when
the config has ``test`` on (the corpus always has a test split), ``test_ppl``/``test_loss``.
A diverged child returns reward 0.0 (see :mod:`adsearch.tasks.common`).

Curve points (:mod:`adsearch.tasks.childloop`): ``curve_points`` evenly spaced intermediate
validations on the first ``curve_eval_tokens`` validation tokens, one at each early-stopping
rung, and the final one on ``max_eval_tokens``; ``val_metric`` is the perplexity.

Training length as a tuned setting (``keep_best``, **ours**, as the image task's): keep the
weights of the validation point with the best reward (the lowest perplexity); ``val_*``, the
reward and ``test_*`` then come from those weights and ``metrics["best_epoch"]`` says where
it was. Every point is then measured on the final evaluation's tokens (``max_eval_tokens``),
so that they compare; set ``curve_points`` for how many lengths are tried. The schedule still
runs over the whole budget; selection is on validation only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from adsearch import reward
from adsearch.errors import ConfigError
from adsearch.patterns import SearchSpace
from adsearch.tasks import common
from adsearch.tasks.childloop import ChildRun, Measure
from adsearch.tasks.lm_data import (
    Corpus,
    batchify,
    encode,
    load_corpus,
    read_lines,
    tokenize,
    window,
    windows,
)
from adsearch.tasks.result import Budget, ChildResult

REWARD_CONSTANT = reward.rule("val_ppl").scale  # reward = 80 / val_ppl (ENAS; adsearch.reward)


@dataclass(frozen=True)
class LMTaskConfig:
    task: str = "wikitext2"  # registry name: wikitext2 or ptb
    data: str | None = None  # corpus folder (train/valid/test.txt, or valid+test for mini)
    protocol: str = "auto"  # auto, standard or mini (see adsearch.tasks.lm_data)
    test: bool = True  # also report test perplexity at the end
    test_data: str | None = None  # token file replacing the protocol's test split; None = keep
    max_vocab: int | None = None  # keep the N most frequent training words, rest <unk>; None = all
    train_tokens: int | None = None  # train on the first N tokens of the training stream; None = all
    n_layers: int = 2  # Transformer layers
    n_heads: int = 4  # attention heads
    d_model: int = 128  # residual-stream width
    d_ff: int = 512  # FFN hidden width
    bptt: int = 64  # training/evaluation window, tokens
    batch_size: int = 16  # training rows per step (tokens per step = batch_size * bptt)
    eval_batch_size: int = 16  # evaluation rows
    epochs: float = 0.5  # default passes over the training stream (a Budget overrides)
    optimizer: str = "adamw"  # adamw (betas 0.9/0.98, no decay on biases/norms) or sgd
    schedule: str = "cosine"  # after warm-up: cosine (down to 10% of lr) or constant
    lr: float = 2e-3  # peak AdamW learning rate
    warmup_steps: int = 50  # linear warm-up, steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max global gradient norm
    max_eval_tokens: int | None = None  # cap on validation tokens of the final evaluation; None = all
    curve_eval_tokens: int = 16384  # validation tokens of each intermediate curve point
    curve_points: int = 3  # intermediate validation points per child (plus the final one)
    # keep_best (a training length tuned on validation; not early stopping, which is rungs):
    # keep the weights of the validation point with the lowest perplexity and report (and
    # test) those, not the last ones (module doc)
    keep_best: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CACHE: dict[tuple[Any, ...], Corpus] = {}


def _corpus(c: LMTaskConfig) -> Corpus:
    key = (c.data, c.protocol, c.test_data, c.max_vocab, c.train_tokens)
    if key not in _CACHE:
        _CACHE.clear()
        corpus = load_corpus(c.data, c.protocol, c.max_vocab)
        if c.train_tokens is not None:
            if c.train_tokens < 2 * c.bptt:
                raise ConfigError(f"train_tokens={c.train_tokens} is shorter than two windows of bptt={c.bptt}; raise it or lower bptt")
            corpus = replace(corpus, train=corpus.train[: c.train_tokens], source=f"{corpus.source}, first {c.train_tokens} training tokens")
        if c.test_data is not None:
            index = {w: i for i, w in enumerate(corpus.vocab)}
            test = encode(tokenize(read_lines(Path(c.test_data))), index)
            corpus = replace(corpus, test=test, source=f"{corpus.source}, test={c.test_data}")
        _CACHE[key] = corpus
    return _CACHE[key]


@torch.no_grad()
def evaluate(model: torch.nn.Module, ids: torch.Tensor, c: LMTaskConfig, device: torch.device, max_tokens: int | None = None) -> float:
    """Mean next-token cross-entropy (nats) over the stream ``ids`` in eval mode."""
    model.eval()
    rows = batchify(ids, c.eval_batch_size)
    total, count = 0.0, 0
    for s in windows(rows, c.bptt):
        x, y = window(rows, s, c.bptt)
        with common.autocast(device):
            _, loss = model(x.to(device), y.to(device))
        total += float(loss) * y.numel()
        count += y.numel()
        if max_tokens is not None and count >= max_tokens:
            break
    model.train()
    return total / count


class _LMTask:
    name = "wikitext2"
    test_data_key = "test_data"  # --test-data FILE sets it (registry.data_overrides)

    def get_default_config(self) -> LMTaskConfig:
        return LMTaskConfig(task=self.name)

    def config_from_dict(self, data: dict[str, Any]) -> LMTaskConfig:
        return common.config_from_dict(LMTaskConfig, {**self.get_default_config().to_dict(), **data}, self.name)

    def space(self, config: LMTaskConfig) -> SearchSpace:
        return SearchSpace("seq", 2)

    def load(self, config: LMTaskConfig) -> Corpus:
        """Read (and cache) the corpus; DataError/ConfigError on a bad path or layout."""
        return _corpus(config)

    def run_child(self, task_config: Any, regularizer: Any, budget: Budget | None, device: str = "cpu", seed: int = 0) -> ChildResult:
        """Train one LM child with ``regularizer``; reward = 80 / validation perplexity."""
        from adsearch.models import LMConfig, TransformerLM
        from adsearch.ops import set_progress

        c = task_config if isinstance(task_config, LMTaskConfig) else self.config_from_dict(task_config)
        dev = common.resolve_device(device)
        clock = common.Clock()
        corpus = _corpus(c)
        gen = common.seeded(seed)
        mc = LMConfig(vocab_size=corpus.vocab_size, block_size=c.bptt, n_layers=c.n_layers, n_heads=c.n_heads, d_model=c.d_model, d_ff=c.d_ff)
        model = TransformerLM(mc, regularizer).to(dev)
        opt = common.make_optimizer(c.optimizer, model, c.lr, c.weight_decay)
        rows = batchify(corpus.train, c.batch_size)
        starts = windows(rows, c.bptt)
        per_epoch = len(starts)
        run = ChildRun(clock, budget, per_epoch, c.epochs, model, keep_best=c.keep_best)
        run.metrics["vocab_size"] = float(corpus.vocab_size)
        total = run.total
        eval_every = max(1, total // (c.curve_points + 1)) if c.curve_points > 0 else total + 1
        # keep_best compares points, so each one is measured on the final evaluation's tokens
        curve_tokens = c.max_eval_tokens if c.keep_best else c.curve_eval_tokens

        def measure(max_tokens: int | None) -> Measure:
            def point() -> tuple[dict[str, float], float]:
                vl = evaluate(model, corpus.valid, c, dev, max_tokens)
                p = _point(run.step, per_epoch, run.mean_loss(math.nan), vl)
                return p, reward.from_metric("val_ppl", p["val_metric"])  # higher is better
            return point

        model.train()
        while run.going():
            order = torch.randperm(per_epoch, generator=gen).tolist()
            for w in order:
                if not run.going():
                    break
                x, y = window(rows, starts[w], c.bptt)
                for g in opt.param_groups:
                    g["lr"] = common.lr_at(c.schedule, run.step, total, c.lr, c.warmup_steps,
                                           final_frac=0.1)
                set_progress(model, run.progress())
                with common.autocast(dev):
                    _, loss = model(x.to(dev), y.to(dev))
                lv = loss.item()
                if not math.isfinite(lv):
                    return run.diverged()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                opt.step()
                run.took_step(lv)
                due = run.step % eval_every == 0 or run.at_rung_step()  # a rung: ASHA's check
                if due and run.step < total and run.validate(measure(curve_tokens), last=False):
                    break
            if run.stopped:
                break
        if run.stopped:  # stopped at a rung: its value is the result (no full evaluation, no test)
            chosen = run.finish()
            run.metrics.update(val_loss=chosen["val_loss"], val_ppl=chosen["val_metric"],
                               train_loss=run.curve[-1]["train_loss"])
            return run.result(reward.from_metric("val_ppl", chosen["val_metric"]))
        run.validate(measure(c.max_eval_tokens), last=True)  # records the top rung, for status
        if not math.isfinite(run.curve[-1]["val_loss"]):
            return run.diverged()
        chosen = run.finish()  # the last point, or the best one with keep_best (weights restored)
        val_ppl = chosen["val_metric"]
        run.metrics.update(val_loss=chosen["val_loss"], val_ppl=val_ppl,
                           train_loss=run.curve[-1]["train_loss"])
        if c.test:
            tl = evaluate(model, corpus.test, c, dev)
            run.metrics.update(test_loss=tl, test_ppl=math.exp(min(tl, 50.0)))
        return run.result(reward.from_metric("val_ppl", val_ppl))


def _point(step: int, per_epoch: int, train_loss: float, val_loss: float) -> dict[str, float]:
    """One LM curve point; ``val_metric`` is the validation perplexity (lower is better)."""
    return {"step": float(step), "epoch": step / per_epoch, "train_loss": train_loss,
            "val_loss": val_loss, "val_metric": math.exp(min(val_loss, 50.0))}


class WikiText2Task(_LMTask):
    """WikiText-2 (standard splits, or the "mini" protocol when train.txt is absent)."""

    name = "wikitext2"


class PTBTask(_LMTask):
    """Penn Treebank (Mikolov's preprocessed ptb.{train,valid,test}.txt)."""

    name = "ptb"

    def get_default_config(self) -> LMTaskConfig:
        return replace(LMTaskConfig(), task="ptb", protocol="standard")
