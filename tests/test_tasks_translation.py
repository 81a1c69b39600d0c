"""Translation data and children on real Multi30k En-Fr (../shared/data/multi30k-en-fr)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from adsearch.errors import ConfigError, DataError
from adsearch.patterns import SeqPattern
from adsearch.tasks import Budget, get_task
from adsearch.tasks.translation import _data
from adsearch.tasks.translation_data import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    load_parallel,
    pad_batch,
    read_pairs,
    tokenize,
)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_tokenize() -> None:
    assert tokenize("Deux jeunes hommes, près de l'arbre.") == ["deux", "jeunes", "hommes", ",", "près", "de", "l", "'", "arbre", "."]


def test_load_multi30k_slices(shared_data: Path) -> None:
    d = load_parallel(str(shared_data / "multi30k-en-fr"), "en", "fr", "train", "val", "test_2016_flickr", 2, 40, train_limit=2000, eval_limit=50)
    assert len(d.train.src) == len(d.train.tgt) == 2000
    assert len(d.val.src) == 50 and d.test is not None and len(d.test.refs) == 50
    assert d.src_vocab.words[:4] == SPECIALS and 500 < len(d.src_vocab) < 2000
    assert all(s[0] == BOS and s[-1] == EOS and len(s) <= 40 for s in d.train.src + d.train.tgt)
    src, tgt = read_pairs(shared_data / "multi30k-en-fr", "val", "en", "fr")
    assert len(src) == len(tgt) == 1014
    assert d.val.refs[0] == " ".join(tokenize(tgt[0]))
    b = pad_batch([[2, 5, 3], [2, 3]])
    assert b.tolist() == [[2, 5, 3], [2, 3, PAD]]


def test_short_translation_training_learns(data_slices: Path) -> None:
    task = get_task("translation")  # the shipped slice: the first 400 / 60 / 60 real pairs
    cfg = task.config_from_dict({"data": str(data_slices / "multi30k-en-fr"), "min_freq": 1, "eval_limit": 60, "d_model": 64, "d_ff": 128, "n_heads": 2, "n_layers": 1, "batch_size": 32, "lr": 2e-3, "warmup_steps": 10})
    pats = [SeqPattern(size=1, stride=4, mask="token", sites=("emb",)), SeqPattern(size=2, stride=4, mask="interleave", groups=4, sites=("ffn_hidden",))]
    res = task.run_child(cfg, pats, Budget(steps=80), "cpu", 0)
    m = res.metrics
    assert m["steps"] == 80 and m["diverged"] == 0.0
    # a uniform guess costs ln(V) nats per token; 80 steps must do much better
    v = len(_data(cfg).tgt_vocab)
    assert v > 1000 and m["val_loss"] < 0.75 * math.log(v)
    assert 0.0 <= m["val_bleu"] <= 100.0 and 0.0 <= m["test_bleu"] <= 100.0
    assert res.reward == pytest.approx(m["val_bleu"] / 100.0)


def test_bad_parallel_inputs_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'none'} does not exist.*line-aligned"):
        load_parallel(str(tmp_path / "none"), "en", "fr", "train", "val", None, 1, 40)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.en").write_text("a man .\ntwo dogs .\n")
    (tmp_path / "d" / "train.fr").write_text("un homme .\n")
    with pytest.raises(DataError, match="has 2 lines but .*train.fr has 1"):
        load_parallel(str(tmp_path / "d"), "en", "fr", "train", "val", None, 1, 40)
    (tmp_path / "d" / "train.fr").write_text("un homme .\ndeux chiens .\n")
    with pytest.raises(DataError, match="no file .*val.en or .*val.en.gz"):
        load_parallel(str(tmp_path / "d"), "en", "fr", "train", "val", None, 1, 40)
    (tmp_path / "d" / "val.en.gz").write_bytes(b"not gzip at all")
    (tmp_path / "d" / "val.fr.gz").write_bytes(gzip.compress(b"un homme .\n"))
    with pytest.raises(DataError, match="val.en.gz.*gzip-compressed text"):
        load_parallel(str(tmp_path / "d"), "en", "fr", "train", "val", None, 1, 40)
    (tmp_path / "d" / "val.en.gz").write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="val.en.gz is empty"):
        load_parallel(str(tmp_path / "d"), "en", "fr", "train", "val", None, 1, 40)
    with pytest.raises(ConfigError, match="needs a data folder"):
        load_parallel(None, "en", "fr", "train", "val", None, 1, 40)


def test_keep_best_validates_every_epoch_and_reports_the_best_pass(data_slices: Path) -> None:
    """Early stopping as a tuned length on translation: every epoch end is validated, and
    with a constant learning rate too high to hold, the best BLEU comes early; the reward,
    ``val_*`` and the test metrics are those of its weights: a run stopped at that epoch (same
    batches, same constant rate) has the same validation BLEU and test loss."""
    task = get_task("translation")
    base = {"data": str(data_slices / "multi30k-en-fr"), "min_freq": 1, "eval_limit": 60,
            "d_model": 64, "d_ff": 128, "n_heads": 2, "n_layers": 1, "batch_size": 32,
            "lr": 1e-2, "schedule": "constant", "warmup_steps": 10}
    res = task.run_child({**base, "keep_best": True}, None, Budget(epochs=6), "cpu", 0)
    assert [p["epoch"] for p in res.curve] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert all("val_metric" in p for p in res.curve)
    best = max(res.curve, key=lambda p: p["val_metric"])  # the first of equals, as keep_best
    assert best is not res.curve[-1]  # this setting peaks at epoch 1 of 6 (BLEU 0.16 vs 0.12)
    assert res.metrics["best_epoch"] == best["epoch"] and res.metrics["val_bleu"] == best["val_metric"]
    assert res.metrics["val_loss"] == best["val_loss"]
    assert res.reward == pytest.approx(best["val_metric"] / 100.0)
    plain = task.run_child(base, None, Budget(epochs=6), "cpu", 0)
    # the same run: its epoch ends are points without validation, with the same training loss
    assert [q["train_loss"] for q in plain.curve] == pytest.approx([q["train_loss"] for q in res.curve])
    assert "val_metric" not in plain.curve[0] and "best_epoch" not in plain.metrics
    assert plain.metrics["val_bleu"] == res.curve[-1]["val_metric"] and res.reward > plain.reward
    short = task.run_child(base, None, Budget(epochs=best["epoch"]), "cpu", 0)
    assert short.metrics["val_bleu"] == best["val_metric"]
    assert short.metrics["test_loss"] == pytest.approx(res.metrics["test_loss"], rel=1e-6)
    assert res.metrics["test_loss"] != pytest.approx(plain.metrics["test_loss"], rel=1e-3)
