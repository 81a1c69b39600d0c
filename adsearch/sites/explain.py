"""Say, in words, what a model has that is *not* a dropout site, and what to do about it.

:func:`adsearch.sites.find_sites` recognises two kinds of site (docs/sites.md): the outputs
of ``BatchNorm2d`` (ConvNets, ``conv-K``) and the sub-layers of ``nn.TransformerEncoderLayer``,
``nn.TransformerDecoderLayer`` and torchvision's ViT ``EncoderBlock`` (``seq-2``). A model
with neither is refused, and a ConvNet with attention blocks of its own (MaxViT) gets
sites for its batch norms only. Either way the user should learn what was found, why it
is not a site, and what they can do; this module writes those sentences.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

#: Why each kind of layer is not a site (**ours**; see docs/sites.md, "What is not a site").
_WHY = {
    "LayerNorm": "a LayerNorm normalises the last axis (tokens, or channels-last (N, H, W, C) "
    "maps as in ConvNeXt and Swin), not the (N, C, H, W) maps after a BatchNorm2d where a conv "
    "pattern acts (the paper's placement)",
    "BatchNorm1d/3d": "a BatchNorm1d acts on (N, C) features or (N, C, L) signals (BatchNorm3d "
    "on volumes): conv patterns need (N, C, H, W) maps and seq patterns (N, T, D) sequences",
    "GroupNorm/InstanceNorm": "only BatchNorm2d outputs are conv sites (the paper's placement)",
    "attention": "seq sites are mapped only for nn.TransformerEncoderLayer, "
    "nn.TransformerDecoderLayer and torchvision's ViT EncoderBlock, whose sub-layers (qkv, "
    "attn_out, ffn_hidden, ffn_out, residual) adsearch knows",
}

#: What a user can do when a model (or a part of it) has no site.
WHAT_TO_DO = (
    "insert the ops by hand where you want them (adsearch.ops.make_dropout(pattern) is a module "
    "for (N, C, H, W) maps with a ConvPattern or (N, T, D) sequences with a SeqPattern, e.g. "
    "nn.Sequential(layer, make_dropout(p))), attach to a submodule that has BatchNorm2d layers "
    "or a recognised Transformer layer, or train with a baseline; see docs/sites.md, "
    "'What is not a site'"
)


def _category(m: nn.Module) -> str | None:
    if isinstance(m, nn.LayerNorm):
        return "LayerNorm"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d)):
        return "BatchNorm1d/3d"
    if isinstance(m, (nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
        return "GroupNorm/InstanceNorm"
    if isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__:
        return "attention"
    return None


def inventory(model: nn.Module, skip: Iterable[str] = ()) -> dict[str, list[tuple[str, str]]]:
    """The layers of ``model`` that look like sites but are not, by category.

    Returns ``{category: [(qualified name, class name), ...]}`` in module order, for the
    categories of :data:`_WHY` (an attention module is any ``nn.MultiheadAttention`` or a
    class whose name contains "Attention": a heuristic, used for messages only). Modules
    inside the qualified names in ``skip`` (recognised layers) are left out.
    """
    skipped = tuple(f"{s}." for s in skip if s)
    out: dict[str, list[tuple[str, str]]] = {}
    for name, m in model.named_modules():
        if name.startswith(skipped) or name in skip:
            continue
        cat = _category(m)
        if cat is not None:
            out.setdefault(cat, []).append((name, type(m).__name__))
    return out


def _kinds(found: list[tuple[str, str]]) -> str:
    """``"18 LayerNorm, 5 LayerNorm2d (e.g. 'features.1.0.block.2')"``."""
    counts: dict[str, int] = {}
    for _, cls in found:
        counts[cls] = counts.get(cls, 0) + 1
    kinds = ", ".join(f"{n} {cls}" for cls, n in counts.items())
    return f"{kinds} (e.g. {found[0][0]!r})"


def no_site_message(model: nn.Module) -> str:
    """The refusal of a model with no site: what it has, why that is not a site, the fix."""
    found = inventory(model)
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    head = (
        f"find_sites: {type(model).__name__} has no BatchNorm2d and no recognised Transformer "
        "layer (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, torchvision ViT "
        "EncoderBlock), so it has no dropout site"
    )
    if not found:
        what = f"It has {convs} Conv2d and no normalisation or attention layer at all"
        return f"{head}. {what}. What you can do: {WHAT_TO_DO}"
    parts = [f"{_kinds(items)}: not a site, because {_WHY[cat]}" for cat, items in found.items()]
    return f"{head}. It has " + "; ".join(parts) + f". What you can do: {WHAT_TO_DO}"


def left_out_note(model: nn.Module) -> str | None:
    """For a ConvNet whose batch norms are its sites: a note naming the attention blocks
    (and their LayerNorms) that patterns do not reach, or None when there are none."""
    found = inventory(model)
    attn = found.get("attention")
    if not attn:
        return None
    extra = found.get("LayerNorm")
    also = f" and {_kinds(extra)}" if extra else ""
    return (
        f"{type(model).__name__}'s attention blocks are not sites: {_kinds(attn)}{also} are "
        f"left out, because {_WHY['attention']}; the patterns act after its BatchNorm2d "
        "layers only"
    )
