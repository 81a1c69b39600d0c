"""Wide Residual Networks (Zagoruyko & Komodakis 2016) for CIFAR, with dropout sites.

WRN-d-k: depth ``d = 6n + 4`` (``n`` pre-activation basic blocks in each of 3 groups), width
factor ``k`` (group widths 16k, 32k, 64k). The paper searches on WRN-28-2 and reports on
WRN-28-10.

Dropout sites (**paper**: patterns act on the outputs of batch-norm layers; **ours**: the
grouping). The search space is ``conv-3``: site ``g`` (0, 1, 2) is group ``g``; its pattern
acts after *both* batch norms of every block of that group (``bn1`` and ``bn2``, before
their ReLU, which commutes with a 0/1 mask times a positive scale). A pattern whose
``residual`` flag is set also acts on the block's shortcut output (the identity or the 1x1
projection) before the addition. The stem conv and the final batch norm before pooling are
not sites. A baseline dict acts after every block batch norm (not on the shortcut).

Shapes: input ``(N, 3, H, W)`` float (normalised), output logits ``(N, num_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adsearch.errors import ConfigError
from adsearch.models.sites import Spec, conv_residual, drop_module, regularizer_for_sites
from adsearch.patterns import SearchSpace


@dataclass(frozen=True)
class WRNConfig:
    depth: int = 28  # 6n + 4: n basic blocks per group (28 -> 4, 16 -> 2, 10 -> 1)
    width: int = 2  # width factor k: groups have 16k, 32k, 64k channels
    num_classes: int = 10  # output logits
    stem_channels: int = 16  # channels of the first 3x3 conv


def get_default_config() -> WRNConfig:
    """WRN-28-2, the paper's search model."""
    return WRNConfig()


class WideBasic(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus shortcut.

    ``drop1``/``drop2`` act after ``bn1``/``bn2``; ``drop_res`` on the shortcut output.
    """

    def __init__(self, cin: int, cout: int, stride: int, spec: Spec) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.drop1 = drop_module(spec)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop2 = drop_module(spec)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.drop_res = drop_module(spec) if conv_residual(spec) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.bn1(x)
        out = self.conv1(F.relu(self.drop1(a)))
        out = self.conv2(F.relu(self.drop2(self.bn2(out))))
        # The shortcut sees the undropped pre-activation: only the residual flag drops it.
        sc = x if self.shortcut is None else self.shortcut(F.relu(a))
        return out + self.drop_res(sc)


class WideResNet(nn.Module):
    """WRN-d-k taking one ``regularizer`` (see :mod:`adsearch.models.sites`)."""

    def __init__(self, config: WRNConfig, regularizer: Any = None) -> None:
        super().__init__()
        if (config.depth - 4) % 6 or config.depth < 10:
            raise ConfigError(f"WRN depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {config.depth}")
        if config.width < 1:
            raise ConfigError(f"WRN width factor must be >= 1, got {config.width}")
        self.config = config
        self.space = SearchSpace("conv", 3)
        self.num_sites = self.space.num_sites
        specs = regularizer_for_sites(regularizer, self.space)
        n = (config.depth - 4) // 6
        widths = [16 * config.width, 32 * config.width, 64 * config.width]
        self.stem = nn.Conv2d(3, config.stem_channels, 3, 1, 1, bias=False)
        groups: list[nn.Module] = []
        cin = config.stem_channels
        for g, (w, s) in enumerate(zip(widths, (1, 2, 2), strict=True)):
            blocks = [WideBasic(cin if i == 0 else w, w, s if i == 0 else 1, specs[g]) for i in range(n)]
            groups.append(nn.Sequential(*blocks))
            cin = w
        self.groups = nn.ModuleList(groups)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, config.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (N, 3, H, W) -> logits (N, num_classes)."""
        h = self.stem(x)
        for g in self.groups:
            h = g(h)
        h = F.relu(self.bn(h))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))

    def site_modules(self) -> list[list[nn.Module]]:
        """For each site, the dropout modules it owns (for tests and inspection)."""
        out: list[list[nn.Module]] = []
        for g in self.groups:
            mods: list[nn.Module] = []
            assert isinstance(g, nn.Sequential)
            for b in g:
                assert isinstance(b, WideBasic)
                mods += [b.drop1, b.drop2] + ([] if isinstance(b.drop_res, nn.Identity) else [b.drop_res])
            out.append(mods)
        return out


def wide_resnet(depth: int = 28, width: int = 2, num_classes: int = 10, regularizer: Any = None) -> WideResNet:
    """Build WRN-``depth``-``width`` with ``regularizer`` (PatternSet, patterns, dict or None)."""
    return WideResNet(WRNConfig(depth=depth, width=width, num_classes=num_classes), regularizer)
