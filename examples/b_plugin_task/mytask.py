"""A task plug-in that lives outside the adsearch package: a small ConvNet on CIFAR-10.

Search it (from the repository root; the folder of this file must be importable on every
host that runs children, here through PYTHONPATH)::

    PYTHONPATH=examples/b_plugin_task adsearch start --task mytask:MyTask --workers 1 \
        --budget-trials 40 --prune-at-epoch 1

The class implements the ``adsearch.tasks.Task`` protocol (docs/tasks.md): a config with
``to_dict()``, ``config_from_dict``, ``space`` and ``run_child``. The network has two stages
(32x32 and 16x16 feature maps); ``adsearch.sites`` finds one dropout site per stage, so the
search space is ``conv-2``: one ConvNet pattern per stage, attached after both batch norms
of the stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from adsearch.errors import ConfigError
from adsearch.ops import set_progress
from adsearch.patterns import SearchSpace
from adsearch.sites import attach, find_sites, space_for
from adsearch.tasks import Budget, ChildResult
from adsearch.tasks.image_data import CIFAR_MEAN, CIFAR_STD, augment, load_train_pool, normalize


@dataclass(frozen=True)
class MyConfig:
    width: int = 16  # channels of stage 1 (stage 2 has twice as many)
    epochs: float = 3.0  # passes over the training images (a Budget may shorten it)
    batch_size: int = 64  # images per step
    lr: float = 0.05  # SGD-Nesterov learning rate, cosine decay to 0
    train_per_class: int | None = None  # training images per class (None: all 200 of the sample)
    data: str | None = None  # None: the CIFAR-10 sample inside adsearch; or a .npz / ImageFolder tree

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SmallConvNet(nn.Module):
    """``(N, 3, 32, 32)`` images -> ``(N, classes)`` logits: two stages of conv-BN-ReLU twice;
    stage 2 starts with a stride-2 conv (16x16 maps). A plain network: the dropout ops are
    attached afterwards by :func:`adsearch.sites.attach`, which finds one site per stage."""

    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c, stride in [(width, 1), (2 * width, 2)]:
            for k in range(2):
                layers += [nn.Conv2d(c_in, c, 3, stride if k == 0 else 1, 1, bias=False),
                           nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


EXAMPLE_INPUT = torch.zeros(1, 3, 32, 32)  # the dry run that groups batch norms into stages


class MyTask:
    """The plug-in: adsearch builds it with ``MyTask()`` in the daemon and in every child."""

    name = "mytask"
    supports_pruning = True  # run_child asks budget.prune_now after every epoch

    def get_default_config(self) -> MyConfig:
        return MyConfig()

    def config_from_dict(self, data: dict[str, Any]) -> MyConfig:
        known = {f.name for f in fields(MyConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"mytask config: unknown key(s) {', '.join(unknown)}; known keys "
                              f"are {', '.join(sorted(known))}")
        return MyConfig(**data)

    def space(self, config: MyConfig) -> SearchSpace:
        """conv-2: the sites adsearch.sites finds in the network (one per stage)."""
        return space_for(find_sites(SmallConvNet(config.width, 10), EXAMPLE_INPUT))

    def run_child(self, task_config: MyConfig, regularizer: Any, budget: Budget, device: str,
                  seed: int) -> ChildResult:
        """Train one child; reward = validation accuracy (held-out sample images)."""
        c, started = task_config, time.time()
        train, val, _ = load_train_pool(c.data, image_size=None, download=False,
                                        train_per_class=c.train_per_class, val_per_class=None,
                                        val_fraction=0.1, split_seed=0)
        dev = torch.device(device)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = SmallConvNet(c.width, len(train.classes))
        attach(model, regularizer, EXAMPLE_INPUT)  # a pattern list, PatternSet or baseline dict
        model = model.to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=c.lr, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        per_epoch = max(1, len(train) // c.batch_size)
        epochs = c.epochs if budget.epochs is None else budget.epochs
        total = max(1, math.ceil(epochs * per_epoch))
        if budget.steps is not None:
            total = min(total, budget.steps)
        curve: list[dict[str, float]] = []
        metrics: dict[str, float] = {}
        step = 0
        while step < total:
            perm = torch.randperm(len(train), generator=gen)
            losses = []
            for b in range(per_epoch):
                if step >= total or (budget.seconds and time.time() - started > budget.seconds):
                    total = step  # out of steps or time: this is the last evaluation
                    break
                idx = perm[b * c.batch_size:(b + 1) * c.batch_size]
                x = normalize(augment(train.x[idx], 4, True, gen), CIFAR_MEAN, CIFAR_STD).to(dev)
                for g in opt.param_groups:
                    g["lr"] = 0.5 * c.lr * (1 + math.cos(math.pi * step / total))
                set_progress(model, step / total)  # DropBlock's schedule, if a baseline uses it
                loss = F.cross_entropy(model(x), train.y[idx].to(dev))
                if not math.isfinite(loss.item()):  # diverged: a non-finite reward is a bad pattern
                    return ChildResult(float("nan"), {"diverged_step": float(step)}, curve,
                                       time.time() - started)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                step += 1
            acc = self.evaluate(model, val, dev)
            epoch = step / per_epoch
            curve.append({"step": float(step), "epoch": epoch, "val_metric": acc,
                          "train_loss": sum(losses) / max(1, len(losses))})
            if budget.prune_now(epoch, acc, last=step >= total):  # early stopping (the daemon's rule)
                metrics.update(budget.truncation())  # truncated, truncated_at_epoch/_rung
                break
        metrics.update(val_acc=curve[-1]["val_metric"], steps=float(step),
                       train_loss=curve[-1]["train_loss"])
        return ChildResult(curve[-1]["val_metric"], metrics, curve, time.time() - started)

    @staticmethod
    @torch.no_grad()
    def evaluate(model: nn.Module, data: Any, dev: torch.device) -> float:
        model.eval()
        correct = 0
        for i in range(0, len(data), 500):
            x = normalize(data.x[i:i + 500], CIFAR_MEAN, CIFAR_STD).to(dev)
            correct += int((model(x).argmax(1).cpu() == data.y[i:i + 500]).sum())
        model.train()
        return correct / len(data)
