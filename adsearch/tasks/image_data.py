"""Image data: ImageFolder trees, torchvision CIFAR-10, the embedded sample, and augmentation.

Everything is decoded once into a uint8 tensor of shape ``(N, 3, H, W)`` kept in memory;
augmentation (pad-4 random crop, horizontal flip) and normalisation run on whole batches of
that tensor, which is much faster on a CPU than a per-image ``Dataset`` pipeline.

Accepted sources (see :func:`load_train_pool` and :func:`load_test_set`):

- ``None``: the embedded CIFAR-10 sample ``adsearch/data/cifar10_mini.npz`` (2,000 training
  and 2,000 validation images, class-balanced; built by ``bin/make_cifar_mini.py``);
- a ``.npz`` file in that same format;
- an ImageFolder tree ``root/<class>/<image>`` (ImageNet's layout, and ``cifar10-jpg/train``);
- a folder holding such a tree in ``train/`` (and ``test/`` or ``val/`` for the test split),
  such as ``../shared/data/cifar10-jpg``;
- a torchvision CIFAR-10 root (``root/cifar-10-batches-py``), or any folder with
  ``download=True``, which lets torchvision fetch CIFAR-10 there.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adsearch.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff")
EMBEDDED_PATH = Path(__file__).resolve().parents[1] / "data" / "cifar10_mini.npz"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of CIFAR-10 train, in [0, 1]
CIFAR_STD = (0.2470, 0.2435, 0.2616)  # per-channel std of CIFAR-10 train, in [0, 1]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LAYOUT = (
    "expected an ImageFolder tree '<root>/<class>/<image>.jpg' (or '<root>/train/<class>/...'), "
    "a torchvision CIFAR-10 root holding 'cifar-10-batches-py' (or pass download=True / "
    "--download), or an adsearch .npz sample written by bin/make_cifar_mini.py"
)


@dataclass(frozen=True)
class ImageSet:
    """Decoded images in memory: ``x`` uint8 ``(N, 3, H, W)``, ``y`` int64 ``(N,)``."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: np.ndarray | torch.Tensor) -> ImageSet:
        i = torch.as_tensor(idx, dtype=torch.long)
        return ImageSet(self.x[i], self.y[i], self.classes)


# ----------------------------------------------------------------------------- ImageFolder
def scan_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """List ``root/<class>/<image>`` files in sorted order.

    Returns (paths, labels (int64, one per path), class names sorted alphabetically, as
    torchvision's ImageFolder does). Raises DataError for a missing path, a folder with no
    class sub-folders, or a class folder with no images.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"image data path {root} does not exist; {_LAYOUT}")
    if not root.is_dir():
        raise DataError(f"image data path {root} is not a folder; {_LAYOUT}")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise DataError(f"image data path {root} has no class sub-folders; {_LAYOUT}")
    paths: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files = sorted(
            f for f in (root / name).iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise DataError(
                f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); {_LAYOUT}"
            )
        paths.extend(files)
        labels.extend([c] * len(files))
    return paths, np.asarray(labels, dtype=np.int64), classes


def decode_image(data: bytes | Path, size: int | None, source: str) -> np.ndarray:
    """Decode one image to uint8 ``(3, H, W)``.

    ``size`` None keeps the original size; otherwise the shorter side is resized to ``size``
    and the centre ``size x size`` crop is kept (the usual ImageNet evaluation transform).
    Raises DataError naming ``source`` for a corrupt or unreadable file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            im = im.convert("RGB")
            if size is not None:
                w, h = im.size
                s = size / min(w, h)
                im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
                w, h = im.size
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {source}: {exc}; the file is corrupt or not an image") from None
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_files(paths: list[Path], size: int | None) -> torch.Tensor:
    """Decode many files to one uint8 tensor ``(N, 3, H, W)``; all must share one size."""
    arrs = [decode_image(p, size, str(p)) for p in paths]
    shapes = {a.shape for a in arrs}
    if len(shapes) > 1:
        raise DataError(
            f"images under {paths[0].parent.parent} have different sizes {sorted(shapes)[:3]}...; "
            "set the task's image_size so that they are resized to one size"
        )
    return torch.from_numpy(np.stack(arrs)) if arrs else torch.empty(0, 3, size or 0, size or 0, dtype=torch.uint8)


