"""(c) Transfer: an exported pattern file applied to torchvision's mobilenet_v2 with attach.

The pattern file (``examples/patterns/mobilenet_v2_cifar_conv5.json``, written in the
format of ``adsearch export``; hand-written here) has one pattern per stage of
mobilenet_v2 at 32x32 (space conv-5: ``adsearch sites torchvision:mobilenet_v2 --input
1,3,32,32``). The run: SGD on the embedded CIFAR-10 sample, then validation accuracy.

    python examples/c_transfer_mobilenet.py [PATTERN_FILE] [--steps 200]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

from adsearch.patterns import load_patternset
from adsearch.sites import attach
from adsearch.tasks.image_data import (
    CIFAR_MEAN,
    CIFAR_STD,
    EMBEDDED_PATH,
    augment,
    load_npz,
    normalize,
)

HERE = Path(__file__).resolve().parent
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("pattern", nargs="?", default=HERE / "patterns" / "mobilenet_v2_cifar_conv5.json")
ap.add_argument("--steps", type=int, default=200, help="SGD steps of batch 64")
args = ap.parse_args()
torch.manual_seed(0)
train, val = load_npz(EMBEDDED_PATH)  # 2,000 + 500 CIFAR-10 images, uint8 (N, 3, 32, 32)

# --- the user's code: ~10 lines -------------------------------------------------------
model = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
handle = attach(model, load_patternset(args.pattern), torch.zeros(1, 3, 32, 32))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5)
model.train()
for _ in range(args.steps):
    i = torch.randint(0, len(train), (64,))
    x = normalize(augment(train.x[i], 4, True, None), CIFAR_MEAN, CIFAR_STD)
    loss = F.cross_entropy(model(x), train.y[i])
    opt.zero_grad()
    loss.backward()
    opt.step()
# ---------------------------------------------------------------------------------------

model.eval()  # the ops are the identity in eval mode
with torch.no_grad():
    acc = (model(normalize(val.x, CIFAR_MEAN, CIFAR_STD)).argmax(1) == val.y).float().mean()
print(
    f"space {handle.space.name}, {len(handle.placements)} ops; steps {args.steps}, "
    f"last loss {loss.item():.3f}, val_acc {acc.item():.3f}"
)
