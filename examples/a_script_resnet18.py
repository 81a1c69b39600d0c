"""Example (a): your own PyTorch training script, searched with ``adsearch start --script``.

A plain torchvision ResNet-18 with a CIFAR stem (3x3 conv, no max-pool) trained on CIFAR-10.
adsearch touches it in three lines: ``adsearch.trial.current()`` (this trial's patterns,
seed, device), ``adsearch.sites.attach`` (the patterns go after the model's BatchNorms, one
pattern per stage: 4 stages, space conv-4) and ``trial.report`` / ``trial.finish``.

    python examples/a_script_resnet18.py --epochs 1                      # by hand, no dropout
    adsearch start --script "python examples/a_script_resnet18.py --epochs 3" --space conv-4 \\
        --workers 2 --prune-at-epoch 1                                    # the search
    adsearch export --best -o best.json
    python examples/a_script_resnet18.py --epochs 30 --per-class 5000 --pattern best.json  # transfer

``--data`` is the CIFAR-10 JPEG tree (``train/<class>/*.jpg``, ``test/<class>/*.jpg``); when it
is absent the script falls back to adsearch's embedded 2,500-image sample.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import adsearch.sites
import adsearch.trial
from adsearch.ops import set_progress

MEAN, STD = torch.tensor([0.491, 0.482, 0.447]), torch.tensor([0.247, 0.244, 0.262])
parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument(
    "--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg")
)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--per-class", type=int, default=100, help="training images per class")
parser.add_argument("--batch", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--pattern", help="a pattern file (`adsearch export`), for runs by hand")
args = parser.parse_args()


def load(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``per_class`` images of each class as uint8 (N, 3, 32, 32) and labels (N,)."""
    root = Path(args.data) / split
    if root.is_dir():
        ds = torchvision.datasets.ImageFolder(str(root))
        counts, keep = [0] * len(ds.classes), []
        for i, y in enumerate(ds.targets):
            if counts[y] < per_class:
                counts[y] += 1
                keep.append(i)
        to_u8 = torchvision.transforms.PILToTensor()
        return torch.stack([to_u8(ds[i][0]) for i in keep]), torch.tensor(
            [ds.targets[i] for i in keep]
        )
    from adsearch.tasks.image_data import EMBEDDED_PATH, load_npz  # the embedded sample

    part = load_npz(EMBEDDED_PATH)[0 if split == "train" else 1]
    return part.x, part.y


def batches(x: torch.Tensor, y: torch.Tensor, train: bool, gen: torch.Generator):
    order = torch.randperm(len(y), generator=gen) if train else torch.arange(len(y))
    for i in range(0, len(y) - (args.batch - 1 if train else 0), args.batch):
        xb = x[order[i : i + args.batch]].float() / 255
        if train:  # pad-4 random crop and horizontal flip
            dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
            xb = F.pad(xb, (4, 4, 4, 4), mode="reflect")[:, :, dy : dy + 32, dx : dx + 32]
            flip = torch.rand(len(xb), generator=gen) < 0.5
            xb[flip] = xb[flip].flip(3)
        yield (xb - MEAN[:, None, None]) / STD[:, None, None], y[order[i : i + args.batch]]


trial = adsearch.trial.current()
torch.manual_seed(trial.seed)
if trial.threads:
    torch.set_num_threads(trial.threads)
gen = torch.Generator().manual_seed(trial.seed)
train_x, train_y = load("train", args.per_class)
val_x, val_y = load("test", max(10, args.per_class // 2))

model = torchvision.models.resnet18(weights=None, num_classes=10)
model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # the CIFAR stem: 3x3 conv, no max-pool
model.maxpool = nn.Identity()
handle = adsearch.sites.attach(model, trial.patterns, example_input=torch.zeros(2, 3, 32, 32))
model.to(trial.device)
opt = torch.optim.SGD(
    model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
)
steps = args.epochs * (len(train_y) // args.batch)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=max(1, steps))

acc, step = 0.0, 0
for epoch in range(1, args.epochs + 1):
    model.train()
    for xb, yb in batches(train_x, train_y, True, gen):
        set_progress(model, step / max(1, steps))  # the patterns' schedule, if they have one
        loss = F.cross_entropy(model(xb.to(trial.device)), yb.to(trial.device))
        if not math.isfinite(loss.item()):
            trial.finish(float("nan"))  # diverged: a bad pattern, recorded as such
            raise SystemExit(0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
    model.eval()
    with torch.no_grad():
        right = sum(
            int((model(xb.to(trial.device)).argmax(1).cpu() == yb).sum())
            for xb, yb in batches(val_x, val_y, False, gen)
        )
    acc = right / len(val_y)
    print(f"epoch {epoch}: train loss {loss.item():.3f}, val acc {acc:.4f}", flush=True)
    if trial.report(epoch, acc):  # the search's early-stopping rule says stop here
        break
trial.finish(acc, {"val_acc": acc, "train_loss": loss.item(), "sites": float(len(handle.sites))})
