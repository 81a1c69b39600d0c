"""Small helpers shared by the ops: input checks, random draws, the realised-keep scale, and
what their ``torch.compile`` forms share (see :func:`compiling`)."""

from __future__ import annotations

from typing import Any

import torch

from adsearch.errors import PatternError

#: The ``torch.library`` namespace of the ops' compiled forms (``torch.ops.adsearch.*``).
LIBRARY = "adsearch"


def check_rank(x: torch.Tensor, rank: int, layout: str, op: str) -> None:
    """Raise :class:`PatternError` unless ``x`` is a floating tensor of rank ``rank``."""
    if not isinstance(x, torch.Tensor):
        raise PatternError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != rank:
        raise PatternError(
            f"{op}: expected a {rank}-D input of shape {layout}, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise PatternError(
            f"{op}: expected a floating-point input (float32, float16, bfloat16, float64), "
            f"got {x.dtype}"
        )


def check_prob(value: float, name: str, op: str) -> float:
    """Validate a drop probability in ``[0, 1)`` (1 would drop everything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PatternError(f"{op}: {name} must be a number in [0, 1), got {value!r}")
    if not 0.0 <= float(value) < 1.0:
        raise PatternError(f"{op}: {name} must be in [0, 1), got {value!r}")
    return float(value)


def randint(
    high: int, size: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform int64 draws in ``[0, high)`` on ``device``.

    They are drawn on the generator's device (a CPU generator may drive a CUDA tensor), so
    one seeded generator reproduces the same draws on every device.
    """
    gdev = generator.device if generator is not None else device
    out = torch.randint(0, high, size, generator=generator, device=gdev, dtype=torch.int64)
    return out.to(device, non_blocking=True)


def uniform(
    shape: tuple[Any, ...],
    device: torch.device,
    generator: torch.Generator | None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Uniform ``[0, 1)`` draws of ``shape``, drawn on the generator's device and moved to
    ``device``. With no generator, ``torch.rand`` is called without the ``generator``
    keyword: that overload takes symbolic sizes, so ``torch.compile`` can trace it."""
    if generator is None:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def keep_scale(numel: int, kept: torch.Tensor) -> torch.Tensor:
    """``numel / kept`` as a float64 0-d tensor, or 0 when nothing is kept (never inf/NaN)."""
    kept = kept.to(torch.float64)
    return torch.where(kept > 0, numel / kept.clamp_min(1.0), torch.zeros_like(kept))


def compiling() -> bool:
    """True while ``torch.compile`` (or ``torch.export``) traces the caller.

    The pattern ops and DropBlock draw their masks with data-dependent Python (cached
    canvases, ``randint`` bounds taken from them, geometric gaps). Traced with symbolic
    shapes, ``torch.randint`` then fails ("SymIntArrayRef expected to contain only concrete
    integers"). While tracing, each op therefore goes through ``torch.library`` custom ops
    (``torch.ops.adsearch.*``): the graph holds one opaque node per draw and per apply,
    whose fake kernels give only the output shapes, and which run the very eager code at
    run time. In eager mode nothing changes (this check is the only cost).
    """
    return bool(torch.compiler.is_compiling())


@torch.compiler.assume_constant_result
def pattern_key(pattern: Any) -> str:
    """A pattern's JSON (``to_json()``), the ``str`` argument its custom ops take.

    Evaluated once while tracing and kept as a constant; dynamo guards on the pattern, so a
    module given another pattern is traced again.
    """
    return str(pattern.to_json())
