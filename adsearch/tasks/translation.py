"""Translation children: an encoder-decoder Transformer on Multi30k-style parallel text.

Protocol (default): train on ``train``, select on ``val``, report BLEU on
``test_2016_flickr`` (Multi30k En-Fr; the paper transfers its PTB pattern to WMT'14 En-Fr).
Training: AdamW, warm-up then cosine decay, label-smoothed cross-entropy, gradient
clipping, length-bucketed batches. Decoding: greedy, at most ``max_len`` tokens.

Reward (**ours**): validation BLEU as a fraction, ``val_bleu / 100`` in [0, 1] (tokenized,
lowercased sacrebleu BLEU; see :mod:`adsearch.tasks.translation_data`). ``metrics``:
``val_bleu`` and ``test_bleu`` (0-100), ``val_loss``, ``train_loss``, ``steps``, ``epochs``,
``params``, ``diverged``. A diverged child returns reward 0.0.

Curve points (:mod:`adsearch.tasks.childloop`): a validation (BLEU, ``val_metric``) at each
early-stopping rung and at the end; at the end of every other epoch a point with the
training loss only.

Training length as a tuned setting (``keep_best``, **ours**, as the image task's): every epoch
end is validated too, and the weights of the validation pass with the best BLEU are kept;
``val_*``, the reward and ``test_*`` then come from those weights and ``metrics["best_epoch"]``
says which pass it was. The schedule still runs over the whole budget; selection is on
validation only.
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
from adsearch.tasks.childloop import ChildRun
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
    # keep_best (a training length tuned on validation; not early stopping, which is rungs):
    # validate every epoch, keep the weights of the pass with the best BLEU and report (and
    # test) those, not the last ones (module doc)
    keep_best: bool = False

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
    test_data_key = "test_split"  # --test-data PREFIX (<prefix>.<lang>[.gz], data_overrides)

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
        run = ChildRun(clock, budget, per_epoch, c.epochs, model, keep_best=c.keep_best)

        def measure() -> tuple[dict[str, float], float]:
            bleu, vloss, _ = evaluate(model, data.val, data, c, dev)
            point = {"step": float(run.step), "epoch": run.epoch, "train_loss": run.mean_loss(),
                     "val_loss": vloss, "val_metric": bleu}
            return point, reward.from_metric("val_bleu", bleu)

        model.train()
        while run.going():
            for idx in length_batches(lengths, c.batch_size, gen):
                if not run.going():
                    break
                src, tin, tout = _teacher_batch(data.train, idx, dev)
                for g in opt.param_groups:
                    g["lr"] = common.lr_at(c.schedule, run.step, run.total, c.lr, c.warmup_steps,
                                           final_frac=0.05)
                set_progress(model, run.progress())
                with common.autocast(dev):
                    logits, _ = model(src, tin)
                loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                       tout.reshape(-1), ignore_index=PAD,
                                       label_smoothing=c.label_smoothing)
                lv = loss.item()
                if not math.isfinite(lv):
                    return run.diverged()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                opt.step()
                run.took_step(lv)
                if run.at_rung_step() and run.step < run.total and budget is not None:
                    if run.validate(measure, last=False):  # a rung: BLEU now
                        break
            if not run.stopped and run.going():  # end of an epoch
                if not c.keep_best:  # a cheap point: the training loss only
                    run.curve.append({"step": float(run.step), "epoch": run.epoch,
                                      "train_loss": run.mean_loss()})
                elif not run.curve or run.curve[-1]["step"] != run.step:
                    run.validate(measure, last=False)  # keep_best: a length to choose from
            if run.stopped:  # stopped at a rung: its BLEU is the result (no test decoding)
                chosen = run.finish()
                run.metrics.update(val_bleu=chosen["val_metric"], val_loss=chosen["val_loss"],
                                   train_loss=run.curve[-1]["train_loss"])
                return run.result(reward.from_metric("val_bleu", chosen["val_metric"]))
        run.validate(measure, last=True)  # records the top rung, for status
        chosen = run.finish()  # the last point, or the best one with keep_best (weights restored)
        run.metrics.update(val_bleu=chosen["val_metric"], val_loss=chosen["val_loss"],
                           train_loss=run.curve[-1]["train_loss"])
        if data.test is not None:
            run.metrics["test_bleu"], run.metrics["test_loss"], _ = evaluate(
                model, data.test, data, c, dev)
        return run.result(reward.from_metric("val_bleu", chosen["val_metric"]))
