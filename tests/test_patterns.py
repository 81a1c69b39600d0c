"""Pure-data tests of adsearch.patterns: encode/decode, JSON round-trips, bad input."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adsearch.errors import PatternError
from adsearch.patterns import (
    CONV_VALUES,
    SEQ_VALUES,
    ConvPattern,
    PatternSet,
    Provenance,
    SearchSpace,
    SeqPattern,
    load_patternset,
    save_patternset,
)

SPACES = st.builds(SearchSpace, st.sampled_from(["conv", "seq"]), st.integers(1, 6))


@st.composite
def space_and_tokens(draw: st.DrawFn) -> tuple[SearchSpace, list[int]]:
    space = draw(SPACES)
    return space, [draw(st.integers(0, c - 1)) for c in space.choices()]


@given(space_and_tokens())
def test_decode_encode_round_trip_over_whole_space(st_tokens: tuple[SearchSpace, list[int]]) -> None:
    space, tokens = st_tokens
    patterns = space.decode(tokens)
    assert len(patterns) == space.num_sites
    assert all(isinstance(p, space.pattern_cls) for p in patterns)
    assert space.encode(patterns) == tokens


@given(space_and_tokens())
def test_pattern_json_round_trip(st_tokens: tuple[SearchSpace, list[int]]) -> None:
    space, tokens = st_tokens
    for p in space.decode(tokens):
        cls = type(p)
        assert cls.from_json(p.to_json()) == p
        assert cls.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@settings(max_examples=40)
@given(space_and_tokens(), st.none() | st.text(max_size=12), st.none() | st.integers(0, 10**6),
       st.none() | st.floats(-1e6, 1e6, allow_nan=False))
def test_patternset_file_round_trip(tmp_path_factory: pytest.TempPathFactory, st_tokens: tuple[SearchSpace, list[int]],
                                    search: str | None, trial: int | None, reward: float | None) -> None:
    space, tokens = st_tokens
    ps = PatternSet(space, tuple(space.decode(tokens)), Provenance(search, trial, reward))
    path = tmp_path_factory.mktemp("ps") / "best.json"
    save_patternset(ps, path)
    back = load_patternset(path)
    assert back == ps
    assert PatternSet.from_json(ps.to_json()) == ps
    back.check_space(space)


def test_space_choices_match_value_tables() -> None:
    conv, seq = SearchSpace("conv", 3), SearchSpace("seq", 2)
    assert conv.num_tokens == 3 * len(CONV_VALUES)
    assert conv.choices()[: len(CONV_VALUES)] == [len(v) for v in CONV_VALUES.values()]
    assert seq.choices() == [len(v) for v in SEQ_VALUES.values()] * 2
    assert conv.token_field(9) == (1, "stride")
    assert SearchSpace.from_name("conv-3") == conv
    assert conv.fingerprint() != SearchSpace("conv", 2).fingerprint()


def test_sample_is_seeded_and_in_space() -> None:
    space = SearchSpace("conv", 3)
    a = space.sample(random.Random(5))
    assert a == space.sample(random.Random(5))
    assert space.decode(space.encode(a)) == a


def test_drop_fraction_analytic() -> None:
    assert ConvPattern(size=3, stride=4).drop_fraction() == pytest.approx(9 / 49)
    assert ConvPattern(size=2, stride=2, repeat=3).drop_fraction(32, 32) == pytest.approx(36 / 1024)
    assert SeqPattern(size=2, stride=8, mask="group", groups=4).drop_fraction() == pytest.approx(0.05)
    assert SeqPattern(size=4, stride=4, mask="token").drop_fraction() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="height and width"):
        ConvPattern(repeat=2).drop_fraction()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "invalid JSON"),
        ('{"size": 3}', "missing field"),
        ('{"size": 3, "stride": 4, "repeat": null, "rotate": 0, "shear_x": 0, "shear_y": 0, '
         '"share_c": false, "residual": false, "colour": 1}', "unknown field.*'colour'"),
        ('{"size": 9, "stride": 4, "repeat": null, "rotate": 0, "shear_x": 0, "shear_y": 0, '
         '"share_c": false, "residual": false}', "ConvPattern.size: invalid value 9; allowed values are 1, 2"),
        ('{"size": 3, "stride": 4, "repeat": null, "rotate": 0, "shear_x": 0, "shear_y": 0, '
         '"share_c": 1, "residual": false}', "share_c: invalid value 1"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_conv_pattern_bad_json(text: str, match: str) -> None:
    with pytest.raises(PatternError, match=match):
        ConvPattern.from_json(text)


def test_seq_pattern_bad_values() -> None:
    with pytest.raises(PatternError, match="unknown sub-layer.*'mlp'.*allowed sub-layers are emb"):
        SeqPattern(sites=("mlp",))
    with pytest.raises(PatternError, match="at least one"):
        SeqPattern(sites=())
    with pytest.raises(PatternError, match="mask: invalid value 'row'"):
        SeqPattern(mask="row")
    with pytest.raises(PatternError, match="invalid JSON"):
        SeqPattern.from_json("{")


def test_space_bad_input() -> None:
    with pytest.raises(PatternError, match="kind: invalid value 'rnn'.*'conv', 'seq'"):
        SearchSpace("rnn", 2)
    with pytest.raises(PatternError, match="invalid space name 'conv'"):
        SearchSpace.from_name("conv")
    space = SearchSpace("conv", 1)
    with pytest.raises(PatternError, match="expected 8 tokens, got 3"):
        space.decode([0, 0, 0])
    with pytest.raises(PatternError, match=r"token 0 \(site 0, field size\) is 7; allowed values are 0..6"):
        space.decode([7] + [0] * 7)
    with pytest.raises(PatternError, match="site 0 holds a SeqPattern"):
        space.encode([SeqPattern()])


def _file(base: str = "conv-1", **over: object) -> str:
    sp = SearchSpace.from_name(base)
    data = PatternSet(sp, tuple(sp.sample(random.Random(0)))).to_dict()
    data.update(over)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nope", "invalid JSON"),
        (_file(format="other"), "not an adsearch pattern file"),
        (_file(format_version=7), "format_version 7 is not supported"),
        (_file(extra=1), "unknown key.*'extra'"),
        (_file(space="conv-x"), "invalid space name"),
        (_file(space_fingerprint="0000"), "different value table"),
        (_file(patterns={}), "'patterns' must be a list"),
        (_file(patterns=[]), "expected 1 pattern"),
    ],
)
def test_patternset_bad_files(text: str, match: str) -> None:
    with pytest.raises(PatternError, match=match):
        PatternSet.from_json(text)


def test_patternset_wrong_space_and_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ps = PatternSet.from_json(_file("conv-1"))
    with pytest.raises(PatternError, match="written for space conv-1, but this model needs space conv-3"):
        ps.check_space(SearchSpace("conv", 3))
    with pytest.raises(PatternError, match="does not exist"):
        load_patternset(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(_file("conv-1", space="seq-1"))
    with pytest.raises(PatternError, match=f"pattern file {bad}"):
        load_patternset(bad)
