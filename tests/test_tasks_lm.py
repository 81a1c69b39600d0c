"""Language-modelling data and children on real WikiText-2 (../shared/data/wikitext-2)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from adsearch.errors import ConfigError, DataError
from adsearch.patterns import SeqPattern
from adsearch.tasks import Budget, get_task
from adsearch.tasks.lm_data import EOS, UNK, batchify, load_corpus, window, windows


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_mini_protocol_splits(shared_data: Path) -> None:
    wt = shared_data / "wikitext-2"
    c = load_corpus(wt)  # auto: no train.txt -> mini
    assert "mini" in c.source
    test_lines, valid_lines = _lines(wt / "test.txt"), _lines(wt / "valid.txt")
    half = len(valid_lines) // 2
    n_tok = lambda ls: sum(len(s.split()) + 1 for s in ls)  # noqa: E731  (+1 = <eos>)
    assert c.train.numel() == n_tok(test_lines) == 245569
    assert c.valid.numel() == n_tok(valid_lines[:half]) and c.test.numel() == n_tok(valid_lines[half:])
    assert c.vocab[c.train[-1]] == EOS and UNK in c.vocab and EOS in c.vocab
    assert c.vocab_size == len(set(" ".join(test_lines).split()) | {EOS, UNK})
    again = load_corpus(wt, "mini")
    assert torch.equal(again.train, c.train) and again.vocab == c.vocab
    rows = batchify(c.valid, 10)
    assert rows.shape == (10, c.valid.numel() // 10)
    x, y = window(rows, windows(rows, 64)[1], 64)
    assert x.shape == (10, 64) and torch.equal(x[:, 1:], y[:, :-1])


def _small_corpus(data_slices: Path, dst: Path) -> Path:
    """A standard-layout corpus cut from real WikiText-2 lines (the shipped 620-line slice)."""
    lines = gzip.decompress((data_slices / "wikitext-2-head.txt.gz").read_bytes()).decode("utf-8").splitlines()
    dst.mkdir()
    (dst / "train.txt").write_text("\n".join(lines[:500]) + "\n", encoding="utf-8")
    (dst / "valid.txt").write_text("\n".join(lines[500:560]) + "\n", encoding="utf-8")
    (dst / "test.txt").write_text("\n".join(lines[560:620]) + "\n", encoding="utf-8")
    return dst


def test_standard_layout_maps_unseen_words_to_unk(data_slices: Path, tmp_path: Path) -> None:
    c = load_corpus(_small_corpus(data_slices, tmp_path / "wt"))
    assert "standard" in c.source
    unk = c.vocab.index(UNK)
    valid_words = " ".join(_lines(tmp_path / "wt" / "valid.txt")).split()
    train_vocab = set(c.vocab)
    assert int((c.valid == unk).sum()) >= sum(w not in train_vocab for w in valid_words) > 0


def test_short_lm_training_lowers_loss(data_slices: Path, tmp_path: Path) -> None:
    task = get_task("wikitext2")
    cfg = task.config_from_dict({"data": str(_small_corpus(data_slices, tmp_path / "wt")), "d_model": 32, "d_ff": 64, "n_heads": 2, "n_layers": 1, "bptt": 32, "batch_size": 8, "lr": 3e-3, "warmup_steps": 5, "curve_points": 2})
    pats = [SeqPattern(size=1, stride=4, mask="token", sites=("emb",)), SeqPattern(size=2, stride=8, mask="group", groups=4, sites=("ffn_hidden", "residual"))]
    res = task.run_child(cfg, pats, Budget(steps=60), "cpu", 0)
    assert res.metrics["steps"] == 60 and res.metrics["diverged"] == 0.0
    assert len(res.curve) == 3
    first, last = res.curve[0], res.curve[-1]
    assert last["val_loss"] < first["val_loss"] - 0.3 and last["val_loss"] < math.log(res.metrics["vocab_size"])
    assert res.reward == pytest.approx(80.0 / res.metrics["val_ppl"])
    assert res.metrics["val_ppl"] == pytest.approx(math.exp(res.metrics["val_loss"]))
    assert math.isfinite(res.metrics["test_ppl"])


def test_lm_divergence_gives_zero_reward(data_slices: Path, tmp_path: Path) -> None:
    task = get_task("wikitext2")
    cfg = task.config_from_dict({"data": str(_small_corpus(data_slices, tmp_path / "wt")), "d_model": 16, "d_ff": 32, "n_heads": 2, "n_layers": 1, "bptt": 16, "batch_size": 4, "lr": 1e30, "warmup_steps": 0, "grad_clip": 1e30, "weight_decay": 0.0, "curve_points": 0})
    res = task.run_child(cfg, {"kind": "dropout", "drop_prob": 0.1}, Budget(steps=20), "cpu", 0)
    assert res.reward == 0.0 and res.metrics["diverged"] == 1.0


def test_bad_corpus_inputs_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'none'} does not exist.*train.txt"):
        load_corpus(tmp_path / "none")
    (tmp_path / "f.txt").write_text("a b c\n")
    with pytest.raises(DataError, match="is not a folder"):
        load_corpus(tmp_path / "f.txt")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="mini protocol needs valid.txt and test.txt"):
        load_corpus(tmp_path / "nothing")
    std = tmp_path / "std"
    std.mkdir()
    (std / "train.txt").write_text("a b c\n")
    (std / "valid.txt").write_text("a b\n")
    with pytest.raises(DataError, match="no test.txt"):
        load_corpus(std)
    (std / "test.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="test.txt is empty"):
        load_corpus(std)
    (std / "test.txt").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(DataError, match="test.txt is not a text file"):
        load_corpus(std)
    with pytest.raises(ConfigError, match="needs a data path"):
        load_corpus(None)
    with pytest.raises(ConfigError, match="protocol"):
        load_corpus(std, "tiny")


def test_vocabulary_cap_and_training_prefix(data_slices: Path, tmp_path: Path) -> None:
    """max_vocab keeps the most frequent training words (the rest read as <unk>) and
    train_tokens trains on a prefix of the stream: a small LM child that can over-fit."""
    wt = _small_corpus(data_slices, tmp_path / "wt")
    full, capped = load_corpus(wt), load_corpus(wt, max_vocab=50)
    assert capped.vocab_size == 50 and UNK in capped.vocab and EOS in capped.vocab
    frequent = [w for w in full.vocab if w not in (UNK, EOS)][:48]  # full.vocab is by count
    assert set(capped.vocab) == {*frequent, UNK, EOS}
    unk = capped.vocab.index(UNK)
    assert int((capped.train == unk).sum()) > int((full.train == full.vocab.index(UNK)).sum())
    task = get_task("wikitext2")
    base = {"data": str(wt), "d_model": 32, "d_ff": 64, "n_heads": 2, "n_layers": 1, "bptt": 16,
            "batch_size": 4, "curve_points": 0}
    res = task.run_child(task.config_from_dict({**base, "max_vocab": 50, "train_tokens": 640, "epochs": 1}), None, None, "cpu", 0)
    assert res.metrics["vocab_size"] == 50 and res.metrics["steps"] == 640 // 4 // 16
    with pytest.raises(ConfigError, match="train_tokens=20 is shorter than two windows"):
        task.run_child(task.config_from_dict({**base, "train_tokens": 20}), None, None, "cpu", 0)
    with pytest.raises(ConfigError, match="max_vocab must be at least 2"):
        load_corpus(wt, max_vocab=1)


def test_keep_best_reports_and_tests_the_weights_of_the_lowest_perplexity(
    data_slices: Path, tmp_path: Path,
) -> None:
    """Early stopping as a tuned length on the LM: with a constant learning rate too high to
    hold, perplexity is lowest at an intermediate point, and the reward, ``val_*`` and the test
    metrics are those of its weights: a run stopped at that step (same data order, same
    constant rate) has the same validation and test loss."""
    task = get_task("wikitext2")
    base = {"data": str(_small_corpus(data_slices, tmp_path / "wt")), "d_model": 32, "d_ff": 64,
            "n_heads": 2, "n_layers": 1, "bptt": 32, "batch_size": 8, "lr": 1e-2,
            "schedule": "constant", "warmup_steps": 5, "curve_points": 4}
    # keep_best measures every point on the final evaluation's tokens (all of them here), not
    # on the first curve_eval_tokens, so that the points compare
    res = task.run_child({**base, "keep_best": True, "curve_eval_tokens": 256}, None,
                         Budget(steps=70), "cpu", 0)
    best = min(res.curve, key=lambda p: p["val_metric"])  # val_metric: perplexity
    assert best is not res.curve[-1]  # this setting peaks at step 42 of 70 (ppl 324 vs 335)
    assert res.metrics["best_epoch"] == best["epoch"] and res.metrics["val_ppl"] == best["val_metric"]
    assert res.metrics["val_loss"] == best["val_loss"]
    assert res.reward == pytest.approx(80.0 / best["val_metric"])
    plain = task.run_child(base, None, Budget(steps=70), "cpu", 0)
    # the same run (the default curve_eval_tokens covers this validation split); only the
    # reported weights differ
    assert [q["val_loss"] for q in plain.curve] == pytest.approx([q["val_loss"] for q in res.curve])
    assert "best_epoch" not in plain.metrics and plain.metrics["val_ppl"] == res.curve[-1]["val_metric"]
    assert res.reward > plain.reward
    short = task.run_child(base, None, Budget(steps=int(best["step"])), "cpu", 0)
    assert short.metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)
    assert short.metrics["test_loss"] == pytest.approx(res.metrics["test_loss"], rel=1e-6)
    assert res.metrics["test_loss"] != pytest.approx(plain.metrics["test_loss"], rel=1e-3)
