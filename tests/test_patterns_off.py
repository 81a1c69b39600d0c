"""The "off" choice per site (**ours**): spaces ``<kind>-<sites>+off``, pattern files from
before the change still loading and meaning what they meant, the ops treating off as
identity, and both controllers emitting it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from adsearch.controller import make_controller
from adsearch.errors import PatternError
from adsearch.models.sites import regularizer_for_sites
from adsearch.ops import make_dropout, render_mask
from adsearch.ops.baselines import Identity
from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, SeqPattern
from adsearch.patterns.patternset import load_patternset, save_patternset

FIXTURES = Path(__file__).parent / "fixtures"
# written by the code before the off choice existed (commit 1b1d2ff), with these encodings
OLD = {
    "conv-3": ("8f40e18dc294ede0", [1, 1, 2, 0, 3, 3, 1, 1, 6, 3, 0, 3, 0, 3, 1, 0, 5, 7, 2, 1, 0, 2, 0, 0]),
    "seq-2": ("017bc85fc3f4f464", [0, 0, 0, 1, 0, 47, 2, 2, 2, 0, 0, 37]),
}


@pytest.mark.parametrize("name", sorted(OLD))
def test_files_exported_before_off_load_and_mean_the_same(name: str, tmp_path: Path) -> None:
    path = FIXTURES / f"patterns_v1_{name}.json"
    ps = load_patternset(path)
    fingerprint, tokens = OLD[name]
    assert ps.space == SearchSpace.from_name(name) and not ps.space.off
    assert ps.space.fingerprint() == fingerprint
    assert ps.space.encode(ps.patterns) == tokens
    assert not any(p.off for p in ps.patterns)
    # written back, the file is the same document: same fields, same pattern hashes
    again = save_patternset(ps, tmp_path / "again.json")
    assert json.loads(again.read_text()) == json.loads(path.read_text())


def test_off_space_names_tokens_and_fingerprint() -> None:
    old, new = SearchSpace.from_name("conv-3"), SearchSpace.from_name("conv-3+off")
    assert new.off and new.name == "conv-3+off" and SearchSpace.from_name(new.name) == new
    assert new.num_tokens == old.num_tokens + 3 and new.fields[-1] == "off"
    assert new.fingerprint() != old.fingerprint() == OLD["conv-3"][0]
    assert new.same_sites(old) and not new.same_sites(SearchSpace("conv", 2, off=True))
    seq = SearchSpace.from_name("seq-2+off")
    assert seq.num_tokens == 14 and seq.fingerprint() != OLD["seq-2"][0]
    with pytest.raises(PatternError, match=r"\+off"):
        SearchSpace.from_name("conv+off")


def test_an_off_site_needs_an_off_space(tmp_path: Path) -> None:
    pats = [ConvPattern(off=True), ConvPattern(), ConvPattern(size=5)]
    with pytest.raises(PatternError, match="no off choice; use space conv-3\\+off"):
        SearchSpace.from_name("conv-3").encode(pats)
    space = SearchSpace.from_name("conv-3+off")
    tokens = space.encode(pats)
    assert space.decode(tokens) == pats and tokens[8] == 1 and tokens[17] == 0
    path = save_patternset(PatternSet(space, pats), tmp_path / "off.json")
    doc = json.loads(path.read_text())
    assert doc["space"] == "conv-3+off" and doc["patterns"][0]["off"] is True
    assert "off" not in doc["patterns"][1]  # False is left out: the old format
    assert load_patternset(path).patterns == tuple(pats)
    doc["space"] = "conv-3"
    doc.pop("space_fingerprint")
    path.write_text(json.dumps(doc))
    with pytest.raises(PatternError, match="site 0 is off"):
        load_patternset(path)
    assert SeqPattern.from_dict({**SeqPattern().to_dict(), "off": True}).drop_fraction() == 0.0
    assert ConvPattern(off=True).drop_fraction() == 0.0


def test_ops_treat_off_as_identity() -> None:
    x = torch.randn(2, 4, 8, 8)
    for pat in (ConvPattern(size=7, stride=1, off=True), SeqPattern(size=16, stride=1, off=True)):
        assert isinstance(make_dropout(pat), Identity)
    conv = make_dropout({"kind": "pattern", "pattern": {**ConvPattern(size=7, stride=1).to_dict(), "off": True}})
    assert isinstance(conv, Identity)
    assert bool(render_mask(ConvPattern(size=7, stride=1, off=True), (8, 8)).all())
    assert not bool(render_mask(ConvPattern(size=7, stride=1), (8, 8)).all())
    from adsearch.ops.conv import pattern_dropout_2d

    assert pattern_dropout_2d(x, ConvPattern(size=7, stride=1, off=True), True) is x
    specs = regularizer_for_sites([ConvPattern(off=True), ConvPattern(), ConvPattern()], SearchSpace("conv", 3))
    assert specs[0] is None and specs[1] == ConvPattern()
    ps = PatternSet(SearchSpace("conv", 3, off=True), [ConvPattern(off=True)] * 3)
    assert regularizer_for_sites(ps, SearchSpace("conv", 3)) == [None, None, None]


@pytest.mark.parametrize("kind", ["random", "transformer"])
def test_controllers_emit_off(kind: str) -> None:
    space = SearchSpace.from_name("seq-2+off")
    ctrl = make_controller(kind, space, seed=0)
    samples = ctrl.sample(64)
    offs = [p.off for s in samples for p in s.patterns]
    assert any(offs) and not all(offs)
    assert all(list(space.decode(s.tokens)) == list(s.patterns) for s in samples)


def test_a_search_may_use_the_off_space_of_its_task(tmp_path: Path) -> None:
    from adsearch.daemon.config import SearchConfig
    from adsearch.daemon.launch import create_search
    from adsearch.daemon.rundir import RunDir
    from adsearch.errors import ConfigError
    from adsearch.store import Store

    run = create_search(SearchConfig(name="o", task="cifar10", space="conv-3+off"), RunDir(tmp_path / "o"))
    store = Store(run.store_url(), readonly=True)
    try:
        assert store.get_search("o").config["space"] == "conv-3+off"
    finally:
        store.close()
    with pytest.raises(ConfigError, match=r"or conv-3\+off"):
        create_search(SearchConfig(name="q", task="cifar10", space="conv-2+off"), RunDir(tmp_path / "q"))


def test_status_shows_an_off_site_as_off() -> None:
    """An off site drops nothing; the status table says so rather than print its inert fields."""
    from adsearch.views.status import _pattern_text

    conv = [{"size": 7, "stride": 12, "repeat": 4, "rotate": 0, "off": True},
            {"size": 3, "stride": 4, "repeat": None, "rotate": 15}]
    assert _pattern_text(conv) == "off  3/4xall r15"
    seq = [{"size": 4, "stride": 8, "mask": "token", "off": True}, {"size": 16, "stride": 4, "mask": "group"}]
    assert _pattern_text(seq) == "off  size=16,stride=4,mask=group"
