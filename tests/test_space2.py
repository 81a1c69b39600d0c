"""The v2 spaces (issue 20): names, coding, files, family checks, the cap, baselines as
points. Pure Python (no torch) except where a model is built."""

from __future__ import annotations

import json
import random

import pytest

from adsearch.errors import PatternError
from adsearch.patterns import PatternSet, SearchSpace, load_patternset, save_patternset
from adsearch.patterns.baselines2 import (
    ROUND3_BASELINES,
    ROUND3_SIDES,
    baseline_patterns,
    dropblock_realised,
)
from adsearch.patterns.conv import ConvPattern
from adsearch.patterns.conv2 import (
    CONV2_VALUES,
    RATE_CAP,
    RATES,
    ConvPattern2,
    block_coverage,
    resolve,
)
from adsearch.patterns.seq2 import SEQ2_VALUES, SeqPattern2


@pytest.mark.parametrize("name", ["conv2-3", "conv2-4", "seq2-2"])
def test_v2_names_round_trip_and_code(name: str) -> None:
    sp = SearchSpace.from_name(name)
    assert sp.version == 2 and sp.name == name and sp.off
    assert SearchSpace.from_name(name + "+off") == sp  # the off choice is built in
    rng = random.Random(0)
    for _ in range(200):
        pats = sp.sample(rng)
        assert sp.decode(sp.encode(pats)) == pats
        assert [type(p).from_dict(json.loads(p.to_json())) for p in pats] == pats
    # rate first in every site's token order
    assert sp.fields[0] in ("rate", "emb_rate")
    assert sp.fingerprint() != SearchSpace.from_name(name.replace("2-", "-")).fingerprint()


def test_v1_spaces_unchanged() -> None:
    for name in ("conv-3", "conv-3+off", "seq-2", "seq-2+off"):
        sp = SearchSpace.from_name(name)
        assert sp.version == 1 and sp.name == name
    # the v1 value table and fingerprint are what they were before v2 existed
    assert SearchSpace.from_name("conv-3").num_tokens == 24
    assert SearchSpace.from_name("seq-2+off").num_tokens == 14


def test_v1_file_loads_unchanged(tmp_path) -> None:
    sp = SearchSpace.from_name("conv-3")
    ps = PatternSet(sp, (ConvPattern(),) * 3)
    path = save_patternset(ps, tmp_path / "v1.json")
    back = load_patternset(path)
    assert back == ps and back.space.version == 1


def test_v2_file_round_trip_records_name(tmp_path) -> None:
    sp = SearchSpace.from_name("seq2-2")
    ps = PatternSet(sp, tuple(sp.sample(random.Random(3))))
    path = save_patternset(ps, tmp_path / "v2.json")
    doc = json.loads(path.read_text())
    assert doc["space"] == "seq2-2"
    assert load_patternset(path) == ps


def test_other_family_is_refused_with_a_clear_error() -> None:
    v1, v2 = SearchSpace.from_name("conv-3"), SearchSpace.from_name("conv2-3")
    assert v1.same_sites(v2) and not v1.same_family(v2)  # a model runs both; a search not
    with pytest.raises(PatternError, match=r"family conv2-3.*--space conv2-3"):
        v1.pattern_from_dict(ConvPattern2().to_dict())
    with pytest.raises(PatternError, match=r"family conv-3"):
        v2.pattern_from_dict(ConvPattern().to_dict())
    with pytest.raises(PatternError):
        v1.encode([ConvPattern2()] * 3)
    # a file that says conv-3 but holds v2 patterns is refused at load
    doc = PatternSet(v2, (ConvPattern2(),) * 3).to_dict()
    doc["space"], doc["space_fingerprint"] = "conv-3", None
    with pytest.raises(PatternError, match="ConvPattern"):
        PatternSet.from_dict(doc)


def test_v2_pattern_refuses_off_field_and_bad_values() -> None:
    with pytest.raises(PatternError, match="rate 0 is off"):
        ConvPattern2.from_dict({**ConvPattern2().to_dict(), "off": True})
    with pytest.raises(PatternError, match="allowed values"):
        ConvPattern2(rate=0.22)
    with pytest.raises(PatternError, match="unknown field"):
        SeqPattern2(foo_rate=0.1)


def test_rate_grid_has_off_and_the_cap_is_its_top() -> None:
    assert RATES[0] == 0.0 and max(RATES) == RATE_CAP == 0.5
    assert CONV2_VALUES["rate"] == RATES
    assert all(SEQ2_VALUES[k] == RATES for k in SEQ2_VALUES if k.endswith("_rate"))
    assert ConvPattern2(rate=0.0).off and SeqPattern2().off


@pytest.mark.parametrize("side", [1, 2, 3, 4, 8, 16, 32, 56])
def test_resolve_never_exceeds_the_cap(side: int) -> None:
    """At every map side a block or tile fits inside the map (side <= map - 1); a tile keeps
    a gap of at least one pattern-frame step (so it never covers a whole map); where
    neither fits the site falls back to element-wise at the same rate."""
    for rate in RATES[1:]:
        for kind in ("block", "tile"):
            for frac in CONV2_VALUES["side"]:
                for rot in CONV2_VALUES["rotate"]:
                    for sx in CONV2_VALUES["shear_x"]:
                        p = ConvPattern2(rate=rate, kind=kind, side=frac, rotate=rot, shear_x=sx)
                        g = resolve(p, side, side)
                        if g.kind == "element":
                            assert side < 2 or kind == "tile"
                            continue
                        assert 1 <= g.side <= side - 1
                        if g.kind == "tile":
                            step = max(abs(v) for row in g.matrix for v in row)
                            assert g.period - g.side >= step - 1e-9
                            assert abs(g.side**2 / g.period**2 - rate) < 1e-12
                        else:
                            cov = block_coverage(g.gamma, side, side, g.side)
                            assert abs(cov - rate) < 1e-9


