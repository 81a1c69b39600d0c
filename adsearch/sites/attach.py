"""Insert dropout ops into any model at the sites :func:`find_sites` reports, undoably.

The insertion follows ``torch.nn.utils.parametrize``: each host module's class is swapped
for a generated subclass whose ``forward`` calls the original one and then applies the op
(or, for ``qkv``, applies it to the attention's query/key/value inputs first). The op is
registered as a child module ``adsearch_drop`` of the host (of the enclosing block for a
``downsample`` container), so ``model.train()``/``eval()``, ``.to()`` and
:func:`adsearch.ops.set_progress` reach it; the ops hold no parameters or buffers, so
``state_dict()`` keys and values are unchanged. In eval mode the swapped ``forward`` calls
the original directly: the output is the original's, bit for bit, and no forward hook is
registered, so ``nn.TransformerEncoderLayer``'s inference fast path still applies.
:meth:`Attachment.detach` restores every class and attribute.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adsearch.errors import ConfigError, SpaceMismatchError
from adsearch.models.sites import (
    chain,
    conv_residual,
    drop_module,
    is_active,
    regularizer_for_sites,
    seq_sublayer_specs,
)
from adsearch.patterns import PatternSet, SearchSpace
from adsearch.sites.find import Site, first_tensor, space_for, survey

_ATTR = "_adsearch_insert"  # a host's __dict__ entry: its _Insert
_HANDLE = "_adsearch_attachment"  # the model's __dict__ entry: its Attachment
_CHILD = "adsearch_drop"  # the registered name of the op module


@dataclass
class _Insert:
    after: nn.Module | None = None  # applied to the host's output
    qkv: nn.Module | None = None  # applied to each of query, key, value


class SeqLayout(nn.Module):
    """Apply ``inner`` (an op on ``(N, T, D)``) to a tensor of layout ``(N, T, D)``
    (``batch_first``) or ``(T, N, D)``; tensors of another rank pass unchanged (e.g. a
    position table ``(T, D)`` from an ``nn.Embedding``)."""

    def __init__(self, inner: nn.Module, batch_first: bool) -> None:
        super().__init__()
        self.inner = inner
        self.batch_first = batch_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            return x
        if self.batch_first:
            return self.inner(x)
        return self.inner(x.transpose(0, 1)).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"batch_first={self.batch_first}"


_QKV_NAMES = ("query", "key", "value")
_swapped: dict[type[nn.Module], type] = {}


def _drop_qkv(
    op: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    args = tuple(op(a) if i < 3 else a for i, a in enumerate(args))
    kwargs = {k: (op(v) if k in _QKV_NAMES else v) for k, v in kwargs.items()}
    return args, kwargs


def _swapped_class(base: type[nn.Module]) -> type:
    """The subclass of ``base`` whose forward applies the host's :class:`_Insert`."""
    cls = _swapped.get(base)
    if cls is None:

        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if not self.training:
                return base.forward(self, *args, **kwargs)
            ins: _Insert = self.__dict__[_ATTR]
            if ins.qkv is not None:
                args, kwargs = _drop_qkv(ins.qkv, args, kwargs)
            out = base.forward(self, *args, **kwargs)
            return out if ins.after is None else ins.after(out)

        def __reduce_ex__(self: nn.Module, protocol: Any) -> tuple[Any, ...]:
            # pickle (torch.save) and deepcopy rebuild the swapped class from its base: it
            # has the base's name, so pickle's look-up by name would find the base instead
            return _new_host, (base,), self.__getstate__()

        cls = type(
            base.__name__,
            (base,),
            {
                "forward": forward,
                "__reduce_ex__": __reduce_ex__,
                "__module__": base.__module__,
                "__qualname__": base.__qualname__,
            },
        )
        _swapped[base] = cls
    return cls


def _new_host(base: type[nn.Module]) -> nn.Module:
    """An empty host of the swapped class of ``base``, for unpickling and deepcopy; its
    ``__dict__`` (the ops included) is then restored by ``nn.Module.__setstate__``."""
    host: nn.Module = object.__new__(_swapped_class(base))
    return host


