"""Translation children: an encoder-decoder Transformer on Multi30k-style parallel text.

Protocol (default): train on ``train``, select on ``val``, report BLEU on
``test_2016_flickr`` (Multi30k En-Fr; the paper transfers its PTB pattern to WMT'14 En-Fr).
Training: AdamW, warm-up then cosine decay, label-smoothed cross-entropy, gradient
clipping, length-bucketed batches. Decoding: greedy, at most ``max_len`` tokens.

Reward (**ours**): validation BLEU as a fraction, ``val_bleu / 100`` in [0, 1] (tokenized,
lowercased sacrebleu BLEU; see :mod:`adsearch.tasks.translation_data`). ``metrics``:
``val_bleu`` and ``test_bleu`` (0-100), ``val_loss``, ``train_loss``, ``steps``, ``epochs``,
``params``, ``diverged``. A diverged child returns reward 0.0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from adsearch import reward
from adsearch.patterns import SearchSpace
from adsearch.tasks import common
from adsearch.tasks.result import Budget, ChildResult
from adsearch.tasks.translation_data import (
    BOS,
    EOS,
    PAD,
    ParallelData,
    Split,
    length_batches,
    load_parallel,
    pad_batch,
)


@dataclass(frozen=True)
class TranslationConfig:
    task: str = "translation"  # registry name
    data: str | None = None  # folder with <split>.<lang>[.gz] files (e.g. multi30k-en-fr)
    src_lang: str = "en"  # source language suffix
    tgt_lang: str = "fr"  # target language suffix
    train_split: str = "train"  # training split name (or path prefix)
    val_split: str = "val"  # validation split (the reward)
    test_split: str | None = "test_2016_flickr"  # test split reported in metrics; None = none
    min_freq: int = 2  # minimum training count of a vocabulary word
    max_len: int = 48  # longest sequence in tokens incl. <bos>/<eos>; longer ones are cut
    train_limit: int | None = None  # use only the first N training pairs; None = all
    eval_limit: int | None = None  # use only the first N val/test pairs; None = all
    n_layers: int = 2  # encoder layers and decoder layers, each
    n_heads: int = 4  # attention heads
    d_model: int = 128  # residual-stream width
    d_ff: int = 512  # FFN hidden width
    batch_size: int = 64  # sentence pairs per step
    eval_batch_size: int = 200  # sentences per decoding batch
    epochs: float = 2.0  # default passes over the training pairs (a Budget overrides)
    optimizer: str = "adamw"  # adamw (betas 0.9/0.98, no decay on biases/norms) or sgd
    schedule: str = "cosine"  # after warm-up: cosine (down to 5% of lr) or constant
    lr: float = 1e-3  # peak AdamW learning rate
    warmup_steps: int = 200  # linear warm-up, steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    grad_clip: float = 1.0  # max global gradient norm

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CACHE: dict[tuple[Any, ...], ParallelData] = {}


def _data(c: TranslationConfig) -> ParallelData:
    key = (c.data, c.src_lang, c.tgt_lang, c.train_split, c.val_split, c.test_split, c.min_freq, c.max_len, c.train_limit, c.eval_limit)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_parallel(c.data, c.src_lang, c.tgt_lang, c.train_split, c.val_split, c.test_split, c.min_freq, c.max_len, c.train_limit, c.eval_limit)
    return _CACHE[key]


def _teacher_batch(split: Split, idx: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = pad_batch([split.src[i] for i in idx]).to(device)
    tgt = pad_batch([split.tgt[i] for i in idx]).to(device)
    return src, tgt[:, :-1], tgt[:, 1:]


@torch.no_grad()
def evaluate(model: Any, split: Split, data: ParallelData, c: TranslationConfig, device: torch.device) -> tuple[float, float, list[str]]:
    """(corpus BLEU 0-100, teacher-forced loss in nats/token, hypotheses) in eval mode."""
    import sacrebleu

    model.eval()
    hyps: list[str] = []
    loss_sum, count = 0.0, 0
    for i in range(0, len(split.src), c.eval_batch_size):
        idx = list(range(i, min(len(split.src), i + c.eval_batch_size)))
        src, tin, tout = _teacher_batch(split, idx, device)
        with common.autocast(device):
            logits, _ = model(src, tin)
            gen = model.greedy(src, BOS, EOS, c.max_len)
        n = int((tout != PAD).sum())
        loss_sum += F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD, reduction="sum").item()
        count += n
        hyps.extend(" ".join(data.tgt_vocab.decode(row)) for row in gen.tolist())
    model.train()
    bleu = sacrebleu.corpus_bleu(hyps, [split.refs], tokenize="none", force=True).score
    return float(bleu), loss_sum / max(1, count), hyps


class TranslationTask:
    """Parallel-text translation with a seq2seq Transformer (space seq-2, as the LM)."""

    name = "translation"

    def get_default_config(self) -> TranslationConfig:
        return TranslationConfig()

    def config_from_dict(self, data: dict[str, Any]) -> TranslationConfig:
        return common.config_from_dict(TranslationConfig, {"task": self.name, **data}, self.name)

    def space(self, config: TranslationConfig) -> SearchSpace:
        return SearchSpace("seq", 2)

    def load(self, config: TranslationConfig) -> ParallelData:
        """Read (and cache) the parallel splits; DataError/ConfigError on bad input."""
        return _data(config)

    def run_child(self, task_config: Any, regularizer: Any, budget: Budget | None, device: str = "cpu", seed: int = 0) -> ChildResult:
        """Train one translation child; reward = validation BLEU / 100."""
        from adsearch.models import Seq2SeqConfig, Seq2SeqTransformer
        from adsearch.ops import set_progress

        c = task_config if isinstance(task_config, TranslationConfig) else self.config_from_dict(task_config)
        dev = common.resolve_device(device)
        clock = common.Clock()
        data = _data(c)
        gen = common.seeded(seed)
        mc = Seq2SeqConfig(src_vocab=len(data.src_vocab), tgt_vocab=len(data.tgt_vocab), max_len=c.max_len, n_layers=c.n_layers, n_heads=c.n_heads, d_model=c.d_model, d_ff=c.d_ff, pad_id=PAD)
        model = Seq2SeqTransformer(mc, regularizer).to(dev)
        opt = common.make_optimizer(c.optimizer, model, c.lr, c.weight_decay)
        lengths = [len(s) + len(t) for s, t in zip(data.train.src, data.train.tgt, strict=True)]
        per_epoch = math.ceil(len(lengths) / c.batch_size)
        total = common.total_steps(budget, per_epoch, c.epochs)
        seconds = budget.seconds if budget else None
        metrics: dict[str, float] = {"params": float(sum(p.numel() for p in model.parameters())), "diverged": 0.0}
        curve: list[dict[str, float]] = []
        step, losses = 0, []
        at_rungs = common.rung_steps(budget, per_epoch)  # early-stopping checks (ASHA)
        stopped = False
        model.train()
        while step < total and not common.out_of_time(clock, seconds) and not stopped:
            for idx in length_batches(lengths, c.batch_size, gen):
                if step >= total or common.out_of_time(clock, seconds):
                    break
                src, tin, tout = _teacher_batch(data.train, idx, dev)
                for g in opt.param_groups:
                    g["lr"] = common.lr_at(c.schedule, step, total, c.lr, c.warmup_steps, final_frac=0.05)
                set_progress(model, common.progress(step, total, clock, seconds))
                with common.autocast(dev):
                    logits, _ = model(src, tin)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD, label_smoothing=c.label_smoothing)
                lv = loss.item()
                if not math.isfinite(lv):
                    metrics.update(common.diverged_metrics(step))
                    return ChildResult(0.0, metrics, curve, clock.wall())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                opt.step()
                step += 1
                losses.append(lv)
                if step in at_rungs and step < total and budget is not None:  # a rung: BLEU now
                    with clock.pause():
                        bleu, vloss, _ = evaluate(model, data.val, data, c, dev)
                    curve.append({"step": float(step), "epoch": step / per_epoch, "train_loss": sum(losses) / max(1, len(losses)), "val_loss": vloss, "val_metric": bleu})
                    losses = []
                    if budget.prune_now(step / per_epoch, reward.from_metric("val_bleu", bleu), last=False):
                        metrics.update(budget.truncation())
                        stopped = True
                        break
            if stopped:  # stopped at a rung: its BLEU is the result (no test decoding)
                metrics.update(val_bleu=curve[-1]["val_metric"], val_loss=curve[-1]["val_loss"], train_loss=curve[-1]["train_loss"], steps=float(step), epochs=step / per_epoch)
                return ChildResult(reward.from_metric("val_bleu", curve[-1]["val_metric"]), metrics, curve, clock.wall())
            if step < total and not common.out_of_time(clock, seconds):  # end of an epoch: a cheap point
                curve.append({"step": float(step), "epoch": step / per_epoch, "train_loss": sum(losses) / max(1, len(losses))})
                losses = []
        with clock.pause():
            bleu, vloss, _ = evaluate(model, data.val, data, c, dev)
        curve.append({"step": float(step), "epoch": step / per_epoch, "train_loss": sum(losses) / max(1, len(losses)), "val_loss": vloss, "val_metric": bleu})
        if budget is not None:  # the top rung's value, for status
            budget.prune_now(step / per_epoch, reward.from_metric("val_bleu", bleu), last=True)
        metrics.update(val_bleu=bleu, val_loss=vloss, train_loss=curve[-1]["train_loss"], steps=float(step), epochs=step / per_epoch)
        if data.test is not None:
            metrics["test_bleu"], metrics["test_loss"], _ = evaluate(model, data.test, data, c, dev)
        return ChildResult(reward.from_metric("val_bleu", bleu), metrics, curve, clock.wall())