def test_same_pattern_same_meaning_at_every_map_side() -> None:
    """A block side is a fraction of the map: 3/16 of the map is 3 px at 16 and 6 px at 32."""
    p = ConvPattern2(rate=0.2, kind="block", side=0.1875)
    assert [resolve(p, s, s).side for s in (16, 32, 56)] == [3, 6, 11]
    q = ConvPattern2(rate=0.2, kind="block", side=0.09375)
    assert [resolve(q, s, s).side for s in (32, 16, 8, 4)] == [3, 2, 1, 1]


@pytest.mark.parametrize("entry", ROUND3_BASELINES, ids=lambda e: f"{e[0]}-{e[1]}-{e[2]}")
def test_every_round3_baseline_is_a_point_of_a_v2_space(entry) -> None:
    kind, base, rate, block = entry
    sp = SearchSpace.from_name("conv2-3" if kind == "conv" else "seq2-2")
    pats = baseline_patterns(base, rate, sp, block, ROUND3_SIDES if kind == "conv" else None)
    tokens = sp.encode(pats)  # a point of the space: it has a token sequence
    assert sp.decode(tokens) == pats
    if kind == "seq":
        want = "element" if base == "dropout" else "variational"
        assert pats[0].sites == ("emb", "attn_out", "ffn_out")
        assert all(pats[0].sub(s).rate == rate and pats[0].sub(s).kind == want
                   for s in pats[0].sites)
        assert all(p.off for p in pats[1:])
    elif base == "dropblock":
        for p, side in zip(pats, ROUND3_SIDES, strict=True):
            g = resolve(p, side, side)
            assert g.kind == "block" and g.side == block
            # the grid rate nearest what DropBlock2d(rate, block) really drops at this side
            assert abs(p.rate - dropblock_realised(rate, block, side)) <= 0.025 + 1e-12
    else:
        assert all(p.rate == rate for p in pats)
        assert {p.kind for p in pats} == {"element" if base == "dropout" else "channel"}


def test_baseline_refusals() -> None:
    v2 = SearchSpace.from_name("conv2-3")
    with pytest.raises(PatternError, match="v2 spaces only"):
        baseline_patterns("dropout", 0.1, SearchSpace.from_name("conv-3"))
    with pytest.raises(PatternError, match="not on the v2 rate grid"):
        baseline_patterns("dropout", 0.22, v2)
    with pytest.raises(PatternError, match="--block"):
        baseline_patterns("dropblock", 0.1, v2, None, (16, 8, 4))
    with pytest.raises(PatternError, match="at most 3 px"):
        baseline_patterns("dropblock", 0.1, v2, 4, (16, 8, 4))
    with pytest.raises(PatternError, match="not a point"):
        baseline_patterns("variational", 0.1, v2)


def test_cli_pattern_baseline_and_show_json(tmp_path) -> None:
    """`pattern baseline` writes a v2 file; `pattern show --json` reports each site's
    expected and drawn drop and the op's geometry at its map side; a bad rate is a clear
    error with no file and no traceback."""
    from typer.testing import CliRunner

    from adsearch.cli.main import app

    runner = CliRunner()
    out = tmp_path / "db.json"
    res = runner.invoke(app, ["pattern", "baseline", "dropblock", "--rate", "0.2", "--block", "3",
                              "--space", "conv2-3", "--sides", "16,8,4", "-o", str(out)])
    assert res.exit_code == 0, res.output
    ps = load_patternset(out)
    assert ps.space.name == "conv2-3" and {p.kind for p in ps.patterns} == {"block"}
    res = runner.invoke(app, ["pattern", "show", str(out), "--json", "--shape", "4", "4"])
    doc = json.loads(res.stdout)
    for site in doc["sites"]:
        assert site["expected_drop"] == 0.2 and site["cap"] == 0.5
        assert 1 <= site["geometry"]["side_px"] <= 3 and 0.0 <= site["drop_fraction"] < 1.0
    bad = tmp_path / "bad.json"
    res = runner.invoke(app, ["pattern", "baseline", "dropout", "--rate", "0.22", "--space",
                              "conv2-3", "-o", str(bad)])
    assert res.exit_code != 0 and "rate grid" in res.output and "Traceback" not in res.output
    assert not bad.exists()


def test_canonical_v2_patterns_keep_what_acts() -> None:
    from adsearch.patterns.canonical import canonical_pattern

    a = ConvPattern2(rate=0.2, kind="element", side=0.5, rotate=30)
    b = ConvPattern2(rate=0.2, kind="element", side=0.125, shear_x=0.5)
    assert canonical_pattern(a) == canonical_pattern(b) != a
    t = ConvPattern2(rate=0.2, kind="tile", side=0.5, rotate=30)
    assert canonical_pattern(t) == t
    assert canonical_pattern(ConvPattern2(rate=0.0, kind="tile")) == ConvPattern2(rate=0.0)
    s = SeqPattern2(emb_rate=0.1, emb_kind="token", qkv_kind="group", groups=16)
    assert canonical_pattern(s) == SeqPattern2(emb_rate=0.1, emb_kind="token")
    rng = random.Random(0)
    for name in ("conv2-3", "seq2-2"):
        sp = SearchSpace.from_name(name)
        for _ in range(100):  # canonical is idempotent and stays in the space
            c = [canonical_pattern(p) for p in sp.sample(rng)]
            assert [canonical_pattern(p) for p in c] == c and sp.decode(sp.encode(c)) == c