def attachment_of(model: nn.Module) -> Attachment | None:
    """The handle of the ops attached to ``model``, or None.

    A model saved with ``torch.save(model)`` while attached, loaded again with
    ``torch.load(path, weights_only=False)`` (or deep-copied), keeps its ops and its
    handle: ``attachment_of(model).detach()`` removes them.
    """
    att = model.__dict__.get(_HANDLE)
    return att if isinstance(att, Attachment) and att.attached else None


class Attachment:
    """The handle :func:`attach` returns; a context manager that detaches on exit.

    Attributes:
        model: the model the ops were inserted into.
        sites: the site table the ops follow (see :class:`~adsearch.sites.Site`).
        space: the model's search space (``conv-K`` or ``seq-2``).
        placements: qualified names of the modules where an op acts, in order
            (``<block>.downsample`` for a shortcut).
        notes: what :func:`find_sites` found that the table alone does not say (each is
            also warned once by :func:`attach`).

    Each site's map (``site.map_shape``, see :class:`~adsearch.sites.Site`) is the dry run's
    when ``attach`` had an ``example_input``; without one, the first forward pass records
    the map that really reaches each site (``map_source == "forward"``) and ``sites`` is
    updated then. In a search's child (``$ADSEARCH_TRIAL`` set) the maps are reported to
    the trial as soon as they are known (:meth:`adsearch.trial.Trial.record_sites`), so
    ``adsearch show`` and ``export`` draw the script's patterns at its own map sides.
    """

    def __init__(self, model: nn.Module, sites: Sequence[Site], space: SearchSpace) -> None:
        self.model = model
        self.sites = tuple(sites)
        self.notes: tuple[str, ...] = tuple(getattr(sites, "notes", ()))
        self.space = space
        self.placements: tuple[str, ...] = ()
        self._hosts: list[tuple[nn.Module, type, nn.Module]] = []  # (host, class, op owner)
        self._shortcuts: list[nn.Module] = []  # blocks whose downsample was None
        self._probes: list[_MapProbe] = []  # first-forward map recorders not yet fired
        self._attached = True

    @property
    def map_shapes(self) -> tuple[tuple[int, int] | None, ...]:
        """Per site, the map its pattern acts on: conv ``(H, W)`` px, seq ``(T, D)``; None
        where not known yet (no ``example_input`` and no forward pass so far)."""
        return tuple(s.map_shape for s in self.sites)

    def _watch_maps(self, hosts: Sequence[Any]) -> None:
        """Record each site's map at the first forward pass (one hook per site, removed
        when it fires) where the dry run did not run on the user's input."""
        mods = dict(self.model.named_modules())
        layout = {(h.sublayer, h.name): h.batch_first for h in hosts}
        for site in self.sites:
            if site.map_source == "example" or not site.modules:
                continue
            name = site.modules[0]
            probe = _MapProbe(self, site.index, layout.get((site.name, name), True))
            probe.handle = mods[name].register_forward_hook(probe)
            self._probes.append(probe)

    def _record_map(self, index: int, out: Any, batch_first: bool) -> None:
        t = first_tensor(out)
        pos = next((k for k, s in enumerate(self.sites) if s.index == index), None)
        if t is not None and pos is not None:
            site = self.sites[pos]
            shape: tuple[int, ...] = ()
            if site.kind == "conv" and t.dim() == 4:
                shape = (int(t.shape[2]), int(t.shape[3]))
            elif site.kind == "seq" and t.dim() == 3:
                n_t_d = tuple(int(v) for v in t.shape)
                shape = n_t_d if batch_first else (n_t_d[1], n_t_d[0], n_t_d[2])
            if shape:
                rows = list(self.sites)
                rows[pos] = replace(site, shape=shape, map_source="forward")
                self.sites = tuple(rows)
        if self._probes and all(p.fired for p in self._probes):
            self._probes.clear()
            report_maps(self)

    @property
    def attached(self) -> bool:
        return self._attached

    def _insert(
        self, name: str, host: nn.Module, op: nn.Module, role: str, owner: nn.Module | None = None
    ) -> None:
        owner = host if owner is None else owner
        if _ATTR not in host.__dict__:
            host.__dict__[_ATTR] = _Insert()
            self._hosts.append((host, type(host), owner))
            host.__class__ = _swapped_class(type(host))
        ins: _Insert = host.__dict__[_ATTR]
        if getattr(ins, role) is not None:  # two routes to one host: both act, in order
            op = nn.Sequential(getattr(ins, role), op)
        setattr(ins, role, op)
        owner.add_module(_CHILD if owner is host else f"{_CHILD}_{role}", op)
        self.placements += (name,)

    def _identity_shortcut(self, name: str, block: nn.Module, op: nn.Module) -> None:
        block.downsample = op  # torchvision's blocks call self.downsample(x) when not None
        self._shortcuts.append(block)
        self.placements += (f"{name}.downsample",)

    def detach(self) -> None:
        """Remove every inserted op and restore the original classes (idempotent)."""
        if not self._attached:
            return
        for probe in self._probes:
            probe.remove()
        self._probes.clear()
        for host, cls, owner in reversed(self._hosts):
            host.__class__ = cls
            del host.__dict__[_ATTR]
            for child in [n for n in owner._modules if n.startswith(_CHILD)]:
                del owner._modules[child]
        for block in self._shortcuts:
            del block._modules["downsample"]
            object.__setattr__(block, "downsample", None)  # as torchvision's blocks hold it
        self._hosts.clear()
        self._shortcuts.clear()
        if self.model.__dict__.get(_HANDLE) is self:
            del self.model.__dict__[_HANDLE]
        self._attached = False

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"Attachment(space={self.space.name}, ops={len(self.placements)}, {state})"


