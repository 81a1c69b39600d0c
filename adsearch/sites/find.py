"""Find the dropout sites of any PyTorch model with one dry-run forward pass.

Two kinds of model are recognised (see docs/sites.md):

- **ConvNets** (``kind="conv"``): every ``BatchNorm2d`` is a place where the pattern acts,
  as in the paper. The batch norms are grouped into *stages* by the resolution ``(H, W)``
  of their output (**ours**): one stage per distinct resolution, highest first, so a new
  stage begins where the resolution changes; a batch norm at a resolution seen before
  joins that stage (a block whose shortcut runs before its main path, as in RegNet and
  ShuffleNet, does not split a stage). Stage ``k`` is site ``k`` of the space ``conv-K``. In torchvision's
  ``BasicBlock``/``Bottleneck`` the batch norm of the ``downsample`` branch belongs to the
  block's *shortcut*: the pattern acts there only when its ``residual`` field is set.
- **Transformers** (``kind="seq"``): the sub-layers of ``nn.TransformerEncoderLayer``,
  ``nn.TransformerDecoderLayer`` (either ``batch_first``) and torchvision's ViT
  ``EncoderBlock``, plus ``nn.Embedding`` outputs (ViT: the patch + position embedding),
  are mapped onto the sub-layer names of :data:`~adsearch.patterns.SEQ_SITES`. One row per
  sub-layer name that the model has; the space is ``seq-2`` as for the built-in
  Transformers, and each pattern acts at the sub-layers its ``sites`` field names.

Everything here runs the model once in eval mode under ``torch.no_grad()`` and restores
every module's training flag afterwards. The table is a :class:`SiteTable`, a list of
:class:`Site` rows whose ``notes`` say what the dry run found that the user should know: an
embedding whose layout contradicts the Transformer layers' ``batch_first`` (the op then
follows the embedding's own layout), or attention blocks of a ConvNet that are not sites.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from adsearch.errors import ConfigError
from adsearch.patterns import SEQ_SITES, SearchSpace
from adsearch.sites.explain import left_out_note, no_site_message

#: Patterns in the space of a Transformer found by :func:`find_sites` (as ``seq-2`` of the
#: built-in Transformer tasks, so their exported files apply unchanged).
SEQ_SPACE_SITES = 2
#: Image side used for a ConvNet's dry run when no ``example_input`` is given.
DEFAULT_IMAGE_SIDE = 224


@dataclass(frozen=True)
class Site:
    """One row of the site table.

    Attributes:
        index: position of the site in the space (conv) or in :data:`SEQ_SITES` order (seq).
        name: ``"stage<k>"`` (conv) or the sub-layer name such as ``"ffn_hidden"`` (seq).
        kind: ``"conv"`` or ``"seq"``.
        modules: qualified names (``model.named_modules()``) of the modules after whose
            output the op acts; for ``qkv``, the attention modules whose q/k/v inputs it drops.
        shape: conv: the feature map ``(H, W)`` in pixels; seq: ``(N, T, D)`` of the first
            module's tensor, batch first; ``()`` when the model was not run.
        channels: the distinct channel counts (conv ``C``, seq ``D``) of the modules.
        shortcuts: conv only: the blocks whose shortcut the op also acts on when its
            pattern sets ``residual`` (torchvision ``BasicBlock``/``Bottleneck``).
        map_source: where ``shape`` comes from: ``"example"`` (the dry run on the
            ``example_input`` given), ``"default"`` (a ConvNet's dry run on the
            ``(1, C, 224, 224)`` zero image: not the size you train at), ``"forward"`` (the
            first forward pass after :func:`~adsearch.sites.attach`, which records it once)
            or ``""`` (not run: a Transformer without ``example_input``).
    """

    index: int
    name: str
    kind: str
    modules: tuple[str, ...]
    shape: tuple[int, ...]
    channels: tuple[int, ...]
    shortcuts: tuple[str, ...] = ()
    map_source: str = ""

    @property
    def map_shape(self) -> tuple[int, int] | None:
        """The map the site's pattern is drawn on: conv ``(H, W)`` in px; seq ``(T, D)``
        (time steps, width); None when the model was not run (``map_source`` is ``""``)."""
        if self.kind == "conv" and len(self.shape) == 2:
            return int(self.shape[0]), int(self.shape[1])
        if self.kind == "seq" and len(self.shape) == 3:
            return int(self.shape[1]), int(self.shape[2])
        return None

    def to_dict(self) -> dict[str, Any]:
        shape = self.map_shape
        return {
            "index": self.index,
            "name": self.name,
            "kind": self.kind,
            "modules": list(self.modules),
            "shape": list(self.shape),
            "channels": list(self.channels),
            "shortcuts": list(self.shortcuts),
            "map_shape": None if shape is None else list(shape),
            "map_source": self.map_source,
        }


class SiteTable(list[Site]):
    """The rows :func:`find_sites` returns (a ``list`` of :class:`Site`), with ``notes``:
    sentences about the model that the rows alone do not say (printed by ``adsearch
    sites``, warned by :func:`~adsearch.sites.attach`)."""

    def __init__(self, rows: Iterable[Site] = (), notes: Iterable[str] = ()) -> None:
        super().__init__(rows)
        self.notes: tuple[str, ...] = tuple(notes)


def space_for(sites: Sequence[Site]) -> SearchSpace:
    """The search space of a site table: ``conv-K`` for K stages, ``seq-2`` for a Transformer."""
    if not sites:
        raise ConfigError("space_for: the site table is empty (find_sites found no site)")
    if sites[0].kind == "conv":
        return SearchSpace("conv", len(sites))
    return SearchSpace("seq", SEQ_SPACE_SITES)


# ---------------------------------------------------------------------------- recognisers
def _vit_block_type() -> type[nn.Module] | None:
    try:
        from torchvision.models.vision_transformer import EncoderBlock
    except ImportError:  # torchvision is optional for find_sites
        return None
    return EncoderBlock


def _resnet_block_types() -> tuple[type[nn.Module], ...]:
    try:
        from torchvision.models.resnet import BasicBlock, Bottleneck
    except ImportError:
        return ()
    return (BasicBlock, Bottleneck)


def _torchvision_vit_encoder_type() -> type[nn.Module] | None:
    try:
        from torchvision.models.vision_transformer import Encoder
    except ImportError:
        return None
    return Encoder


@dataclass(frozen=True)
class SeqHost:
    """A module where one seq sub-layer acts: after its output, or on its q/k/v inputs.

    ``role`` is ``"after"`` or ``"qkv"``; ``batch_first`` the layout of its tensors.
    """

    sublayer: str
    name: str
    module: nn.Module
    role: str
    batch_first: bool


def seq_hosts(model: nn.Module) -> list[SeqHost]:
    """Every place a seq sub-layer acts in ``model``, in module order (no forward pass)."""
    vit_block = _vit_block_type()
    vit_encoder = _torchvision_vit_encoder_type()
    layers = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
    hosts: list[SeqHost] = []
    mods = dict(model.named_modules())
    for name, m in model.named_modules():
        mod: Any = m  # torchvision/torch layers: attributes typed loosely
        pre = f"{name}." if name else ""
        if isinstance(m, layers):
            bf = bool(mod.self_attn.batch_first)
            attns = [("self_attn", mod.self_attn)]
            outs = ["dropout1"]
            ffn_out = "dropout2"
            if isinstance(m, nn.TransformerDecoderLayer):
                attns.append(("multihead_attn", mod.multihead_attn))
                outs.append("dropout2")
                ffn_out = "dropout3"
            hosts += [SeqHost("qkv", pre + a, mod, "qkv", bf) for a, mod in attns]
            hosts += [SeqHost("attn_out", pre + o, getattr(mod, o), "after", bf) for o in outs]
            hosts.append(SeqHost("ffn_hidden", pre + "dropout", mod.dropout, "after", bf))
            hosts.append(SeqHost("ffn_out", pre + ffn_out, getattr(mod, ffn_out), "after", bf))
            hosts.append(SeqHost("residual", name, m, "after", bf))
        elif vit_block is not None and isinstance(m, vit_block):
            hosts.append(SeqHost("qkv", pre + "self_attention", mod.self_attention, "qkv", True))
            hosts.append(SeqHost("attn_out", pre + "dropout", mod.dropout, "after", True))
            hosts.append(SeqHost("ffn_hidden", pre + "mlp.2", mod.mlp[2], "after", True))
            hosts.append(SeqHost("ffn_out", pre + "mlp.4", mod.mlp[4], "after", True))
            hosts.append(SeqHost("residual", name, m, "after", True))
        elif vit_encoder is not None and isinstance(m, vit_encoder):
            # patch + class token + position embedding, before the first block
            hosts.append(SeqHost("emb", pre + "dropout", mod.dropout, "after", True))
    if not hosts:
        return []
    bf = hosts[0].batch_first
    for name, m in mods.items():
        if isinstance(m, nn.Embedding):
            hosts.append(SeqHost("emb", name, m, "after", bf))
    return hosts


# ---------------------------------------------------------------------------- dry run
def _call(model: nn.Module, example_input: Any) -> None:
    if isinstance(example_input, torch.Tensor):
        model(example_input)
    elif isinstance(example_input, Mapping):
        model(**example_input)
    elif isinstance(example_input, (tuple, list)):
        model(*example_input)
    else:
        raise ConfigError(
            f"example_input: expected a tensor, a tuple of tensors or a dict of keyword "
            f"tensors, got {type(example_input).__name__}"
        )


def _dry_run(
    model: nn.Module,
    example_input: Any,
    watch: Sequence[nn.Module],
    on: Callable[[nn.Module, Any], None],
) -> None:
    """Run ``model(example_input)`` once (eval, no grad), calling ``on(module, output)``
    the first time each watched module returns; training flags are restored after."""
    flags = [(m, m.training) for m in model.modules()]
    seen: set[int] = set()

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        if id(mod) not in seen:
            seen.add(id(mod))
            on(mod, out)

    handles = [m.register_forward_hook(hook) for m in watch]
    try:
        model.eval()
        with torch.no_grad():
            try:
                _call(model, example_input)
            except ConfigError:
                raise
            except Exception as exc:  # the user's model or input: say which, keep the cause
                raise ConfigError(
                    f"find_sites: the dry-run forward pass failed ({type(exc).__name__}: {exc}); "
                    "pass an example_input the model accepts, e.g. one batch of its real input"
                ) from exc
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags:
            m.training = flag


def _default_image(model: nn.Module) -> torch.Tensor:
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    chans = first.in_channels if first is not None else 3
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros(1, chans, DEFAULT_IMAGE_SIDE, DEFAULT_IMAGE_SIDE, device=device)


def first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


# ---------------------------------------------------------------------------- conv
def _batch_norms(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm))
    ]


def _shortcut_owner(model: nn.Module) -> dict[str, str]:
    """Qualified name of each batch norm inside a torchvision block's ``downsample``
    -> that block's qualified name."""
    kinds = _resnet_block_types()
    out: dict[str, str] = {}
    if not kinds:
        return out
    for name, m in model.named_modules():
        ds = getattr(m, "downsample", None)
        if isinstance(m, kinds) and isinstance(ds, nn.Module):
            pre = f"{name}.downsample"
            for sub, mm in ds.named_modules():
                if isinstance(mm, (nn.BatchNorm2d, nn.SyncBatchNorm)):
                    out[f"{pre}.{sub}" if sub else pre] = name
    return out


