"""Sequence (Transformer) dropout patterns of the v2 spaces (``seq2-K``).

**ours** (issue 20; the paper's space is :mod:`adsearch.patterns.seq`, unchanged). One
pattern per site; it gives each sub-layer of :data:`~adsearch.patterns.seq.SEQ_SITES`
(emb, qkv, attn_out, ffn_hidden, ffn_out, residual) its own rate first, then its own kind.
Fields in token order: ``<sub>_rate`` and ``<sub>_kind`` for each sub-layer, then
``groups`` (the channel-group count of the ``"group"`` and ``"interleave"`` kinds).

Kinds on ``(N, T, D)`` states, each dropping ``rate`` of the units in expectation:

- ``"element"``: i.i.d. Bernoulli per unit (Dropout);
- ``"token"``: the whole D-vector of a position, per (example, time step);
- ``"group"``: ``groups`` contiguous channel groups of ``ceil(D / groups)`` channels, each
  dropped independently per (example, time step);
- ``"interleave"``: the channel classes ``c mod groups``, each dropped independently per
  (example, time step) (scattered channels, the structured analogue of element-wise);
- ``"variational"``: one ``(N, 1, D)`` mask per sequence, shared by every time step
  (Gal & Ghahramani; AWD-LSTM's locked dropout).

**The cap**: ``rate <= 0.5`` (the rate grid's top) at every sub-layer. A sub-layer at rate 0
is off; a pattern whose sub-layers are all 0 is off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from adsearch.errors import PatternError
from adsearch.patterns.conv import _check_value, _from_mapping
from adsearch.patterns.conv2 import RATES, _no_off
from adsearch.patterns.seq import SEQ_SITES

SEQ2_KINDS: tuple[str, ...] = ("element", "token", "group", "interleave", "variational")
SEQ2_GROUPS: tuple[int, ...] = (2, 4, 8, 16)

#: The discrete choices of every field, in token order.
SEQ2_VALUES: dict[str, tuple[Any, ...]] = {
    **{
        k: v
        for sub in SEQ_SITES
        for k, v in ((f"{sub}_rate", RATES), (f"{sub}_kind", SEQ2_KINDS))
    },
    "groups": SEQ2_GROUPS,
}

SEQ2_FIELDS: tuple[str, ...] = tuple(SEQ2_VALUES)


@dataclass(frozen=True)
class SeqSub2:
    """What one sub-layer does: drop ``rate`` of the units as ``kind`` (``groups`` for the
    group kinds). The ops build a module from this (``adsearch.ops.make_dropout``)."""

    rate: float
    kind: str
    groups: int = 4

    def __post_init__(self) -> None:
        _check_value("SeqSub2", "rate", float(self.rate), RATES)
        object.__setattr__(self, "rate", float(self.rate))
        _check_value("SeqSub2", "kind", self.kind, SEQ2_KINDS)
        _check_value("SeqSub2", "groups", self.groups, SEQ2_GROUPS)

    @property
    def off(self) -> bool:
        return self.rate == 0.0


@dataclass(frozen=True, init=False)
class SeqPattern2:
    """One v2 pattern for one Transformer site: per sub-layer rate and kind, and ``groups``.

    Build it from keyword fields (``emb_rate=0.1, emb_kind="element", ...``; omitted
    sub-layers are off) or with :meth:`uniform`.
    """

    values: tuple[tuple[str, Any], ...]

    def __init__(self, **kw: Any) -> None:
        unknown = sorted(set(kw) - set(SEQ2_VALUES))
        if unknown:
            raise PatternError(
                f"SeqPattern2: unknown field(s) {', '.join(map(repr, unknown))}; "
                f"known fields are {', '.join(SEQ2_VALUES)}"
            )
        out: list[tuple[str, Any]] = []
        for name, allowed in SEQ2_VALUES.items():
            default = 0.0 if name.endswith("_rate") else allowed[0]
            v = kw.get(name, default)
            if name.endswith("_rate") and type(v) is int:
                v = float(v)
            _check_value("SeqPattern2", name, v, allowed)
            out.append((name, v))
        object.__setattr__(self, "values", tuple(out))

    def __getattr__(self, name: str) -> Any:
        if name != "values" and name in SEQ2_VALUES:
            return dict(self.values)[name]
        raise AttributeError(name)

    @classmethod
    def uniform(cls, rate: float, kind: str, subs: tuple[str, ...], groups: int = 4) -> SeqPattern2:
        """``kind`` at ``rate`` on the sub-layers ``subs``, nothing elsewhere."""
        kw: dict[str, Any] = {"groups": groups}
        for s in subs:
            kw[f"{s}_rate"], kw[f"{s}_kind"] = rate, kind
        return cls(**kw)

    def sub(self, name: str) -> SeqSub2:
        """The sub-layer ``name``'s setting."""
        d = dict(self.values)
        return SeqSub2(d[f"{name}_rate"], d[f"{name}_kind"], d["groups"])

    @property
    def sites(self) -> tuple[str, ...]:
        """The sub-layers with a non-zero rate, in canonical order."""
        return tuple(s for s in SEQ_SITES if dict(self.values)[f"{s}_rate"] > 0.0)

    @property
    def off(self) -> bool:
        return not self.sites

    def drop_fraction(self) -> float:
        """The largest rate of any sub-layer (each sub-layer drops its own rate)."""
        return max((self.sub(s).rate for s in SEQ_SITES), default=0.0)

    def canonical(self) -> SeqPattern2:
        """The off sub-layers' kinds, and ``groups`` unless a group kind uses it, at their
        defaults (adsearch.patterns.canonical)."""
        kw: dict[str, Any] = {}
        for s in self.sites:
            kw[f"{s}_rate"], kw[f"{s}_kind"] = self.sub(s).rate, self.sub(s).kind
        if any(self.sub(s).kind in ("group", "interleave") for s in self.sites):
            kw["groups"] = self.groups
        return SeqPattern2(**kw)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @classmethod
    def from_dict(cls, data: Any) -> SeqPattern2:
        return cls(**_from_mapping("SeqPattern2", SEQ2_VALUES, _no_off(data, "SeqPattern2")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