# ----------------------------------------------------------------------------- splits
def balanced_indices(
    labels: np.ndarray, counts: list[int | None], seed: int, source: str
) -> list[np.ndarray]:
    """Draw disjoint class-balanced index sets, reproducibly from ``seed``.

    ``counts[j]`` images per class go to set ``j`` (``None`` = all that remain). Within each
    class the order is a permutation drawn from ``numpy.random.default_rng(seed)``, so the
    same seed always gives the same sets. Raises DataError if a class has too few images.
    """
    rng = np.random.default_rng(seed)
    out: list[list[np.ndarray]] = [[] for _ in counts]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        need = sum(n for n in counts if n is not None)
        if need > len(idx):
            raise DataError(
                f"{source}: class {int(c)} has {len(idx)} images but the split asks for {need} "
                "per class; lower train_per_class/val_per_class"
            )
        start = 0
        for j, n in enumerate(counts):
            stop = len(idx) if n is None else start + n
            out[j].append(idx[start:stop])
            start = stop
    return [np.sort(np.concatenate(parts)) for parts in out]


# ----------------------------------------------------------------------------- sources
def load_npz(path: Path) -> tuple[ImageSet, ImageSet]:
    """Read an adsearch sample ``.npz`` (JPEG bytes + offsets): returns (train, val)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            blob, offsets, labels, split = z["jpeg"], z["offsets"], z["labels"], z["split"]
            classes = tuple(str(c) for c in z["classes"])
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{path} is not an adsearch image sample (.npz with jpeg, offsets, labels, split, "
            f"classes; rebuild it with bin/make_cifar_mini.py): {exc}"
        ) from None
    arrs = [
        decode_image(blob[offsets[i] : offsets[i + 1]].tobytes(), None, f"{path}[{i}]")
        for i in range(len(labels))
    ]
    x = torch.from_numpy(np.stack(arrs))
    y = torch.from_numpy(labels.astype(np.int64))
    sp = torch.from_numpy(split.astype(np.int64))
    full = ImageSet(x, y, classes)
    return full.subset(torch.nonzero(sp == 0).flatten()), full.subset(torch.nonzero(sp == 1).flatten())


def _cifar_python(root: Path, train: bool, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as exc:
        raise DataError(f"CIFAR-10 at {root}: {exc}; {_LAYOUT}") from None
    x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageSet(x, torch.as_tensor(ds.targets, dtype=torch.long), tuple(ds.classes))


def _tree_root(path: Path, prefer: tuple[str, ...]) -> Path:
    for sub in prefer:
        if (path / sub).is_dir():
            return path / sub
    return path


def load_train_pool(
    path: str | Path | None,
    *,
    image_size: int | None,
    download: bool,
    train_per_class: int | None,
    val_per_class: int | None,
    val_fraction: float,
    split_seed: int,
) -> tuple[ImageSet, ImageSet, str]:
    """Training and held-out validation images, class-balanced and reproducible.

    The validation split is held out of the *training* data (the paper holds out 10%):
    ``val_per_class`` images per class, or ``val_fraction`` of the smallest class when it is
    None. ``train_per_class`` None uses every remaining image. Only the chosen files of an
    ImageFolder tree are decoded. Returns (train, val, description of the source).
    """
    if path is None:
        if not EMBEDDED_PATH.is_file():
            raise DataError(f"embedded sample {EMBEDDED_PATH} is missing; rebuild it with bin/make_cifar_mini.py")
        train, val = load_npz(EMBEDDED_PATH)
        train, val = _cap(train, val, train_per_class, val_per_class, split_seed)
        return train, val, f"embedded {EMBEDDED_PATH.name}"
    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        train, val = load_npz(p)
        train, val = _cap(train, val, train_per_class, val_per_class, split_seed)
        return train, val, str(p)
    if not p.exists() and not download:
        raise DataError(f"image data path {p} does not exist; {_LAYOUT}")
    if download or (p / "cifar-10-batches-py").is_dir():
        full = _cifar_python(p, True, download)
        labels = full.y.numpy()
        tr, va = _split(labels, train_per_class, val_per_class, val_fraction, split_seed, str(p))
        return full.subset(tr), full.subset(va), f"torchvision CIFAR-10 at {p}"
    root = _tree_root(p, ("train",))
    files, labels, classes = scan_image_folder(root)
    tr, va = _split(labels, train_per_class, val_per_class, val_fraction, split_seed, str(root))
    train = ImageSet(decode_files([files[i] for i in tr], image_size), torch.from_numpy(labels[tr]), classes)
    val = ImageSet(decode_files([files[i] for i in va], image_size), torch.from_numpy(labels[va]), classes)
    return train, val, f"ImageFolder {root}"


def _val_count(labels: np.ndarray, val_per_class: int | None, val_fraction: float) -> list[int]:
    if val_per_class is not None:
        return [val_per_class]
    smallest = int(np.bincount(labels).min())
    return [max(1, int(round(smallest * val_fraction)))]


def _split(
    labels: np.ndarray, n_train: int | None, n_val: int | None, frac: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray]:
    (nv,) = _val_count(labels, n_val, frac)
    va, tr = balanced_indices(labels, [nv, n_train], seed, source)
    return tr, va


def _cap(
    train: ImageSet, val: ImageSet, n_train: int | None, n_val: int | None, seed: int
) -> tuple[ImageSet, ImageSet]:
    """Class-balanced sub-sampling of an already split sample (None keeps all)."""
    if n_train is not None:
        (tr,) = balanced_indices(train.y.numpy(), [n_train], seed, "embedded sample train split")
        train = train.subset(tr)
    if n_val is not None:
        (va,) = balanced_indices(val.y.numpy(), [n_val], seed, "embedded sample val split")
        val = val.subset(va)
    return train, val


def load_test_set(
    path: str | Path, *, image_size: int | None, download: bool, per_class: int | None
) -> tuple[ImageSet, str]:
    """The test split: an ImageFolder tree (or a folder with ``test/`` or ``val/``), or a
    torchvision CIFAR-10 root (its test batch). ``per_class`` None keeps every image."""
    p = Path(path)
    if not p.exists() and not download:
        raise DataError(f"test data path {p} does not exist; {_LAYOUT}")
    if download or (p / "cifar-10-batches-py").is_dir():
        full = _cifar_python(p, False, download)
        if per_class is not None:
            (idx,) = balanced_indices(full.y.numpy(), [per_class], 0, str(p))
            full = full.subset(idx)
        return full, f"torchvision CIFAR-10 test at {p}"
    root = _tree_root(p, ("test", "val"))
    files, labels, classes = scan_image_folder(root)
    idx = np.arange(len(files))
    if per_class is not None:
        (idx,) = balanced_indices(labels, [per_class], 0, str(root))
    x = decode_files([files[i] for i in idx], image_size)
    return ImageSet(x, torch.from_numpy(labels[idx]), classes), f"ImageFolder {root}"


# ----------------------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop after zero-padding by ``pad`` px, and random horizontal flip.

    ``x``: uint8 or float ``(N, C, H, W)``; returns the same shape and dtype. One crop offset
    and one flip decision per example, drawn from ``generator``.
    """
    n, _, h, w = x.shape
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        rows = (oy[:, None] + torch.arange(h))[:, :, None]  # (N, H, 1)
        cols = (ox[:, None] + torch.arange(w))[:, None, :]  # (N, 1, W)
        x = xp[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # (N, C, H, W)
    if flip:
        f = torch.rand(n, generator=generator) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` in [0, 255] -> float32 standardised per channel."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s