def conv_sites(model: nn.Module, example_input: Any) -> list[Site]:
    """The conv site table (empty when the model has no 2-D batch norm)."""
    bns = _batch_norms(model)
    if not bns:
        return []
    names = {id(m): n for n, m in bns}
    calls: list[tuple[str, tuple[int, int], int]] = []

    def on(mod: nn.Module, out: Any) -> None:
        t = first_tensor(out)
        if t is not None and t.dim() == 4:
            calls.append((names[id(mod)], (int(t.shape[2]), int(t.shape[3])), int(t.shape[1])))

    x = _default_image(model) if example_input is None else example_input
    _dry_run(model, x, [m for _, m in bns], on)
    owner = _shortcut_owner(model)
    stages: list[dict[str, Any]] = []
    by_shape: dict[tuple[int, int], dict[str, Any]] = {}
    for name, hw, c in calls:
        if hw not in by_shape:
            by_shape[hw] = {"shape": hw, "modules": [], "channels": [], "shortcuts": []}
            stages.append(by_shape[hw])
        st = by_shape[hw]
        if c not in st["channels"]:
            st["channels"].append(c)
        if name in owner:
            if owner[name] not in st["shortcuts"]:
                st["shortcuts"].append(owner[name])
        else:
            st["modules"].append(name)
    # Highest resolution first (a block's downsampled shortcut may run before its main path).
    stages.sort(key=lambda st: -st["shape"][0] * st["shape"][1])
    shortcut_blocks = {b for st in stages for b in st["shortcuts"]}
    # Identity shortcuts: a torchvision block without downsample belongs to the stage of
    # its last batch norm.
    kinds = _resnet_block_types()
    stage_of = {n: i for i, st in enumerate(stages) for n in st["modules"]}
    for bname, blk in model.named_modules():
        if kinds and isinstance(blk, kinds) and bname not in shortcut_blocks:
            inside = [
                stage_of[f"{bname}.{s}"]
                for s, _ in blk.named_modules()
                if f"{bname}.{s}" in stage_of
            ]
            if inside:
                stages[max(inside)]["shortcuts"].append(bname)
    return [
        Site(
            i,
            f"stage{i}",
            "conv",
            tuple(st["modules"]),
            st["shape"],
            tuple(st["channels"]),
            tuple(st["shortcuts"]),
            "default" if example_input is None else "example",
        )
        for i, st in enumerate(stages)
    ]


