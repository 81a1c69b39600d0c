"""Image classification children: CIFAR-10 (WRN) and ImageNet-style trees (ResNet-50).

One training loop for both: SGD with Nesterov momentum, cosine learning rate, pad-and-crop
plus flip augmentation on in-memory uint8 batches, cross-entropy.

Reward: ``reward.from_metric(reward_metric, value)`` (:mod:`adsearch.reward`) at the end of
training, measured on the split held out of the training data: with ``reward_metric =
"val_acc"`` the **validation accuracy** (fraction in [0, 1], the paper's reward), with
``"val_loss"`` ``exp(-validation cross-entropy)`` (in (0, 1]). Early-stopping rungs and the
curve's ``val_metric`` use that same reward scale; every curve point also keeps ``val_acc``
and ``val_loss``. ``metrics`` holds ``val_acc``, ``val_loss``,
``train_loss`` (mean over the last epoch), ``steps``, ``epochs``, ``params``, ``diverged``
and, when the config names ``test_data``, ``test_acc`` and ``test_loss``. ``curve`` has one
point per epoch (and one at the end). A child stopped early by the daemon's pruning rule
(:mod:`adsearch.daemon.pruning`) reports the reward it had then, with ``truncated = 1``. A diverged child returns reward 0.0 (see
:mod:`adsearch.tasks.common`).

Training length as a tuned setting (``keep_best``, **ours**): validate every epoch and keep
the weights of the pass with the best reward; ``val_*``, the reward and ``test_*`` then come
from those weights and ``metrics["best_epoch"]`` says which pass it was (classic early
stopping with restore). The schedule still runs over the whole budget, so this approximates a
length tuned from a grid; it is selected on validation only.

Default CIFAR-10 child (**ours**, sized for a 2-core CPU, ~30-60 s): WRN-10-2 on the
embedded sample (2,000 train / 2,000 validation images), 8 epochs, batch 64.

Validation size (``val_per_class``): by default the embedded sample's whole validation split
(200 a class) or 10% of a tree (``val_fraction``; 500 a class on CIFAR-10's training folder).
Regularizers differ by fractions of a point of accuracy, and an accuracy gap measured on
1,000 images has a standard error of about 1.4 points: on CIFAR, accuracy on 1,000 / 2,000 /
5,000 validation images ranks held-out accuracy at Spearman 0.50 / 0.61 / 0.70, the loss at
about 0.66 at every size (BENCHMARKS.md, "Validation split size"). Keep the split large, or
reward the loss on a small one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adsearch import reward
from adsearch.errors import ConfigError, DataError
from adsearch.patterns import SearchSpace
from adsearch.tasks import common
from adsearch.tasks.childloop import ChildRun
from adsearch.tasks.image_data import (
    CIFAR_MEAN,
    CIFAR_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageSet,
    augment,
    load_test_set,
    load_train_pool,
    normalize,
)
from adsearch.tasks.result import Budget, ChildResult

#: validation metrics an image child can be rewarded on (:func:`adsearch.reward.from_metric`)
REWARD_METRICS = ("val_acc", "val_loss")


@dataclass(frozen=True)
class ImageConfig:
    task: str = "cifar10"  # registry name: cifar10 or imagenet
    data: str | None = None  # training data (see image_data); None = embedded CIFAR-10 sample
    test_data: str | None = None  # test split (ImageFolder tree or CIFAR-10 root); None = no test
    download: bool = False  # let torchvision download CIFAR-10 into `data` (only when asked)
    image_size: int | None = None  # resize+centre-crop side in px for trees; None = native size
    train_per_class: int | None = None  # training images per class; None = all not held out
    # validation images a class, held out of the training data; None = the embedded sample's
    # whole split (200 a class) or val_fraction of a tree (module doc: keep it large)
    val_per_class: int | None = None
    val_fraction: float = 0.1  # validation share of the training data if val_per_class is None
    test_per_class: int | None = None  # test images per class; None = the whole test split
    split_seed: int = 0  # seed of the class-balanced subset and held-out split draws
    model: str = "wrn"  # wrn (WRN-depth-width) or resnet50 (torchvision, conv-4 sites)
    depth: int = 10  # WRN depth, 6n + 4 (paper: 28 for search, 28 for final)
    width: int = 2  # WRN width factor k (paper: 2 for search, 10 for final)
    epochs: float = 8.0  # default passes over the training split (a Budget overrides)
    batch_size: int = 64  # training batch size, images
    eval_batch_size: int = 250  # evaluation batch size, images
    optimizer: str = "sgd"  # sgd (Nesterov momentum) or adamw
    schedule: str = "cosine"  # learning-rate schedule after warm-up: cosine (to 0) or constant
    lr: float = 0.05  # peak learning rate
    warmup_epochs: float = 0.0  # linear learning-rate warm-up, epochs
    momentum: float = 0.9  # SGD Nesterov momentum (ignored by adamw)
    weight_decay: float = 5e-4  # L2 weight decay on every parameter
    pad: int = 4  # random-crop padding in px (0 = no crop)
    flip: bool = True  # random horizontal flips
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    eval_every: int = 1  # validate every N epochs (also at each early-stopping rung and the end)
    reward_metric: str = "val_acc"  # the reward: val_acc (accuracy) or val_loss (exp(-loss))
    # keep_best (a training length tuned on validation; not early stopping, which is rungs):
    # keep the weights of the validation pass with the best reward and report (and test)
    # those, not the last ones (module doc)
    keep_best: bool = False

    def __post_init__(self) -> None:
        if self.val_per_class is not None and self.val_per_class < 1:
            raise ConfigError(f"val_per_class={self.val_per_class!r}: use a positive number of "
                              "validation images a class, or null for the default")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction={self.val_fraction!r}: use a share in (0, 1), "
                              "or set val_per_class")
        if self.reward_metric not in REWARD_METRICS:
            raise ConfigError(f"reward_metric={self.reward_metric!r}: use one of "
                              f"{', '.join(REWARD_METRICS)} (see adsearch.reward.RULES)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], fn: Any) -> Any:
    """Decoded data sets survive across children of one process (the daemon's workers)."""
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = fn()
    return _CACHE[key]


class _ImageTask:
    name = "cifar10"
    mean, std = CIFAR_MEAN, CIFAR_STD
    test_data_key, downloads = "test_data", True  # --test-data DIR, --download (registry)

    def get_default_config(self) -> ImageConfig:
        return ImageConfig()

    def config_from_dict(self, data: dict[str, Any]) -> ImageConfig:
        return common.config_from_dict(ImageConfig, {"task": self.name, **data}, self.name)

    def space(self, config: ImageConfig) -> SearchSpace:
        return SearchSpace("conv", 4 if config.model == "resnet50" else 3)

    # ------------------------------------------------------------------ data
    def load(self, c: ImageConfig) -> tuple[ImageSet, ImageSet, ImageSet | None]:
        """(train, val, test or None), decoded once per process."""
        key = (c.data, c.download, c.image_size, c.train_per_class, c.val_per_class, c.val_fraction, c.split_seed)
        train, val, _ = _cached(key, lambda: load_train_pool(
            c.data, image_size=c.image_size, download=c.download, train_per_class=c.train_per_class,
            val_per_class=c.val_per_class, val_fraction=c.val_fraction, split_seed=c.split_seed))
        test = None
        if c.test_data is not None:
            test, _ = _cached(("test", c.test_data, c.image_size, c.test_per_class), lambda: load_test_set(
                c.test_data, image_size=c.image_size, download=c.download, per_class=c.test_per_class))
            if test.classes != train.classes:
                raise DataError(
                    f"test data {c.test_data} has classes {list(test.classes)[:5]}..., the training "
                    f"data has {list(train.classes)[:5]}...; both need the same class folders"
                )
            if test.x.shape[1:] != train.x.shape[1:]:
                raise DataError(f"test images {tuple(test.x.shape[1:])} differ in size from training images {tuple(train.x.shape[1:])}; set image_size")
        if len(train) < c.batch_size:
            raise DataError(f"{c.data or 'embedded sample'}: {len(train)} training images, fewer than one batch of {c.batch_size}")
        return train, val, test

    def build_model(self, c: ImageConfig, num_classes: int, regularizer: Any) -> torch.nn.Module:
        from adsearch.models import resnet50, wide_resnet

        if c.model == "wrn":
            return wide_resnet(c.depth, c.width, num_classes, regularizer)
        if c.model == "resnet50":
            return resnet50(num_classes, regularizer)  # type: ignore[no-any-return]
        raise ConfigError(f"unknown image model {c.model!r}; use wrn or resnet50")

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, data: ImageSet, c: ImageConfig, device: torch.device) -> tuple[float, float]:
        """(accuracy in [0, 1], mean cross-entropy in nats) in eval mode."""
        model.eval()
        correct, loss = 0, 0.0
        for i in range(0, len(data), c.eval_batch_size):
            x = normalize(data.x[i : i + c.eval_batch_size].to(device), self.mean, self.std)
            y = data.y[i : i + c.eval_batch_size].to(device)
            with common.autocast(device):
                logits = model(x).float()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
        model.train()
        return correct / len(data), loss / len(data)

    def _validate(
        self, model: torch.nn.Module, val: ImageSet, c: ImageConfig, device: torch.device,
        step: int, per_epoch: int, train_loss: float,
    ) -> dict[str, float]:
        """One curve point: ``val_acc`` (fraction), ``val_loss`` (nats) and ``val_metric``,
        the reward they give under ``c.reward_metric`` (the value early stopping sees)."""
        acc, vloss = self.evaluate(model, val, c, device)
        value = reward.from_metric(c.reward_metric, acc if c.reward_metric == "val_acc" else vloss)
        return {"step": float(step), "epoch": step / per_epoch, "train_loss": train_loss,
                "val_metric": value, "val_acc": acc, "val_loss": vloss}

    def run_child(self, task_config: Any, regularizer: Any, budget: Budget | None, device: str = "cpu", seed: int = 0) -> ChildResult:
        """Train one child with ``regularizer``; reward from ``c.reward_metric`` (module doc)."""
        from adsearch.ops import set_progress

        c = task_config if isinstance(task_config, ImageConfig) else self.config_from_dict(task_config)
        dev = common.resolve_device(device)
        clock = common.Clock()
        train, val, test = self.load(c)
        gen = common.seeded(seed)
        model = self.build_model(c, len(train.classes), regularizer).to(dev)
        opt = common.make_optimizer(c.optimizer, model, c.lr, c.weight_decay, c.momentum)
        per_epoch = len(train) // c.batch_size
        run = ChildRun(clock, budget, per_epoch, c.epochs, model, keep_best=c.keep_best)
        warmup = int(c.warmup_epochs * per_epoch)
        if isinstance(c.eval_every, bool) or not isinstance(c.eval_every, int) or c.eval_every < 1:
            raise ConfigError(f"eval_every={c.eval_every!r}: use an integer number of epochs >= 1")
        epochs_run, train_loss = 0, math.nan

        def measure() -> tuple[dict[str, float], float]:
            point = self._validate(model, val, c, dev, run.step, per_epoch, train_loss)
            return point, point["val_metric"]

        model.train()
        while run.going():
            perm = torch.randperm(len(train), generator=gen)
            for b in range(per_epoch):
                if not run.going():
                    break
                idx = perm[b * c.batch_size : (b + 1) * c.batch_size]
                x = augment(train.x[idx], c.pad, c.flip, gen).to(dev, non_blocking=True)
                x, y = normalize(x, self.mean, self.std), train.y[idx].to(dev, non_blocking=True)
                for g in opt.param_groups:
                    g["lr"] = common.lr_at(c.schedule, run.step, run.total, c.lr, warmup)
                set_progress(model, run.progress())
                with common.autocast(dev):
                    loss = F.cross_entropy(model(x).float(), y, label_smoothing=c.label_smoothing)
                lv = loss.item()
                if not math.isfinite(lv):
                    return run.diverged()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run.took_step(lv)
            train_loss = run.mean_loss()
            epochs_run += 1
            at_rung = run.crossed_rung()
            if epochs_run % c.eval_every and not at_rung and run.going():
                continue  # a validation every eval_every epochs (it can cost more than one)
            if run.validate(measure, last=run.step >= run.total):
                break
        if not run.curve or run.curve[-1]["step"] != run.step:  # time ran out between checks
            run.validate(measure, last=True)
        chosen = run.finish()  # the last point, or the best one with keep_best (weights restored)
        metrics = run.metrics
        metrics.update(val_acc=chosen["val_acc"], val_loss=chosen["val_loss"],
                       train_loss=train_loss)
        if test is not None:
            metrics["test_acc"], metrics["test_loss"] = self.evaluate(model, test, c, dev)
        return run.result(reward.from_metric(c.reward_metric, metrics[c.reward_metric]))


    def site_maps(self, config: ImageConfig) -> list[tuple[tuple[int, int], ...]]:
        """Per site, the ``(H, W)`` feature maps its patterns act on, largest first: what the
        drop cap checks a pattern on (:mod:`adsearch.ops.cap`). One forward pass of the
        model (every site active, shortcuts too) on one input of the training images' size,
        which reads at most one image (:func:`input_shape`)."""
        from adsearch.ops.cap import probe_site_maps
        from adsearch.patterns import ConvPattern

        h, w = input_shape(config)
        sites = self.space(config).num_sites
        model = self.build_model(config, 10, [ConvPattern(residual=True)] * sites)
        return probe_site_maps(model, torch.zeros(1, 3, h, w))


