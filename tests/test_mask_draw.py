"""The torch-free masks of ``pattern show|sample`` (adsearch/views/mask_draw.py) against the ops.

- v1 conv: the numpy canvas equals the op's canvas (``adsearch.ops.conv.conv_canvas``) pixel
  for pixel, kept units and window counts, over a seeded sample of the whole conv space at
  the map sides the built-in networks use; the constants are the op's.
- The draws follow the ops' laws: the mean dropped fraction over M independent panels is
  within Hoeffding's bound of its exact expectation, ``(b - a) * sqrt(ln(2 / delta) / (2M))``
  with delta = 1e-6 per assertion, where every panel's fraction lies in ``[a, b]``: the
  canvas' window range (v1 conv), ``[0, 1]`` otherwise. Expectations: v1 conv, the mean over
  the canvas' windows; v1 seq, ``size / period`` of the steps (token), over ``groups`` when
  a group or interleave drops one of ``groups`` equal channel sets; v2, the rate (every v2
  kind realises it, docs/spaces-v2.md).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from adsearch.ops import conv as conv_ops
from adsearch.patterns import ConvPattern, SearchSpace, SeqPattern
from adsearch.patterns.conv2 import ConvPattern2
from adsearch.patterns.seq2 import SeqSub2
from adsearch.views import mask_draw

DELTA = 1e-6


def _hoeffding(lo: float, hi: float, m: int) -> float:
    return (hi - lo) * math.sqrt(math.log(2 / DELTA) / (2 * m)) + 1e-12


def test_constants_are_the_ops() -> None:
    assert mask_draw._MIN_RANGE == conv_ops._MIN_RANGE
    assert mask_draw._EPS == conv_ops._EPS and mask_draw._ANCHORS == conv_ops._ANCHORS


def test_conv_canvas_equals_the_ops_over_a_sample_of_the_space() -> None:
    space = SearchSpace("conv", 1)
    rng = random.Random(23)
    patterns = [space.sample(rng)[0] for _ in range(120)]
    patterns += [ConvPattern(size=3, stride=2, repeat=4, rotate=45, shear_x=0.5, shear_y=0.5)]
    for p in patterns:
        for side in (8, 16, 32):
            kept, counts = mask_draw.conv_canvas(p, side, side)
            ref = conv_ops.conv_canvas(p, side, side)
            assert np.array_equal(kept, ref.kept.numpy()), (p, side)
            assert np.array_equal(counts, ref.counts.numpy()), (p, side)


@pytest.mark.parametrize("p", [
    ConvPattern(size=3, stride=4),
    ConvPattern(size=5, stride=3, rotate=30, shear_x=0.25),
    ConvPattern(size=2, stride=3, repeat=3, rotate=15),
], ids=str)
def test_conv_draws_follow_the_canvas(p: ConvPattern) -> None:
    h = w = 16
    _, counts = mask_draw.conv_canvas(p, h, w)
    frac = 1.0 - counts / (h * w)
    draws = [mask_draw.site_masks(p, 4, (h, w), s) for s in range(300)]
    per_panel = np.array([1.0 - d.mean(axis=(1, 2)) for d in draws]).ravel()  # M = 1200
    assert abs(per_panel.mean() - frac.mean()) <= _hoeffding(frac.min(), frac.max(), 1200)


def test_share_c_draws_one_placement_for_all_panels() -> None:
    masks = mask_draw.site_masks(ConvPattern(size=2, stride=3, share_c=True), 4, (12, 12), 5)
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    per = mask_draw.site_masks(ConvPattern(size=2, stride=3), 4, (12, 12), 5)
    assert not all(np.array_equal(per[0], m) for m in per[1:])  # 1/25 chance each: seeded


@pytest.mark.parametrize("p,expected", [
    (SeqPattern(size=2, stride=2, mask="token"), 2 / 4),
    (SeqPattern(size=4, stride=4, mask="group", groups=4, share_t=False), 4 / 8 / 4),
    (SeqPattern(size=1, stride=1, mask="interleave", groups=8), 1 / 2 / 8),
], ids=str)
def test_seq_draws_follow_the_op(p: SeqPattern, expected: float) -> None:
    draws = [mask_draw.site_masks(p, 4, (40, 32), s) for s in range(300)]
    per_panel = np.array([1.0 - d.mean(axis=(1, 2)) for d in draws]).ravel()
    assert abs(per_panel.mean() - expected) <= _hoeffding(0.0, 1.0, per_panel.size)


@pytest.mark.parametrize("p", [
    ConvPattern2(rate=0.2, kind="element"),
    ConvPattern2(rate=0.3, kind="channel"),
    ConvPattern2(rate=0.2, kind="block", side=0.1875),
    ConvPattern2(rate=0.25, kind="tile", side=0.125, rotate=30, shear_x=0.25),
], ids=lambda p: p.kind)
def test_v2_conv_draws_realise_the_rate(p: ConvPattern2) -> None:
    draws = [mask_draw.site_masks(p, 4, (16, 16), s) for s in range(400)]
    per_panel = np.array([1.0 - d.mean(axis=(1, 2)) for d in draws]).ravel()
    assert abs(per_panel.mean() - p.rate) <= _hoeffding(0.0, 1.0, per_panel.size)


@pytest.mark.parametrize("sub", [
    SeqSub2(0.2, "element"), SeqSub2(0.3, "token"), SeqSub2(0.2, "variational"),
    SeqSub2(0.25, "group", 4), SeqSub2(0.1, "interleave", 8),
], ids=lambda s: s.kind)
def test_v2_seq_draws_realise_the_rate(sub: SeqSub2) -> None:
    draws = [mask_draw.site_masks(sub, 4, (24, 32), s) for s in range(400)]
    per_panel = np.array([1.0 - d.mean(axis=(1, 2)) for d in draws]).ravel()
    assert abs(per_panel.mean() - sub.rate) <= _hoeffding(0.0, 1.0, per_panel.size)


def test_off_and_seeds() -> None:
    off = ConvPattern(size=3, stride=4, off=True)
    assert mask_draw.site_masks(off, 4, (8, 8), 0).all()
    p = ConvPattern(size=2, stride=2, rotate=45)
    assert np.array_equal(mask_draw.site_masks(p, 4, (8, 8), 3), mask_draw.site_masks(p, 4, (8, 8), 3))
