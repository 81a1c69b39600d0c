"""ResNet-50 for ImageNet: torchvision's model with dropout sites added by module surgery.

We do not copy torchvision's code: :class:`ResNet50` is torchvision's ``ResNet`` class with
its ResNet-50 arguments; its constructor then replaces, in every Bottleneck, ``bn1``, ``bn2`` and ``bn3`` by
``nn.Sequential(bn, drop)`` (the pattern acts on batch-norm outputs, **paper**). The search
space is ``conv-4`` (**ours**): site ``s`` is stage ``layer{s+1}`` (3, 4, 6, 3 bottlenecks)
and its pattern acts after the three batch norms of each of its bottlenecks. A pattern with
``residual`` set also acts on each block's shortcut: ``downsample`` becomes
``nn.Sequential(downsample or nn.Identity(), drop)``. The stem's batch norm is not a site.

State-dict keys of wrapped batch norms gain a ``.0`` (``layer1.0.bn1.0.weight``).
Shapes: input ``(N, 3, H, W)``, output logits ``(N, num_classes)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from adsearch.models.sites import conv_residual, drop_module, regularizer_for_sites
from adsearch.patterns import SearchSpace

STAGES = ("layer1", "layer2", "layer3", "layer4")


class ResNet50(ResNet):
    """torchvision's ``ResNet(Bottleneck, [3, 4, 6, 3])`` (= ``resnet50``) plus dropout sites."""

    def __init__(self, num_classes: int = 1000, regularizer: Any = None) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
        self.space = SearchSpace("conv", len(STAGES))
        self.num_sites = self.space.num_sites
        specs = regularizer_for_sites(regularizer, self.space)
        for stage, spec in zip(STAGES, specs, strict=True):
            for block in getattr(self, stage):
                for name in ("bn1", "bn2", "bn3"):
                    setattr(block, name, nn.Sequential(getattr(block, name), drop_module(spec)))
                if conv_residual(spec):
                    block.downsample = nn.Sequential(block.downsample or nn.Identity(), drop_module(spec))

    def site_modules(self) -> list[list[nn.Module]]:
        """For each site (stage), the dropout modules it owns."""
        out: list[list[nn.Module]] = []
        for stage in STAGES:
            mods: list[nn.Module] = []
            for block in getattr(self, stage):
                mods += [block.bn1[1], block.bn2[1], block.bn3[1]]
                ds = block.downsample
                if isinstance(ds, nn.Sequential) and not isinstance(ds[-1], nn.BatchNorm2d):
                    mods.append(ds[-1])
            out.append(mods)
        return out


def resnet50(num_classes: int = 1000, regularizer: Any = None) -> ResNet50:
    """ResNet-50 (random init) with ``regularizer`` at its 4 stage sites (space ``conv-4``)."""
    return ResNet50(num_classes, regularizer)