def input_shape(c: ImageConfig) -> tuple[int, int]:
    """``(H, W)`` of the images a child of ``c`` trains on, reading at most one image:
    ``image_size`` when set (a square crop); else the first image of the data (the embedded
    sample or a ``.npz`` sample, an ImageFolder tree), or 32 x 32 for torchvision CIFAR-10."""
    import numpy as np

    from adsearch.tasks.image_data import EMBEDDED_PATH, IMAGE_EXTENSIONS, decode_image

    if c.image_size is not None:
        return c.image_size, c.image_size
    path = EMBEDDED_PATH if c.data is None else Path(c.data)
    if path.is_file() and path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                first = z["jpeg"][int(z["offsets"][0]) : int(z["offsets"][1])].tobytes()
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path} is not an adsearch image sample: {exc}") from None
        arr = decode_image(first, None, f"{path}[0]")
    elif c.download or (path / "cifar-10-batches-py").is_dir():
        return 32, 32
    else:
        root = path / "train" if (path / "train").is_dir() else path
        classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) \
            if root.is_dir() else []
        files = (f for d in classes for f in sorted(d.iterdir())
                 if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        image = next(files, None)
        if image is None:
            raise DataError(f"image data path {path} holds no images in class folders")
        arr = decode_image(image, None, str(image))
    return int(arr.shape[1]), int(arr.shape[2])


class Cifar10Task(_ImageTask):
    """CIFAR-10 with a WRN (space conv-3). Data defaults to the embedded sample."""

    name = "cifar10"


class ImageNetTask(_ImageTask):
    """ImageNet-layout ImageFolder trees with ResNet-50 (space conv-4). ``data`` is required.

    CPU-scale defaults (**ours**): images decoded once to 64 px (shorter side resize, centre
    crop) and kept in memory, 8 px crop padding; the paper trains on 224 px crops of an
    80k/5k ImageNet subset.
    """

    name = "imagenet"
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def get_default_config(self) -> ImageConfig:
        return replace(ImageConfig(), task="imagenet", model="resnet50", image_size=64, pad=8, epochs=2.0, batch_size=32, lr=0.05, warmup_epochs=0.5, val_fraction=0.05)

    def config_from_dict(self, data: dict[str, Any]) -> ImageConfig:
        return common.config_from_dict(ImageConfig, {**self.get_default_config().to_dict(), **data}, self.name)

    def load(self, c: ImageConfig) -> tuple[ImageSet, ImageSet, ImageSet | None]:
        if c.data is None:
            raise ConfigError("task imagenet needs a data path (an ImageFolder tree, e.g. --data /data/imagenet/train)")
        return super().load(c)
