#!/usr/bin/env python3
"""Pattern gallery: learned patterns next to DropBlock, SpatialDropout and Dropout masks.

Draws one row per regularizer and four channels of one feature map per row (white = kept,
black = dropped), from one seeded draw each, into a PNG. Learned rows come from pattern
files written by ``adsearch export --best`` (one row per site), each drawn at the map size
its site has in a WRN (conv-3 at 32x32 input: 32, 16 and 8 px; ``--input-side 16`` halves
them), scaled up to one panel size, so
the "drops" figure is the share the pattern really drops there; the hand-designed rows run
the very modules ``make_dropout`` builds for training, on a 32x32 tensor of ones.

Usage::

    .venv/bin/python benchmarks/gallery.py -o gallery.png FILE.json [FILE.json ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from adsearch.ops import make_dropout, render_mask, set_progress
from adsearch.patterns import SITE_MAP_SIDES, load_patternset

H = W = 32
CHANNELS = 4
CELL = 4
GAP = 6
LABEL_W = 260


def baseline_masks(spec: dict[str, object], seed: int) -> torch.Tensor:
    """(CHANNELS, H, W) bool masks (True = kept) of a baseline spec at full schedule."""
    torch.manual_seed(seed)
    mod = make_dropout(spec).train()
    set_progress(mod, 1.0)  # DropBlock at its target drop probability
    return (mod(torch.ones(1, CHANNELS, H, W)) != 0)[0]


def rows_for(files: list[Path], seed: int, input_side: int = 32) -> list[tuple[str, torch.Tensor]]:
    rows: list[tuple[str, torch.Tensor]] = []
    for f in files:
        ps = load_patternset(f)
        sizes = SITE_MAP_SIDES.get(f"{ps.space.kind}-{ps.space.num_sites}", (H,) * len(ps.patterns))
        sizes = tuple(max(1, n * input_side // 32) for n in sizes)  # the maps of this input side
        for i, (p, n) in enumerate(zip(ps.patterns, sizes, strict=True)):
            what = "off (no dropout)" if p.off else f"{p.size}/{p.stride}x{p.repeat or 'all'} r{p.rotate}"  # type: ignore[union-attr]
            label = f"{f.stem} site {i} ({n}x{n} map): {what}"
            rows.append((label, render_mask(p, (CHANNELS, n, n), seed + i)))
    rows.append(("DropBlock 0.1, block 7", baseline_masks({"kind": "dropblock", "drop_prob": 0.1, "block_size": 7}, seed)))
    rows.append(("SpatialDropout 0.1", baseline_masks({"kind": "spatial", "drop_prob": 0.1}, seed)))
    rows.append(("Dropout 0.1", baseline_masks({"kind": "dropout", "drop_prob": 0.1}, seed)))
    return rows


def draw(rows: list[tuple[str, torch.Tensor]], out: Path) -> None:
    panel = W * CELL
    width = LABEL_W + CHANNELS * (panel + GAP) + GAP
    height = len(rows) * (H * CELL + GAP) + GAP
    img = Image.new("RGB", (width, height), (200, 200, 200))
    pen = ImageDraw.Draw(img)
    for r, (label, masks) in enumerate(rows):
        y0 = GAP + r * (H * CELL + GAP)
        dropped = 1.0 - masks.float().mean().item()
        pen.text((GAP, y0 + H * CELL // 2 - 12), label, fill=(0, 0, 0))
        pen.text((GAP, y0 + H * CELL // 2 + 4), f"drops {dropped:.1%}", fill=(60, 60, 60))
        for c in range(CHANNELS):
            x0 = LABEL_W + GAP + c * (panel + GAP)
            tile = Image.fromarray((masks[c].to(torch.uint8) * 255).numpy(), mode="L")
            img.paste(tile.resize((panel, panel), Image.NEAREST).convert("RGB"), (x0, y0))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="pattern files from `adsearch export --best`")
    ap.add_argument("-o", "--output", type=Path, default=Path("gallery.png"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-side", type=int, default=32, help="input image side in px (the site maps scale with it)")
    args = ap.parse_args()
    rows = rows_for(args.files, args.seed, args.input_side)
    draw(rows, args.output)
    print(f"wrote {args.output} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
