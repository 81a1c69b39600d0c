"""Word-level language-modelling corpora in the PTB / WikiText format, read with plain Python.

Format: whitespace-tokenized text, one line per sentence or paragraph; rare words already
replaced by ``<unk>``. As in PyTorch's ``word_language_model`` example, every line
(including blank ones) becomes its words followed by ``<eos>``.

Vocabulary: every word of the *training* split plus ``<unk>`` and ``<eos>``, ordered by
decreasing count (ties by first occurrence). Validation and test words outside it map to
``<unk>`` (with the "mini" protocol below the test split's own vocabulary is the training
vocabulary, so some validation words are out of vocabulary; they count as ``<unk>``).

Protocols (``protocol`` of the task config):

- ``standard``: ``train.txt``, ``valid.txt``, ``test.txt`` in the folder (PTB's
  ``ptb.train.txt`` style names are accepted too);
- ``mini`` ("WikiText-2 mini", for machines without the 2M-token training split): train on
  ``test.txt``, validate on the first half of ``valid.txt`` (by line), test on its second half;
- ``auto``: ``standard`` if a training file exists, else ``mini``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from adsearch.errors import ConfigError, DataError

UNK, EOS = "<unk>", "<eos>"
_LAYOUT = (
    "expected a folder with train.txt, valid.txt and test.txt (or ptb.train.txt, ...), one "
    "whitespace-tokenized sentence per line; or, for the WikiText-2 mini protocol, a folder "
    "with valid.txt and test.txt"
)


@dataclass(frozen=True)
class Corpus:
    """Token-id streams (int64 1-D tensors) and the vocabulary (list of words, id = index)."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    vocab: tuple[str, ...]
    source: str

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def _find(folder: Path, split: str) -> Path | None:
    for name in (f"{split}.txt", f"ptb.{split}.txt", f"wiki.{split}.tokens"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file; DataError for unreadable, binary or empty files."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path} is not a text file (found NUL bytes); {_LAYOUT}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); {_LAYOUT}") from None
    lines = text.splitlines()
    if not path.exists():
        raise DataError(f"{path} does not exist; {_LAYOUT}")
    if not any(line.strip() for line in lines):
        raise DataError(f"{path} is empty; {_LAYOUT}")
    return lines


def tokenize(lines: list[str]) -> list[str]:
    """Whitespace tokens, ``<eos>`` after every line."""
    out: list[str] = []
    for line in lines:
        out.extend(line.split())
        out.append(EOS)
    return out


def build_vocab(train_tokens: list[str], max_size: int | None = None) -> tuple[str, ...]:
    """Training-split vocabulary by decreasing count, ``<unk>``/``<eos>`` always present.

    ``max_size``: keep only the most frequent words (``<unk>``/``<eos>`` included); the rest
    read as ``<unk>``. A smaller softmax makes a CPU-scale child cheaper (**ours**).
    """
    counts = Counter(train_tokens)
    counts.setdefault(UNK, 0)
    counts.setdefault(EOS, 0)
    first = {w: i for i, w in reversed(list(enumerate(train_tokens)))}
    vocab = sorted(counts, key=lambda w: (-counts[w], first.get(w, -1)))
    if max_size is not None:
        if max_size < 2:
            raise ConfigError(f"max_vocab must be at least 2 (<unk> and <eos>), got {max_size}")
        kept = [w for w in vocab if w not in (UNK, EOS)][: max_size - 2]
        vocab = [w for w in vocab if w in (UNK, EOS) or w in set(kept)]
    return tuple(vocab)


def encode(tokens: list[str], index: dict[str, int]) -> torch.Tensor:
    unk = index[UNK]
    return torch.tensor([index.get(w, unk) for w in tokens], dtype=torch.long)


def load_corpus(path: str | Path | None, protocol: str = "auto", max_vocab: int | None = None) -> Corpus:
    """Read a corpus folder with ``protocol`` (standard, mini or auto; see module docstring).

    ``max_vocab``: cap the vocabulary at the most frequent training words (see build_vocab).
    """
    if path is None:
        raise ConfigError(f"a language-modelling task needs a data path; {_LAYOUT}")
    folder = Path(path)
    if not folder.exists():
        raise DataError(f"language-model data path {folder} does not exist; {_LAYOUT}")
    if not folder.is_dir():
        raise DataError(f"language-model data path {folder} is not a folder; {_LAYOUT}")
    if protocol not in ("auto", "standard", "mini"):
        raise ConfigError(f"unknown LM protocol {protocol!r}; use auto, standard or mini")
    tr, va, te = _find(folder, "train"), _find(folder, "valid"), _find(folder, "test")
    if protocol == "auto":
        protocol = "standard" if tr is not None else "mini"
    if protocol == "standard":
        missing = [n for n, p in (("train", tr), ("valid", va), ("test", te)) if p is None]
        if missing:
            raise DataError(f"{folder}: no {', '.join(m + '.txt' for m in missing)}; {_LAYOUT}")
        assert tr is not None and va is not None and te is not None
        train_lines, valid_lines, test_lines = read_lines(tr), read_lines(va), read_lines(te)
        source = f"{folder} (standard: train/valid/test)"
    else:
        if va is None or te is None:
            raise DataError(f"{folder}: the mini protocol needs valid.txt and test.txt; {_LAYOUT}")
        train_lines, all_valid = read_lines(te), read_lines(va)
        half = len(all_valid) // 2
        valid_lines, test_lines = all_valid[:half], all_valid[half:]
        source = f"{folder} (mini: train=test.txt, valid/test = halves of valid.txt)"
    train_tokens = tokenize(train_lines)
    vocab = build_vocab(train_tokens, max_vocab)
    index = {w: i for i, w in enumerate(vocab)}
    return Corpus(
        encode(train_tokens, index), encode(tokenize(valid_lines), index), encode(tokenize(test_lines), index), vocab, source
    )


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D stream into ``batch_size`` contiguous rows: (batch_size, L), tail dropped."""
    n = ids.numel() // batch_size
    if n < 2:
        raise DataError(f"a split of {ids.numel()} tokens is too short for batch size {batch_size}")
    return ids[: n * batch_size].view(batch_size, n)


def windows(rows: torch.Tensor, bptt: int) -> list[int]:
    """Start columns of the non-overlapping ``bptt`` windows of ``rows`` (B, L)."""
    return list(range(0, rows.shape[1] - 1, bptt))


def window(rows: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, each (B, t) with ``t = min(bptt, L - 1 - start)``."""
    t = min(bptt, rows.shape[1] - 1 - start)
    return rows[:, start : start + t], rows[:, start + 1 : start + 1 + t]
