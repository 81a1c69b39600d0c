"""``torch.save(model)`` and ``copy.deepcopy`` of an attached model (issue 23 §4).

It failed with ``PicklingError: Can't pickle <class '...BatchNorm2d'>: it's not the same
object as ...`` (the swapped class has its base's name). Now the model round-trips attached:
the loaded model's ops act in train mode exactly as the original's (same seed, same
output), eval is the plain model's, and ``attachment_of(model).detach()`` restores it.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torchvision
from torch import nn

from adsearch.errors import ConfigError
from adsearch.patterns import ConvPattern, SeqPattern
from adsearch.sites import attach, attachment_of

torch.set_num_threads(1)
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
PATS = [ConvPattern(size=2, stride=2, residual=True)] * 5  # shortcuts (identity ones too)


def _saved_and_loaded(model: nn.Module) -> nn.Module:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded: nn.Module = torch.load(buf, weights_only=False)
    return loaded


def _train_out(model: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    model.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


@pytest.mark.parametrize("how", ["torch.save", "deepcopy"])
def test_attached_resnet_round_trips_with_its_ops(how: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    plain = copy.deepcopy(model)
    att = attach(model, PATS, X[:1])
    assert attachment_of(model) is att
    other = _saved_and_loaded(model) if how == "torch.save" else copy.deepcopy(model)
    handle = attachment_of(other)
    assert handle is not None and handle is not att and handle.model is other
    assert handle.placements == att.placements
    other.eval()
    plain.eval()
    assert torch.equal(other(X), plain(X))  # eval: the plain model, bit for bit
    # the ops act in train mode exactly as the original's (train mode normalises with the
    # batch's statistics, so the running ones that training updates play no part)
    assert torch.equal(_train_out(other, X, 1), _train_out(model, X, 1))
    assert not torch.equal(_train_out(other, X, 1), _train_out(plain, X, 1))
    handle.detach()
    assert attachment_of(other) is None and attachment_of(model) is att
    assert type(other.bn1) is nn.BatchNorm2d and other.layer1[0].downsample is None
    assert not any(n.startswith("adsearch_drop") for n, _ in other.named_modules())
    assert torch.equal(_train_out(other, X, 2), _train_out(plain, X, 2))
    att.detach()
    assert attachment_of(model) is None
    attach(other, PATS, X[:1]).detach()  # the loaded model can be attached again


def test_attached_transformer_round_trips() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    pats = [
        SeqPattern(size=2, stride=2, mask="group", groups=2, sites=("qkv", "ffn_hidden")),
        SeqPattern(size=1, stride=4, mask="token", sites=("residual",)),
    ]
    x = torch.randn(5, 3, 16)
    attach(model, pats, x)
    loaded = _saved_and_loaded(model)
    assert torch.equal(_train_out(loaded, x, 3), _train_out(model, x, 3))
    handle = attachment_of(loaded)
    assert handle is not None
    handle.detach()
    assert type(loaded.layers[0]) is nn.TransformerEncoderLayer


def test_attaching_twice_names_the_way_out() -> None:
    model = torchvision.models.resnet18(weights=None)
    attach(model, PATS, X[:1])
    loaded = _saved_and_loaded(model)
    with pytest.raises(ConfigError, match=r"attachment_of\(model\)\.detach\(\)"):
        attach(loaded, PATS, X[:1])
