"""The hand-designed baselines as points of the v2 spaces (issue 20).

:func:`baseline_patterns` writes Dropout, SpatialDropout, DropBlock or variational dropout
as one pattern per site of a ``conv2-K`` or ``seq2-K`` space:

- conv ``dropout p`` -> kind ``"element"`` at rate ``p`` at every site: the same law
  (i.i.d. Bernoulli(p), ``1/(1-p)`` scaling) at the same places, drawn with other random
  numbers than ``F.dropout`` (docs/spaces-v2.md, "Speed"), so equal in distribution;
- conv ``spatial p`` -> kind ``"channel"`` (``F.dropout2d``), likewise exact;
- conv ``dropblock p --block B`` -> kind ``"block"`` with the side fraction that gives ``B``
  px at each site's map side (``sides``) and, per site, the grid rate nearest the rate that
  ``DropBlock2d(p, B)`` really drops there (its seed probability ignores overlaps, so it
  drops a little less than ``p``; the v2 block kind drops its rate exactly). Same seeding
  (Bernoulli seeds where a whole block fits), same block shape, same per-channel draws;
- seq ``dropout p`` / ``variational p`` -> kind ``"element"`` / ``"variational"`` at the
  sub-layers where a baseline dict acts (:data:`BASELINE_SEQ_SITES`: emb, attn_out,
  ffn_out), on site 0 only (a dict acts once per sub-layer); the other sites are off.

:data:`ROUND3_BASELINES` lists every tuned baseline of proof round 3 (BENCHMARKS.md).
"""

from __future__ import annotations

import math

from adsearch.errors import PatternError
from adsearch.patterns.conv2 import CONV2_VALUES, RATES, ConvPattern2, block_coverage, side_px
from adsearch.patterns.seq2 import SeqPattern2
from adsearch.patterns.space import Pattern, SearchSpace

#: Sub-layers where a baseline acts in the Transformer models (as adsearch.models.sites).
BASELINE_SEQ_SITES: tuple[str, ...] = ("emb", "attn_out", "ffn_out")

BASELINE_KINDS: dict[str, tuple[str, ...]] = {
    "conv": ("dropout", "spatial", "dropblock"),
    "seq": ("dropout", "variational"),
}

#: (space kind, baseline kind, rate, block px or None): proof round 3's tuned baselines
#: (CIFAR at 16 px inputs: maps 16, 8, 4; WikiText-2 mini; Multi30k's Dropout 0.05).
ROUND3_BASELINES: tuple[tuple[str, str, float, int | None], ...] = (
    ("conv", "dropout", 0.2, None), ("conv", "dropout", 0.3, None),
    ("conv", "dropout", 0.4, None), ("conv", "spatial", 0.1, None),
    ("conv", "spatial", 0.2, None), ("conv", "dropblock", 0.1, 3),
    ("conv", "dropblock", 0.15, 3), ("conv", "dropblock", 0.2, 3),
    ("seq", "dropout", 0.05, None), ("seq", "dropout", 0.2, None),
    ("seq", "dropout", 0.4, None), ("seq", "variational", 0.1, None),
    ("seq", "variational", 0.3, None),
)
#: The map sides of round 3's CIFAR protocol (16 px inputs, WRN groups at 16, 8, 4 px).
ROUND3_SIDES: tuple[int, ...] = (16, 8, 4)


def dropblock_realised(rate: float, block: int, side: int) -> float:
    """Expected dropped fraction of ``DropBlock2d(rate, block)`` on a ``side``-px square map
    (Ghiasi's seed probability, block clipped to the map, overlaps counted once)."""
    b = min(block, side)
    valid = side - b + 1
    gamma = min(1.0, rate * side * side / (b * b * valid * valid))
    return block_coverage(gamma, side, side, b)


def _grid_rate(rate: float) -> float:
    if not any(math.isclose(rate, r) for r in RATES):
        raise PatternError(
            f"--rate {rate}: not on the v2 rate grid; allowed rates are "
            f"{', '.join(str(r) for r in RATES)}"
        )
    return next(r for r in RATES if math.isclose(rate, r))


def baseline_patterns(kind: str, rate: float, space: SearchSpace, block: int | None = None,
                      sides: tuple[int, ...] | None = None) -> list[Pattern]:
    """One v2 pattern per site of ``space`` for the baseline ``kind`` at ``rate`` (see the
    module docstring). ``sides``: each site's map side in px (needed for ``dropblock``)."""
    if space.version != 2:
        raise PatternError(
            f"--space {space.name}: the baselines are points of the v2 spaces only; use "
            f"--space {space.kind}2-{space.num_sites}"
        )
    allowed = BASELINE_KINDS[space.kind]
    if kind not in allowed:
        raise PatternError(
            f"baseline {kind!r} is not a point of a {space.kind} space; allowed kinds for "
            f"{space.name} are {', '.join(allowed)}"
        )
    r = _grid_rate(rate)
    if r == 0.0:
        raise PatternError("--rate 0 is no dropout; give a rate above 0")
    if space.kind == "seq":
        v2kind = "element" if kind == "dropout" else "variational"
        seq: list[Pattern] = [SeqPattern2.uniform(r, v2kind, BASELINE_SEQ_SITES)]
        return seq + [SeqPattern2() for _ in range(space.num_sites - 1)]
    if kind in ("dropout", "spatial"):
        k = "element" if kind == "dropout" else "channel"
        return [ConvPattern2(rate=r, kind=k) for _ in range(space.num_sites)]
    if block is None or block < 1:
        raise PatternError("baseline dropblock needs --block B, the block side in px (e.g. 3)")
    if sides is None or len(sides) != space.num_sites:
        raise PatternError(
            f"baseline dropblock needs each site's map side ({space.num_sites} value(s), "
            "--sides, e.g. --sides 16,8,4 for 16 px CIFAR inputs on WRN)"
        )
    out: list[Pattern] = []
    for site, side in enumerate(sides):
        if block > side - 1:
            raise PatternError(
                f"dropblock --block {block}: site {site}'s map is {side} px, and a v2 block is "
                f"at most {side - 1} px there (the cap: DropBlock2d would drop whole maps); "
                "use a smaller --block"
            )
        want = block
        fracs = [f for f in CONV2_VALUES["side"] if side_px(f, side) == want]
        if not fracs:
            raise PatternError(
                f"dropblock --block {block}: no side fraction of the v2 grid gives {want} px at "
                f"site {site}'s {side} px map; grid: {CONV2_VALUES['side']}"
            )
        real = dropblock_realised(r, block, side)
        nearest = min((g for g in RATES if g > 0.0), key=lambda g: abs(g - real))
        out.append(ConvPattern2(rate=nearest, kind="block", side=fracs[0]))
    return out