# ---------------------------------------------------------------------------- seq
def _emb_layouts(
    hosts: Sequence[SeqHost], shapes: Mapping[int, tuple[int, ...]]
) -> tuple[list[SeqHost], list[str]]:
    """``hosts`` with each embedding's layout checked against the Transformer layers'.

    An ``emb`` host takes the layers' ``batch_first``; a model may embed batch-first token
    ids and transpose before time-first layers (or the reverse), and the pattern would then
    run along the batch axis. The layers' dry-run outputs give the batch size ``N``; an
    embedding output ``(a, b, D)`` whose ``N`` sits on the other axis than the layers say
    contradicts them: its host then follows its own layout, with a note saying so. When
    ``a == b == N`` the layout cannot be told, and a note says that too.
    """
    layer = next(
        (h for h in hosts if h.sublayer != "emb" and len(shapes.get(id(h.module), ())) == 3),
        None,
    )
    if layer is None:
        return list(hosts), []
    ls = shapes[id(layer.module)]
    batch = ls[0] if layer.batch_first else ls[1]
    out: list[SeqHost] = []
    notes: list[str] = []
    for h in hosts:
        e = shapes.get(id(h.module), ())
        if h.sublayer != "emb" or len(e) != 3:
            out.append(h)
            continue
        at = 0 if h.batch_first else 1  # where the layers put the batch
        bf = f"batch_first={h.batch_first}: {layer.name!r} outputs {ls}"
        if e[0] == e[1] == batch:
            notes.append(
                f"emb: the layout of {h.name!r} (output {e}) cannot be checked against the "
                f"Transformer layers' ({bf}): the example input's batch size equals its "
                f"sequence length ({batch}); pass an example_input whose batch size differs "
                "from its length"
            )
        elif e[at] != batch and e[1 - at] == batch:
            own = not h.batch_first
            notes.append(
                f"emb: {h.name!r} outputs {e}, {'batch' if own else 'time'} first, but the "
                f"Transformer layers are {'time' if own else 'batch'} first ({bf}); the model "
                "transposes between them, so the emb op follows the embedding's own layout "
                f"{'(N, T, D)' if own else '(T, N, D)'} and its pattern runs along time, not "
                "along the batch"
            )
            h = SeqHost(h.sublayer, h.name, h.module, h.role, own)
        out.append(h)
    return out, notes