class _MapProbe:
    """A forward hook that records one site's map at the first forward pass and removes
    itself (a class, not a closure, so an attached model still pickles)."""

    def __init__(self, att: Attachment, index: int, batch_first: bool) -> None:
        self.att = att
        self.index = index
        self.batch_first = batch_first
        self.handle: Any = None
        self.fired = False

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def __call__(self, _module: nn.Module, _args: Any, out: Any) -> None:
        if self.fired or torch.compiler.is_compiling():  # a traced call records nothing:
            return  # Dynamo cannot touch the handle (pass example_input when compiling)
        self.fired = True
        self.remove()
        self.att._record_map(self.index, out, self.batch_first)


def report_maps(att: Attachment) -> None:
    """In a search's child (``$ADSEARCH_TRIAL`` set), tell the trial each site's map, for
    ``adsearch show`` and ``export``: the trial directory's sites file, as
    :meth:`adsearch.trial.Trial.record_sites` writes it (written here from the ground-floor
    names, so ``sites`` does not import the trial API above it). A failure to write is
    warned, never raised: training goes on."""
    from adsearch.trial_files import ENV_TRIAL, SITES_FILE

    spec = os.environ.get(ENV_TRIAL)
    if not spec:
        return
    from adsearch.atomic import write_json_atomic

    maps = [None if m is None else list(m) for m in att.map_shapes]
    try:
        write_json_atomic(Path(spec).parent / SITES_FILE,
                          {"maps": maps, "sources": [s.map_source for s in att.sites]},
                          durable=False)
    except OSError as exc:
        warnings.warn(f"attach: could not report the site maps to the trial ({exc})",
                      UserWarning, stacklevel=2)


