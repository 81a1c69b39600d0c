"""find_sites / attach on real torchvision architectures (weights=None) and nn.Transformer*.

Every ConvNet here has a total stride of 32, so at a 32x32 input its batch norms produce
maps of 16, 8, 4, 2 and 1 pixels (VGG: 32..2, since its pools follow the batch norms):
five resolutions, five stages, space conv-5. Per-stage counts are derived in the comments.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from adsearch.errors import ConfigError, PatternError
from adsearch.models.sites import regularizer_for_sites
from adsearch.ops import set_progress
from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, SeqPattern
from adsearch.sites import Site, attach, find_sites, space_for

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
# Drops a quarter of every map (1-pixel squares, period 2) and the shortcuts too.
PAT = ConvPattern(size=1, stride=1, repeat=None, share_c=False, residual=True)
# One placement per example for all channels: the cheap form, for the big models.
PAT_SHARED = ConvPattern(size=1, stride=1, repeat=None, share_c=True, residual=True)
SEQ = [
    SeqPattern(size=1, stride=1, mask="token", sites=("emb", "qkv", "attn_out")),
    SeqPattern(
        size=1, stride=1, mask="group", groups=2, sites=("ffn_hidden", "ffn_out", "residual")
    ),
]

CONV_MODELS: dict[str, tuple[Callable[[], nn.Module], list[int] | None]] = {
    # BasicBlock x2 per layer, 2 BNs each; layer2-4's downsample BN is a shortcut: 1,4,4,4,4
    "resnet18": (lambda: torchvision.models.resnet18(weights=None), [1, 4, 4, 4, 4]),
    # Bottleneck (stride in conv2): a stage's first block runs bn1 at the previous
    # resolution: 1 | 3*3+1 | 2+3*3+1 | 2+5*3+1 | 2+2*3
    "resnet50": (lambda: torchvision.models.resnet50(weights=None), [1, 10, 12, 18, 8]),
    "wide_resnet50_2": (
        lambda: torchvision.models.wide_resnet50_2(weights=None),
        [1, 10, 12, 18, 8],
    ),
    # The counts of the rest follow their block lists; we check the sum against the model.
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), None),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), None),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(weights=None), None),
    # stem norm0 | 6 layers x 2 + transition norm | 12x2+1 | 24x2+1 | 16x2+norm5
    "densenet121": (lambda: torchvision.models.densenet121(weights=None), [1, 13, 25, 49, 33]),
    # 8 convs with BN; pools after BN 1, 2, 4, 6: 1 | 1 | 2 | 2 | 2
    "vgg11_bn": (lambda: torchvision.models.vgg11_bn(weights=None), [1, 1, 2, 2, 2]),
    "regnet_y_400mf": (lambda: torchvision.models.regnet_y_400mf(weights=None), None),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(weights=None), None),
}


def _forward(model: nn.Module, x: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


def _run(
    model: nn.Module, x: torch.Tensor | tuple[torch.Tensor, ...], train: bool, seed: int = 1
) -> torch.Tensor:
    model.train(train)
    torch.manual_seed(seed)
    with torch.no_grad():
        return _forward(model, x)


def _check_attach_cycle(
    model: nn.Module, x: torch.Tensor | tuple[torch.Tensor, ...], regularizer: object
) -> list[Site]:
    """Train forward+backward, eval identity, detach restores outputs bit for bit; returns
    the site table the attachment used."""
    keys = list(model.state_dict())
    # Train-mode passes update batch-norm running stats; nothing here changes parameters.
    state = {k: v.clone() for k, v in model.named_buffers()}
    classes = {n: type(m) for n, m in model.named_modules()}
    ref_eval = _run(model, x, train=False)
    ref_train = _run(model, x, train=True)
    model.load_state_dict(state, strict=False)

    att = attach(model, regularizer, x)
    assert att.placements, "no op was inserted"
    assert list(model.state_dict()) == keys, "attach changed the state_dict keys"
    assert torch.equal(_run(model, x, train=False), ref_eval), "eval mode is not the identity"
    model.load_state_dict(state, strict=False)
    model.train()
    torch.manual_seed(1)
    out = _forward(model, x)
    assert not torch.equal(out.detach(), ref_train), "the ops did not act in train mode"
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    att.detach()
    assert not att.attached
    assert {n: type(m) for n, m in model.named_modules()} == classes
    model.load_state_dict(state, strict=False)
    assert torch.equal(_run(model, x, train=False), ref_eval)
    model.load_state_dict(state, strict=False)
    assert torch.equal(_run(model, x, train=True), ref_train)
    return list(att.sites)


@pytest.mark.parametrize("name", list(CONV_MODELS))
def test_torchvision_convnets(name: str) -> None:
    build, per_stage = CONV_MODELS[name]
    torch.manual_seed(0)
    model = build()
    sites = _check_attach_cycle(model, X, PatternSet(SearchSpace("conv", 5), [PAT_SHARED] * 5))
    assert space_for(sites) == SearchSpace("conv", 5)
    assert [s.shape for s in sites] == (
        [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
        if name == "vgg11_bn"
        else [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    )
    if per_stage is not None:
        assert [len(s.modules) for s in sites] == per_stage
    # every BatchNorm2d is a site member, exactly once (shortcut BNs via their block)
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    listed = [n for s in sites for n in s.modules]
    shortcut_bns = [n for n in bns if ".downsample." in n]
    assert sorted(listed + shortcut_bns) == sorted(bns)
    assert (
        sites[0].channels[0]
        == next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).num_features
    )


def test_resnet_residual_acts_on_downsample_and_identity() -> None:
    model = torchvision.models.resnet18(weights=None)
    sites = find_sites(model, X[:1])
    assert sites[1].shortcuts == ("layer1.0", "layer1.1")  # identity shortcuts
    assert sites[2].shortcuts == ("layer2.0", "layer2.1")  # layer2.0 has a downsample
    no_res = ConvPattern(size=1, stride=1, repeat=None, residual=False)
    with attach(model, [no_res] * 5, X) as att:
        assert not any("downsample" in p for p in att.placements)
    with attach(model, [PAT] * 5, X) as att:
        assert "layer1.0.downsample" in att.placements  # identity replaced by the op
        assert "layer2.0.downsample" in att.placements  # the op after the downsample branch
        assert model.layer1[0].downsample is not None
        assert "layer2.0.downsample.1" not in att.placements  # shortcut BN only via residual
    assert model.layer1[0].downsample is None
    assert isinstance(model.layer2[0].downsample, nn.Sequential)


def test_vit_b_16_small_image() -> None:
    # vit_b_16 at 32x32: 2x2 patches of 16 + class token = 5 tokens of width 768.
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, image_size=32)
    nn.init.normal_(model.heads.head.weight)  # zero-initialised: outputs would all be 0
    sites = _check_attach_cycle(model, X, PatternSet(SearchSpace("seq", 2), SEQ))
    assert space_for(sites) == SearchSpace("seq", 2)
    # emb (encoder.dropout) + the 5 sub-layers of 12 encoder blocks
    assert [s.name for s in sites] == [
        "emb",
        "qkv",
        "attn_out",
        "ffn_hidden",
        "ffn_out",
        "residual",
    ]
    assert [len(s.modules) for s in sites] == [1, 12, 12, 12, 12, 12]
    assert sites[3].shape == (2, 5, 3072) and sites[0].channels == (768,)


@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_encoder(batch_first: bool) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=batch_first)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    x = torch.randn((2, 7, 16) if batch_first else (7, 2, 16))
    sites = _check_attach_cycle(model, x, SEQ)
    # no embedding: qkv, attn_out, ffn_hidden, ffn_out, residual of 2 layers; shapes batch first
    assert [(s.name, len(s.modules)) for s in sites] == [
        ("qkv", 2),
        ("attn_out", 2),
        ("ffn_hidden", 2),
        ("ffn_out", 2),
        ("residual", 2),
    ]
    assert sites[2].shape == (2, 7, 32)
    if batch_first:  # inference fast path (no hooks, no grad) stays bit for bit
        model.eval()
        with torch.no_grad():
            ref = model(x)
            with attach(model, SEQ, x):
                assert torch.equal(model(x), ref)


def test_transformer_decoder_time_first() -> None:
    torch.manual_seed(0)
    model = nn.TransformerDecoder(nn.TransformerDecoderLayer(16, 2, 32, batch_first=False), 2)
    tgt, mem = torch.randn(5, 2, 16), torch.randn(6, 2, 16)  # (T, N, D) and (S, N, D)
    sites = _check_attach_cycle(model, (tgt, mem), SEQ)
    # 2 layers: self- and cross-attention each for qkv and attn_out
    assert [(s.name, len(s.modules)) for s in sites] == [
        ("qkv", 4),
        ("attn_out", 4),
        ("ffn_hidden", 2),
        ("ffn_out", 2),
        ("residual", 2),
    ]
    assert sites[0].shape == (2, 5, 16) and sites[2].shape == (2, 5, 32)


class _TinySeq2Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok = nn.Embedding(50, 16)
        self.core = nn.Transformer(16, 2, 1, 1, 32, batch_first=True)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return self.core(self.tok(src), self.tok(tgt))


def test_decoder_layers_and_embedding() -> None:
    torch.manual_seed(0)
    model = _TinySeq2Seq()
    src, tgt = torch.randint(0, 50, (2, 6)), torch.randint(0, 50, (2, 5))
    sites = {s.name: s for s in find_sites(model, (src, tgt))}
    assert sites["emb"].modules == ("tok",)
    # self-attention of the encoder layer, self- and cross-attention of the decoder layer
    assert sites["qkv"].modules == (
        "core.encoder.layers.0.self_attn",
        "core.decoder.layers.0.self_attn",
        "core.decoder.layers.0.multihead_attn",
    )
    assert sites["ffn_out"].modules == (
        "core.encoder.layers.0.dropout2",
        "core.decoder.layers.0.dropout3",
    )
    model.train()
    with attach(model, SEQ, (src, tgt)) as att:
        assert len(att.placements) == 1 + 3 + 3 + 2 + 2 + 2
        model(src, tgt).sum().backward()


def test_inplace_relu_after_op() -> None:
    # torchvision's resnets run ReLU(inplace=True) on every batch-norm output
    model = torchvision.models.resnet18(weights=None).train()
    assert model.relu.inplace
    with attach(model, [PAT] * 5, X):
        model(X).sum().backward()
    assert model.conv1.weight.grad is not None


def test_wrong_site_count_is_refused() -> None:
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(PatternError, match=r"space conv-4 \(4 site\(s\)\).*5 site\(s\)"):
        attach(model, PatternSet(SearchSpace("conv", 4), [PAT] * 4), X)
    with pytest.raises(PatternError, match=r"3 pattern\(s\).*5 site\(s\)"):
        attach(model, [PAT] * 3, X)
    assert not any("_adsearch_insert" in m.__dict__ for m in model.modules())  # nothing left
    with pytest.raises(PatternError, match="space seq-2"):
        attach(model, PatternSet(SearchSpace("seq", 2), SEQ), X)
    with attach(model, None, X) as att:  # None inserts nothing
        assert att.placements == ()


def test_no_site_and_double_attach_errors() -> None:
    with pytest.raises(ConfigError, match="no BatchNorm2d and no recognised Transformer"):
        find_sites(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), X)
    with pytest.raises(ConfigError, match="dry-run forward pass failed"):
        find_sites(torchvision.models.resnet18(weights=None), torch.zeros(1, 5, 32, 32))
    model = torchvision.models.resnet18(weights=None)
    with attach(model, [PAT] * 5, X):
        with pytest.raises(ConfigError, match="already has adsearch ops"):
            attach(model, [PAT] * 5, X)


def test_baseline_dict_and_train_eval_follow_model() -> None:
    model = torchvision.models.resnet18(weights=None)
    with attach(model, {"kind": "dropblock", "drop_prob": 0.2, "block_size": 3}, X) as att:
        assert len(att.placements) == 17  # 1 + 4 * 4 batch norms, no shortcut for a dict
        assert regularizer_for_sites(None, att.space) == [None] * 5
        drops = [m for n, m in model.named_modules() if n.endswith("adsearch_drop")]
        assert len(drops) == 17
        assert set_progress(model, 0.5) == 17  # DropBlock's schedule reaches every op
        model.eval()
        assert not any(d.training for d in drops)
        model.train()
        assert all(d.training for d in drops)


def test_off_sites_file_fits_the_plain_space() -> None:
    model = torchvision.models.resnet18(weights=None)
    off = ConvPattern(off=True)
    ps = PatternSet(SearchSpace("conv", 5, off=True), [off, PAT, off, off, off])
    with attach(model, ps, X) as att:
        assert att.space.name == "conv-5"
        # stage 1 only: its 4 batch norms and its 2 identity shortcuts
        assert len(att.placements) == 6 and all(p.startswith("layer1.") for p in att.placements)


def test_default_input_is_a_224_image_from_the_first_conv() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 8, 3, stride=2),
        nn.BatchNorm2d(8),
        nn.BatchNorm2d(8),
    )
    sites = find_sites(model)  # (1, 1, 224, 224): 112x112, then (112 - 3) // 2 + 1 = 55
    assert [(s.shape, s.modules, s.channels) for s in sites] == [
        ((112, 112), ("1",), (4,)),
        ((55, 55), ("4", "5"), (8,)),
    ]