def _seq_survey(
    model: nn.Module, example_input: Any, hosts: Sequence[SeqHost]
) -> tuple[list[Site], list[SeqHost], list[str]]:
    """The seq rows, the hosts with their checked layouts, and the notes."""
    shapes: dict[int, tuple[int, ...]] = {}
    notes: list[str] = []
    if example_input is not None:

        def on(mod: nn.Module, out: Any) -> None:
            t = first_tensor(out)
            if t is not None:
                shapes[id(mod)] = tuple(int(s) for s in t.shape)

        _dry_run(model, example_input, list({id(h.module): h.module for h in hosts}.values()), on)
        hosts, notes = _emb_layouts(hosts, shapes)
    elif any(h.sublayer == "emb" for h in hosts):
        notes.append(
            "emb: the embeddings' layout was not checked against the Transformer layers' "
            "batch_first (no example_input, so the model was not run); pass one batch of "
            "your input as example_input"
        )
    rows: list[Site] = []
    for sub in SEQ_SITES:
        mine = [h for h in hosts if h.sublayer == sub]
        if not mine:
            continue
        shape: tuple[int, ...] = ()
        chans: list[int] = []
        for h in mine:
            s = shapes.get(id(h.module), ())
            if len(s) == 3 and not h.batch_first:
                s = (s[1], s[0], s[2])
            if s and not shape:
                shape = s
            if s and s[-1] not in chans:
                chans.append(s[-1])
        rows.append(
            Site(SEQ_SITES.index(sub), sub, "seq", tuple(h.name for h in mine), shape,
                 tuple(chans), (), "example" if shape else "")
        )
    return rows, list(hosts), notes


