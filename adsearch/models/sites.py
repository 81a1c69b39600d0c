"""The one ``regularizer`` argument of every model, and how it reaches the dropout sites.

A model's search space (``model.space``) has ``num_sites`` *sites*; the controller emits one
pattern per site. Each model maps its sites to concrete places in the network (see each
model's docstring and docs/tasks.md). :func:`regularizer_for_sites` normalises whatever the
caller passed into one spec per site, and :func:`drop_module` builds the module for a spec
through :func:`adsearch.ops.make_dropout`.

For the Transformer models a site's pattern names the sub-layers it acts on
(``SeqPattern.sites``); :func:`seq_sublayer_specs` turns the per-site specs into the chain
of specs each sub-layer applies. Where two patterns name the same sub-layer both act, one
after the other (independent draws). A baseline spec dict has no ``sites`` field: it acts at
:data:`BASELINE_SEQ_SITES` (**ours**: the placement of Vaswani et al. 2017: embeddings and
each sub-layer output before the residual add), and is applied once per sub-layer even though
``regularizer_for_sites`` repeats it for every site.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

from torch import nn

from adsearch.errors import ConfigError, PatternError
from adsearch.patterns import SEQ_SITES, ConvPattern, PatternSet, SearchSpace, SeqPattern
from adsearch.patterns.conv2 import ConvPattern2
from adsearch.patterns.decode import decode_pattern
from adsearch.patterns.seq2 import SeqPattern2, SeqSub2

Spec = Union[ConvPattern, SeqPattern, ConvPattern2, SeqPattern2, SeqSub2, dict, None]  # noqa: UP007

#: Sub-layers where a baseline dict (dropout, variational) acts in the Transformer models.
BASELINE_SEQ_SITES: tuple[str, ...] = ("emb", "attn_out", "ffn_out")
#: Baseline kinds that make sense on (N, T, D) sequence states.
SEQ_BASELINE_KINDS: tuple[str, ...] = ("none", "dropout", "variational")


def regularizer_for_sites(regularizer: Any, space: SearchSpace) -> list[Spec]:
    """Normalise ``regularizer`` to a list of ``space.num_sites`` specs, one per site.

    Accepts a :class:`~adsearch.patterns.PatternSet` (refused with PatternError if written
    for another space), a sequence of patterns (one per site, of the space's pattern kind),
    a baseline spec dict such as ``{"kind": "dropblock", "drop_prob": 0.1, "block_size": 7}``
    (repeated for every site), or ``None`` (no regularizer at any site).
    """
    n = space.num_sites
    if regularizer is None:
        return [None] * n
    if isinstance(regularizer, PatternSet):
        regularizer.check_space(space)
        return [None if p.off else p for p in regularizer.patterns]
    if isinstance(regularizer, Mapping):
        kind = regularizer.get("kind")
        if not isinstance(kind, str):
            raise ConfigError(
                f"regularizer dict {dict(regularizer)!r} has no 'kind'; expected e.g. "
                "{'kind': 'dropout', 'p': 0.1} with kind one of none, dropout, spatial, "
                "dropblock, variational"
            )
        if kind == "pattern":  # {"kind": "pattern", "pattern": {...}}: that pattern at every site
            pat = decode_pattern(regularizer.get("pattern"), what="pattern spec")
            return regularizer_for_sites([pat] * n, space)
        return [dict(regularizer) for _ in range(n)]
    if isinstance(regularizer, (ConvPattern, SeqPattern, ConvPattern2, SeqPattern2)):
        raise PatternError(
            f"space {space.name}: got one {type(regularizer).__name__}, expected a list of "
            f"{n} pattern(s), one per site"
        )
    if isinstance(regularizer, Sequence) and not isinstance(regularizer, (str, bytes)):
        pats = list(regularizer)
        # PatternError for a wrong count or pattern kind; an off site (**ours**) is no dropout
        v2 = bool(pats) and isinstance(pats[0], (ConvPattern2, SeqPattern2))  # the v2 family
        SearchSpace(space.kind, space.num_sites, off=True, version=2 if v2 else 1).encode(pats)
        return [None if p.off else p for p in pats]
    raise ConfigError(
        f"unsupported regularizer {regularizer!r}: pass a PatternSet, a list of patterns, a "
        "baseline spec dict or None"
    )


def drop_module(spec: Spec) -> nn.Module:
    """The dropout module for one spec (``nn.Identity``-like for None / kind none)."""
    from adsearch.ops import make_dropout

    return make_dropout(spec)


def is_active(spec: Spec) -> bool:
    """False for None and ``{"kind": "none"}``."""
    return spec is not None and not (isinstance(spec, dict) and spec.get("kind") == "none")


def conv_residual(spec: Spec) -> bool:
    """Whether a ConvNet site also drops its shortcut branch (the pattern's residual flag;
    always False for baseline dicts, which act after batch norms only)."""
    return isinstance(spec, (ConvPattern, ConvPattern2)) and spec.residual


def seq_sublayer_specs(specs: Sequence[Spec]) -> dict[str, list[Spec]]:
    """Map each sub-layer name of :data:`~adsearch.patterns.SEQ_SITES` to the specs acting
    there, in site order (see the module docstring)."""
    out: dict[str, list[Spec]] = {s: [] for s in SEQ_SITES}
    for spec in specs:
        if not is_active(spec):
            continue
        if isinstance(spec, SeqPattern):
            for s in spec.sites:
                out[s].append(spec)
        elif isinstance(spec, SeqPattern2):  # v2: each sub-layer has its own rate and kind
            for s in spec.sites:
                out[s].append(spec.sub(s))
        elif isinstance(spec, dict):
            if spec["kind"] not in SEQ_BASELINE_KINDS:
                raise ConfigError(
                    f"baseline {spec['kind']!r} does not apply to a Transformer's (N, T, D) "
                    f"states; use one of {', '.join(SEQ_BASELINE_KINDS)} or a seq pattern file"
                )
            for s in BASELINE_SEQ_SITES:
                if spec not in out[s]:
                    out[s].append(spec)
        else:
            raise PatternError(f"a Transformer site needs a SeqPattern, got {type(spec).__name__}")
    return out


def chain(specs: Sequence[Spec]) -> nn.Module:
    """One module applying every spec in order (``nn.Identity`` when there is none)."""
    mods = [drop_module(s) for s in specs]
    if not mods:
        return nn.Identity()
    return mods[0] if len(mods) == 1 else nn.Sequential(*mods)


class SeqDrops(nn.Module):
    """The dropout modules of one Transformer layer, one attribute per sub-layer name.

    ``drops.ffn_hidden(h)`` applies every spec routed to ``ffn_hidden`` (or nothing) to
    ``h`` of shape ``(N, T, D)``. Only the names in ``names`` are built.
    """

    emb: nn.Module
    qkv: nn.Module
    attn_out: nn.Module
    ffn_hidden: nn.Module
    ffn_out: nn.Module
    residual: nn.Module

    def __init__(self, routed: Mapping[str, Sequence[Spec]], names: Sequence[str]) -> None:
        super().__init__()
        for name in names:
            setattr(self, name, chain(routed[name]))