def _specs(regularizer: Any, space: SearchSpace, sites: Sequence[Site]) -> list[Any]:
    """Per-site specs, with a wrong site count named in both numbers and the fix."""
    got: SearchSpace | None = None
    if isinstance(regularizer, PatternSet):
        got = regularizer.space
    elif isinstance(regularizer, Sequence) and not isinstance(regularizer, (str, bytes)):
        got = SearchSpace(space.kind, max(1, len(regularizer)))
    if got is not None and not got.same_sites(space):  # a +off file fits its plain space
        if space.kind == "conv":
            where = ", ".join(f"{s.name} {'x'.join(map(str, s.shape))}" for s in sites)
            fix = (
                f"search or write a {space.name} pattern set for this model (`adsearch sites` "
                "prints its table), or pass the example_input it trains at: the stage count "
                "follows the feature-map resolutions"
            )
            detail = f"{space.num_sites} stage(s): {where}"
        else:
            fix = "use a seq-2 pattern set, as the built-in Transformer tasks export"
            detail = f"space {space.name}"
        count = (
            f"space {got.name}"
            if isinstance(regularizer, PatternSet)
            else f"{len(regularizer)} pattern(s)"
        )
        raise SpaceMismatchError(
            f"attach: the regularizer is written for {count} ({got.num_sites} site(s)), but this "
            f"model has {space.num_sites} site(s) ({detail}); {fix}"
        )
    return regularizer_for_sites(regularizer, space)


def attach(model: nn.Module, regularizer: Any, example_input: Any = None) -> Attachment:
    """Insert ``regularizer``'s ops at the sites of ``model`` and return the handle.

    Args:
        model: any ``nn.Module`` that :func:`find_sites` recognises.
        regularizer: a PatternSet (its space must be the model's), a list with one pattern
            per site, a baseline spec dict (e.g. ``{"kind": "dropblock", "drop_prob": 0.1}``)
            or None (nothing is inserted).
        example_input: one batch for the dry run (see :func:`find_sites`); pass your real
            input size for a ConvNet. For a Transformer it lets the dry run check each
            embedding's layout against the layers' ``batch_first`` (an embedding that
            contradicts them is dropped in its own layout, with a warning). Without it,
            each site's map is recorded at the first forward pass (``map_shapes``).

    ConvNets: site ``k``'s spec acts after every batch norm of stage ``k``; a pattern with
    ``residual`` also acts on the shortcut of each torchvision ``BasicBlock``/``Bottleneck``
    of the stage (after ``downsample``, or on the identity). Transformers: each seq pattern
    acts at the sub-layers it names, in every layer (see docs/sites.md).

    Raises:
        ConfigError: no site, or ops already attached (detach first).
        SpaceMismatchError: a regularizer for another number of sites or the wrong pattern
            kind (a ``PatternError``; in a search it stops the search, see
            adsearch/daemon/failures.py).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"attach: expected a torch.nn.Module, got {type(model).__name__}")
    if any(_ATTR in m.__dict__ for m in model.modules()):
        raise ConfigError(
            "attach: this model already has adsearch ops attached; detach them first: "
            "handle.detach(), or adsearch.sites.attachment_of(model).detach() for a model "
            "loaded or copied while attached"
        )
    sites, hosts = survey(model, example_input)
    space = space_for(sites)
    specs = _specs(regularizer, space, sites)
    att = Attachment(model, sites, space)
    mods = dict(model.named_modules())
    try:
        if space.kind == "conv":
            for site, spec in zip(sites, specs, strict=True):
                if not is_active(spec):
                    continue
                for name in site.modules:
                    att._insert(name, mods[name], drop_module(spec), "after")
                if conv_residual(spec):
                    for bname in site.shortcuts:
                        block = mods[bname]
                        if isinstance(block.downsample, nn.Module):
                            att._insert(
                                f"{bname}.downsample",
                                block.downsample,
                                drop_module(spec),
                                "after",
                                block,
                            )
                        else:
                            att._identity_shortcut(bname, block, drop_module(spec))
        else:
            routed = seq_sublayer_specs(specs)
            for host in hosts:  # each embedding in the layout the dry run found
                here = routed[host.sublayer]
                if here:
                    op = SeqLayout(chain(here), host.batch_first)
                    att._insert(
                        host.name, host.module, op, "qkv" if host.role == "qkv" else "after"
                    )
    except BaseException:
        att.detach()
        raise
    model.__dict__[_HANDLE] = att  # pickled and deep-copied with the model: attachment_of
    for note in att.notes:  # e.g. an embedding whose layout contradicts the layers'
        warnings.warn(f"attach: {note}", UserWarning, stacklevel=2)
    att._watch_maps(hosts)  # no example_input: the first forward pass records the maps
    if not att._probes:
        report_maps(att)
    return att