def seq_sites(
    model: nn.Module, example_input: Any, hosts: Sequence[SeqHost] | None = None
) -> list[Site]:
    """The seq site table (one row per sub-layer name present), shapes from the dry run
    when ``example_input`` is given."""
    hosts = list(seq_hosts(model) if hosts is None else hosts)
    return _seq_survey(model, example_input, hosts)[0] if hosts else []


def survey(
    model: nn.Module, example_input: Any = None
) -> tuple[SiteTable, list[SeqHost]]:
    """The site table (as :func:`find_sites`) and, for a Transformer, the hosts where the
    ops act, with each embedding's layout as the dry run found it (what ``attach`` uses)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"find_sites: expected a torch.nn.Module, got {type(model).__name__}")
    hosts = seq_hosts(model)
    has_bn = bool(_batch_norms(model))
    if hosts and has_bn:
        raise ConfigError(
            "find_sites: the model has both BatchNorm2d layers and Transformer layers; "
            "adsearch attaches one kind of space (conv-K or seq-2) per model: attach to the "
            "ConvNet or the Transformer part (a submodule) instead"
        )
    if hosts:
        rows, hosts, notes = _seq_survey(model, example_input, hosts)
        return SiteTable(rows, notes), hosts
    if has_bn:
        sites = conv_sites(model, example_input)
        if sites:
            note = left_out_note(model)
            return SiteTable(sites, [note] if note else []), []
        raise ConfigError(
            "find_sites: the model's BatchNorm2d layers were not called on a 4-D tensor in "
            "the dry run; pass an example_input that runs them, e.g. torch.zeros(1, 3, 32, 32)"
        )
    raise ConfigError(no_site_message(model))


def find_sites(model: nn.Module, example_input: Any = None) -> SiteTable:
    """The site table of ``model``: see the module docstring.

    Args:
        model: any ``nn.Module``.
        example_input: one batch the model accepts (a tensor, a tuple of positional tensors,
            or a dict of keyword tensors); ConvNets are grouped by the resolutions it
            produces, so pass your real input size. None: a ``(1, C, 224, 224)`` zero image
            for a ConvNet (C from its first ``Conv2d``); a Transformer is not run.

    Returns:
        A :class:`SiteTable`: the rows, and ``notes`` about what the rows alone do not say
        (an embedding whose layout contradicts the layers' ``batch_first``, attention blocks
        of a ConvNet left out).

    Raises:
        ConfigError: not a module; no 2-D batch norm and no recognised Transformer layer
            (the message says what the model has instead, why it is not a site, and what
            to do); both kinds at once; or the dry run failed.
    """
    return survey(model, example_input)[0]

