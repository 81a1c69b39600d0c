"""Sequence (Transformer) dropout patterns on ``(N, T, D)`` hidden states.

**paper**: the tokens describe a size, a stride, the type of noise mask and the sub-layers
a pattern affects; one pattern may act on several sub-layers of a Transformer.

**ours** (each changeable in :data:`SEQ_VALUES`):

- ``size``: length of a dropped span, in time steps.
- ``stride``: gap between spans, in time steps; the period along time is ``size + stride``.
- ``mask``: what is dropped inside a span:

  - ``"token"``: the whole D-dimensional vector of every position in the span;
  - ``"group"``: one contiguous channel group of ``ceil(D / groups)`` channels;
  - ``"interleave"``: every ``groups``-th channel, from a random phase (scattered single
    elements, the structured analogue of element-wise dropout).

- ``groups``: number of channel groups for ``"group"``/``"interleave"`` (ignored by
  ``"token"``, which always drops all channels).
- ``share_t``: the channel choice is drawn once per sequence and shared by every span
  (variational / locked, as in AWD-LSTM) instead of once per span.
- ``sites``: the sub-layers the pattern acts on, a non-empty subset of :data:`SEQ_SITES`.

Randomness: the span phase along time is uniform per example; the channel group (or
phase) is uniform per example (``share_t``) or per span. The expected dropped fraction is
``size / (size + stride)`` times ``1`` (token) or ``1 / groups``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, fields
from typing import Any

from adsearch.errors import PatternError
from adsearch.patterns.conv import OFF_VALUES, _check_value, _from_mapping

#: Sub-layers a sequence pattern may act on, in canonical order:
#: token embeddings, attention q/k/v projections, attention output, FFN hidden
#: activations, FFN output, and the residual stream after each block.
SEQ_SITES: tuple[str, ...] = ("emb", "qkv", "attn_out", "ffn_hidden", "ffn_out", "residual")


def _all_site_sets() -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = []
    for r in range(1, len(SEQ_SITES) + 1):
        out.extend(itertools.combinations(SEQ_SITES, r))
    return tuple(out)


#: The discrete choices of every field, in token order. Change the search space here.
SEQ_VALUES: dict[str, tuple[Any, ...]] = {
    "size": (1, 2, 4, 8, 16),
    "stride": (1, 2, 4, 8, 16, 32),
    "mask": ("token", "group", "interleave"),
    "groups": (2, 4, 8),
    "share_t": (False, True),
    "sites": _all_site_sets(),
}

SEQ_FIELDS: tuple[str, ...] = tuple(SEQ_VALUES)


def _canonical_sites(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value):
        unknown = [s for s in value if s not in SEQ_SITES]
        if unknown:
            raise PatternError(
                f"SeqPattern.sites: unknown sub-layer(s) {', '.join(map(repr, unknown))}; "
                f"allowed sub-layers are {', '.join(SEQ_SITES)}"
            )
        if len(set(value)) != len(value):
            raise PatternError(f"SeqPattern.sites: duplicate sub-layers in {list(value)!r}")
        return tuple(s for s in SEQ_SITES if s in value)
    return value


@dataclass(frozen=True)
class SeqPattern:
    """One dropout pattern for sequence hidden states. See the module docstring."""

    size: int = 2
    stride: int = 8
    mask: str = "token"
    groups: int = 4
    share_t: bool = True
    sites: tuple[str, ...] = ("ffn_hidden",)
    off: bool = False  # **ours**: no dropout at this site (see adsearch.patterns.conv.OFF_VALUES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", _canonical_sites(self.sites))
        if self.sites == ():
            raise PatternError(
                f"SeqPattern.sites: must name at least one of {', '.join(SEQ_SITES)}"
            )
        table = {**SEQ_VALUES, **OFF_VALUES}
        for f in fields(self):
            _check_value("SeqPattern", f.name, getattr(self, f.name), table[f.name])

    @property
    def period(self) -> int:
        return self.size + self.stride

    def drop_fraction(self) -> float:
        """Expected dropped fraction: time fraction times channel fraction (0 when off)."""
        if self.off:
            return 0.0
        chan = 1.0 if self.mask == "token" else 1.0 / self.groups
        return self.size / self.period * chan

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "stride": self.stride,
            "mask": self.mask,
            "groups": self.groups,
            "share_t": self.share_t,
            "sites": list(self.sites),
            **({"off": True} if self.off else {}),  # absent when False: the old format
        }

    @classmethod
    def from_dict(cls, data: Any) -> SeqPattern:
        return cls(**_from_mapping("SeqPattern", SEQ_VALUES, data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SeqPattern:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PatternError(f"SeqPattern: invalid JSON ({exc})") from None
        return cls.from_dict(data)
