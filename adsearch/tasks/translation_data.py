"""Parallel text for translation: line-aligned files, plain or gzip, read with plain Python.

Layout: a folder with ``<split>.<lang>`` or ``<split>.<lang>.gz`` files, one sentence per
line, line ``i`` of the source file translating line ``i`` of the target file (Multi30k's
``train.en.gz`` / ``train.fr.gz``). A split may also be given as a path prefix
(``/data/multi30k-en-fr/test_2016_flickr``).

Tokenization (**ours**): lowercase, then split into runs of word characters and single
punctuation marks (``re.findall(r"\\w+|[^\\w\\s]")``, Unicode-aware, so "l'homme" becomes
``l ' homme``). Vocabularies (one per language) are built from the training split: words seen
at least ``min_freq`` times, plus ``<pad>`` (0), ``<unk>`` (1), ``<bos>`` (2), ``<eos>`` (3).
BLEU is computed by sacrebleu on these lowercased token strings (``tokenize="none"``), i.e.
*tokenized, case-insensitive* BLEU: comparable between our runs, not to detokenized
WMT-style scores.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from adsearch.errors import ConfigError, DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_LAYOUT = (
    "expected line-aligned files '<split>.<lang>' or '<split>.<lang>.gz' (e.g. train.en.gz and "
    "train.fr.gz), one sentence per line, the same number of lines in both"
)


def tokenize(line: str) -> list[str]:
    """Lowercased word and punctuation tokens."""
    return _TOKEN.findall(line.lower())


def _split_file(data: Path | None, split: str, lang: str) -> Path:
    prefix = Path(split) if (data is None or "/" in split or Path(split).is_absolute()) else data / split
    for cand in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if cand.is_file():
            return cand
    if data is not None and not data.exists():
        raise DataError(f"translation data path {data} does not exist; {_LAYOUT}")
    raise DataError(f"no file {prefix}.{lang} or {prefix}.{lang}.gz; {_LAYOUT}")


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 (optionally gzip) file; DataError for corrupt, binary or empty files."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc} (a .gz file must be gzip-compressed text)") from None
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path} is not a text file (found NUL bytes); {_LAYOUT}")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); {_LAYOUT}") from None
    if not lines or not any(s.strip() for s in lines):
        raise DataError(f"{path} is empty; {_LAYOUT}")
    return lines


def read_pairs(data: Path | None, split: str, src: str, tgt: str, limit: int | None = None) -> tuple[list[str], list[str]]:
    """Raw (source lines, target lines) of ``split``; DataError if they are not aligned."""
    ps, pt = _split_file(data, split, src), _split_file(data, split, tgt)
    a, b = read_lines(ps), read_lines(pt)
    if len(a) != len(b):
        raise DataError(f"{ps} has {len(a)} lines but {pt} has {len(b)}; {_LAYOUT}")
    if limit is not None:
        a, b = a[:limit], b[:limit]
    return a, b


@dataclass(frozen=True)
class Vocab:
    """Word list (id = index; ids 0-3 are the specials) and its inverse."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, token_lists: list[list[str]], min_freq: int) -> Vocab:
        counts = Counter(w for toks in token_lists for w in toks)
        kept = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, toks: list[str], max_len: int) -> list[int]:
        """``<bos>`` ids ``<eos>``, truncated to ``max_len`` ids in all."""
        index = self._index()
        ids = [index.get(w, UNK) for w in toks][: max_len - 2]
        return [BOS, *ids, EOS]

    def decode(self, ids: list[int]) -> list[str]:
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.words[i])
        return out

    def _index(self) -> dict[str, int]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = {w: i for i, w in enumerate(self.words)}
            object.__setattr__(self, "_idx", idx)
        return idx


@dataclass(frozen=True)
class Split:
    """Encoded sentences of one split plus the tokenized references (for BLEU)."""

    src: list[list[int]]
    tgt: list[list[int]]
    refs: list[str]  # lowercased, tokenized target sentences joined by spaces


@dataclass(frozen=True)
class ParallelData:
    train: Split
    val: Split
    test: Split | None
    src_vocab: Vocab
    tgt_vocab: Vocab


def load_parallel(
    data: str | None, src: str, tgt: str, train_split: str, val_split: str, test_split: str | None,
    min_freq: int, max_len: int, train_limit: int | None = None, eval_limit: int | None = None,
) -> ParallelData:
    """Read, tokenize and encode the train/val(/test) splits (see the module docstring)."""
    if data is None:
        raise ConfigError(f"task translation needs a data folder (--data); {_LAYOUT}")
    folder = Path(data)
    if not folder.exists():
        raise DataError(f"translation data path {folder} does not exist; {_LAYOUT}")
    if not folder.is_dir():
        raise DataError(f"translation data path {folder} is not a folder; {_LAYOUT}")
    tr_s, tr_t = read_pairs(folder, train_split, src, tgt, train_limit)
    tok_s, tok_t = [tokenize(s) for s in tr_s], [tokenize(s) for s in tr_t]
    sv, tv = Vocab.build(tok_s, min_freq), Vocab.build(tok_t, min_freq)

    def enc(a: list[list[str]], b: list[list[str]]) -> Split:
        return Split([sv.encode(x, max_len) for x in a], [tv.encode(y, max_len) for y in b], [" ".join(y) for y in b])

    def load(split: str) -> Split:
        a, b = read_pairs(folder, split, src, tgt, eval_limit)
        return enc([tokenize(s) for s in a], [tokenize(s) for s in b])

    return ParallelData(enc(tok_s, tok_t), load(val_split), load(test_split) if test_split else None, sv, tv)


def pad_batch(seqs: list[list[int]]) -> torch.Tensor:
    """Right-pad id lists with PAD: (N, max length) int64."""
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def length_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar length: shuffle, sort within pools of 50 batches, cut,
    then shuffle the batches. Drops nothing (the last batch may be smaller)."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    pool = batch_size * 50
    batches: list[list[int]] = []
    for i in range(0, len(perm), pool):
        chunk = sorted(perm[i : i + pool], key=lambda j: lengths[j])
        batches.extend(chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[o] for o in order]
