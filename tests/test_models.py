"""Target networks: site counts, the one regularizer argument, and patterns acting at every
site (checked with forward hooks on the real ops)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adsearch.errors import ConfigError, PatternError
from adsearch.models import (
    LMConfig,
    Seq2SeqConfig,
    Seq2SeqTransformer,
    TransformerLM,
    regularizer_for_sites,
    resnet50,
    seq_sublayer_specs,
    wide_resnet,
)
from adsearch.ops import Dropout, Identity, PatternDropout2d, PatternDropoutSeq, set_progress
from adsearch.patterns import (
    ConvPattern,
    PatternSet,
    SearchSpace,
    SeqPattern,
    load_patternset,
    save_patternset,
)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _record(mods: list[nn.Module]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list]:
    """Hook every module; returns the (input, output) log and the handles."""
    log: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda m, i, o: log.append((i[0].detach(), o.detach()))) for m in mods]
    return log, handles


def _zeroed(inp: torch.Tensor, out: torch.Tensor) -> float:
    """Fraction of nonzero inputs that the module set to zero."""
    nz = inp != 0
    return float(((out == 0) & nz).sum()) / max(1, int(nz.sum()))


# ----------------------------------------------------------------------------- regularizer_for_sites
def test_regularizer_for_sites_forms() -> None:
    space = SearchSpace("conv", 3)
    pats = [ConvPattern(), ConvPattern(size=2), ConvPattern(residual=True)]
    assert regularizer_for_sites(None, space) == [None, None, None]
    assert regularizer_for_sites({"kind": "dropout", "drop_prob": 0.2}, space) == [{"kind": "dropout", "drop_prob": 0.2}] * 3
    assert regularizer_for_sites(pats, space) == pats
    assert regularizer_for_sites(PatternSet(space, pats), space) == pats
    assert regularizer_for_sites({"kind": "pattern", "pattern": ConvPattern().to_dict()}, space) == [ConvPattern()] * 3


def test_regularizer_for_sites_refusals() -> None:
    conv3 = SearchSpace("conv", 3)
    with pytest.raises(PatternError, match="seq-2.*conv-3"):
        regularizer_for_sites(PatternSet(SearchSpace("seq", 2), [SeqPattern(), SeqPattern()]), conv3)
    with pytest.raises(PatternError, match="expected 3 pattern"):
        regularizer_for_sites([ConvPattern()] * 2, conv3)
    with pytest.raises(PatternError, match="SeqPattern"):
        regularizer_for_sites([ConvPattern()] * 2, SearchSpace("seq", 2))
    with pytest.raises(PatternError, match="one per site"):
        regularizer_for_sites(ConvPattern(), conv3)
    with pytest.raises(ConfigError, match="kind"):
        regularizer_for_sites({"drop_prob": 0.1}, conv3)
    with pytest.raises(ConfigError, match="unsupported regularizer"):
        regularizer_for_sites(0.1, conv3)


# ----------------------------------------------------------------------------- WRN
def test_wrn_sites_and_patterns_act_at_each() -> None:
    pats = [ConvPattern(size=3, stride=2), ConvPattern(size=2, stride=2, share_c=True), ConvPattern(size=1, stride=1, residual=True)]
    m = wide_resnet(16, 1, 10, pats)  # n = 2 blocks per group
    assert m.space == SearchSpace("conv", 3) and m.num_sites == 3
    sites = m.site_modules()
    # two BN sites per block; group 3 also drops both shortcuts (residual flag)
    assert [len(s) for s in sites] == [4, 4, 6]
    for site, pat in zip(sites, pats, strict=True):
        assert all(isinstance(mod, PatternDropout2d) and mod.pattern == pat for mod in site)
    flat = [mod for s in sites for mod in s]
    log, handles = _record(flat)
    m.train()
    m(torch.randn(4, 3, 32, 32))
    assert len(log) == len(flat)  # every site module ran once
    for (inp, out), mod in zip(log, flat, strict=True):
        expect = mod.pattern.drop_fraction()
        assert abs(_zeroed(inp, out) - expect) < 0.2, (mod.pattern, _zeroed(inp, out), expect)
    log.clear()
    m.eval()
    m(torch.randn(2, 3, 32, 32))
    assert len(log) == len(flat)  # the sites ran (else the check below holds vacuously)
    assert all(torch.equal(i, o) for i, o in log)  # identity in eval mode
    for h in handles:
        h.remove()


def test_wrn_baselines_and_none() -> None:
    m = wide_resnet(10, 1, 10, {"kind": "dropout", "drop_prob": 0.3})
    assert [len(s) for s in m.site_modules()] == [2, 2, 2]
    assert all(isinstance(x, Dropout) for s in m.site_modules() for x in s)
    m = wide_resnet(10, 1, 10, {"kind": "dropblock", "drop_prob": 0.2, "block_size": 3})
    assert set_progress(m, 0.5) == 6  # every DropBlock site follows the schedule
    m = wide_resnet(10, 1, 10, None)
    assert all(isinstance(x, Identity) for s in m.site_modules() for x in s)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        wide_resnet(12, 1)


def test_resnet50_stage_sites_by_surgery() -> None:
    pats = [ConvPattern(size=2, stride=2)] * 3 + [ConvPattern(size=1, stride=1, residual=True)]
    m = resnet50(10, pats)
    assert m.space.name == "conv-4" and m.num_sites == 4
    sites = m.site_modules()
    assert [len(s) for s in sites] == [9, 12, 18, 9 + 3]
    assert isinstance(m.layer1[0].bn1[0], nn.BatchNorm2d) and m.layer1[0].bn1[1] is sites[0][0]
    log, handles = _record([x for s in sites for x in s])
    m.train()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(log) == sum(len(s) for s in sites)
    assert all(_zeroed(i, o) > 0.05 for i, o in log)
    for h in handles:
        h.remove()


# ----------------------------------------------------------------------------- Transformers
SEQ_PATS = [SeqPattern(size=2, stride=2, mask="token", sites=("emb", "qkv")), SeqPattern(size=4, stride=4, mask="group", groups=2, sites=("qkv", "ffn_hidden", "residual"))]


def _sublayer_mods(model: nn.Module) -> dict[str, list[nn.Module]]:
    out: dict[str, list[nn.Module]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, PatternDropoutSeq):
            out.setdefault(name.split(".")[-1] if name.split(".")[-1] not in "01" else name.split(".")[-2], []).append(mod)
    return out


def test_lm_routes_each_pattern_to_its_sublayers() -> None:
    routed = seq_sublayer_specs(SEQ_PATS)
    assert routed["qkv"] == SEQ_PATS and routed["emb"] == [SEQ_PATS[0]] and routed["attn_out"] == []
    m = TransformerLM(LMConfig(vocab_size=50, block_size=16, n_layers=2, d_model=32, d_ff=64, n_heads=2), SEQ_PATS)
    assert m.space.name == "seq-2" and m.num_sites == 2
    mods = _sublayer_mods(m)
    # emb once; per layer: qkv chain of both patterns, ffn_hidden, residual; nothing else
    assert {k: len(v) for k, v in mods.items()} == {"emb": 1, "qkv": 4, "ffn_hidden": 2, "residual": 2}
    all_mods = [x for v in mods.values() for x in v]
    log, handles = _record(all_mods)
    m.train()
    logits, loss = m(torch.randint(0, 50, (4, 16)), torch.randint(0, 50, (4, 16)))
    assert logits.shape == (4, 16, 50) and torch.isfinite(loss)
    assert len(log) == 1 + 2 * (3 * 2 + 1 + 1)  # q, k, v each pass through both qkv patterns
    assert all(_zeroed(i, o) > 0.05 for i, o in log)
    for h in handles:
        h.remove()


def test_seq_baselines_apply_once_per_sublayer() -> None:
    m = TransformerLM(LMConfig(vocab_size=30, block_size=8, n_layers=1, d_model=16, d_ff=32, n_heads=2), {"kind": "variational", "drop_prob": 0.1})
    kinds = {n.split(".")[-1]: type(x).__name__ for n, x in m.named_modules() if n.split(".")[-1] in ("emb", "qkv", "attn_out", "ffn_hidden", "ffn_out", "residual")}
    assert kinds == {"emb": "VariationalDropout", "qkv": "Identity", "attn_out": "VariationalDropout", "ffn_hidden": "Identity", "ffn_out": "VariationalDropout", "residual": "Identity"}
    with pytest.raises(ConfigError, match="dropblock"):
        TransformerLM(LMConfig(vocab_size=30), {"kind": "dropblock"})
    with pytest.raises(PatternError):
        TransformerLM(LMConfig(vocab_size=30), [ConvPattern(), ConvPattern()])


def test_lm_pattern_file_applies_to_translation_model(tmp_path) -> None:
    path = save_patternset(PatternSet(SearchSpace("seq", 2), SEQ_PATS), tmp_path / "lm.json")
    ps = load_patternset(path)
    lm = TransformerLM(LMConfig(vocab_size=40, block_size=8, n_layers=1, d_model=16, d_ff=32, n_heads=2), ps)
    mt = Seq2SeqTransformer(Seq2SeqConfig(src_vocab=40, tgt_vocab=45, max_len=12, n_layers=1, d_model=16, d_ff=32, n_heads=2), ps)
    assert mt.space == lm.space
    mods = _sublayer_mods(mt)
    assert {k: len(v) for k, v in mods.items()} == {"emb": 1, "qkv": 4, "ffn_hidden": 2, "residual": 2}
    log, handles = _record([x for v in mods.values() for x in v])
    mt.train()
    src, tgt = torch.randint(4, 40, (3, 10)), torch.randint(4, 45, (3, 9))
    logits, loss = mt(src, tgt[:, :-1], tgt[:, 1:])
    assert logits.shape == (3, 8, 45) and torch.isfinite(loss)
    # emb runs on source and target; qkv: 3 (self) + 3 (cross) + 3 (encoder) per chain element
    assert len(log) == 2 + 2 * (3 + 6) + 2 + 2
    assert all(_zeroed(i, o) > 0.05 for i, o in log)
    for h in handles:
        h.remove()
    mt.eval()
    out = mt.greedy(src, bos_id=2, eos_id=3, max_new=8)
    assert out.shape[0] == 3 and out.shape[1] <= 8
