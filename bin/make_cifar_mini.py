#!/usr/bin/env python3
"""Build the embedded CIFAR-10 sample ``adsearch/data/cifar10_mini.npz``.

It is a class-balanced draw from the CIFAR-10 *training* JPEGs (``cifar10-jpg/train``):
200 training and 200 validation images per class (2,000 + 2,000), disjoint, chosen from a
fixed seed. The JPEG files are stored byte for byte (no re-encoding), so the sample is exactly
those images and stays small (about 1.2 MB).

Why 2,000 validation images: 500 cannot rank regularizers whose accuracies differ by less
than a point (the paired standard error of an accuracy gap on 1,000 images is about 1.4
points; BENCHMARKS.md, "Validation split size"), and a larger split costs ``make run`` more
than it can spend on evaluation. Training images are drawn first from each class's
permutation, so the training split is that of the former sample (50 validation images a
class), whose validation images are among this one's.

Format (read by ``adsearch.tasks.image_data.load_npz``): ``jpeg`` (uint8, all files
concatenated), ``offsets`` (int64, N + 1), ``labels`` (int64, N), ``split`` (uint8, N:
0 = train, 1 = validation), ``classes`` (str), ``files`` (str, source paths relative to the
tree, for provenance).

Usage::

    .venv/bin/python bin/make_cifar_mini.py [--src ../shared/data/cifar10-jpg/train]
        [--train-per-class 200] [--val-per-class 200] [--seed 0] [--out adsearch/data/cifar10_mini.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from adsearch.tasks.image_data import balanced_indices, decode_image, scan_image_folder

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=REPO.parent / "shared" / "data" / "cifar10-jpg" / "train")
    ap.add_argument("--train-per-class", type=int, default=200)
    ap.add_argument("--val-per-class", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "adsearch" / "data" / "cifar10_mini.npz")
    args = ap.parse_args()

    files, labels, classes = scan_image_folder(args.src)
    tr, va = balanced_indices(labels, [args.train_per_class, args.val_per_class], args.seed, str(args.src))
    order = np.concatenate([tr, va])
    split = np.concatenate([np.zeros(len(tr), np.uint8), np.ones(len(va), np.uint8)])
    blobs = [files[i].read_bytes() for i in order]
    for i, b in zip(order, blobs, strict=True):
        decode_image(b, None, str(files[i]))  # refuse a corrupt source file now, not at load time
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        jpeg=np.frombuffer(b"".join(blobs), np.uint8),
        offsets=offsets,
        labels=labels[order],
        split=split,
        classes=np.array(classes),
        files=np.array([str(files[i].relative_to(args.src)) for i in order]),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(tr)} train + {len(va)} val images, classes {', '.join(classes)}")


if __name__ == "__main__":
    main()
