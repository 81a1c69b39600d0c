"""ConvNet dropout patterns: a tiled, transformed rectangle on an (H, W) feature map.

**paper** (Pham & Le 2021): the basic pattern is a contiguous rectangle tiled over the
feature map. Each dropout site emits, in order, ``size, stride, repeat`` (the rectangle and
its tiling), ``rotate, shear_x, shear_y`` (geometric transforms), ``share_c`` (one pattern
for all channels, or one placement per channel) and ``residual`` (also apply the pattern to
the residual branch).

**ours** (documented choices, each changeable in :data:`CONV_VALUES`):

- ``size`` is the side of a *square* in pixels (the paper's rectangle, with equal sides).
- ``stride`` is the *gap* in pixels between neighbouring squares, so the tiling period is
  ``size + stride`` and squares never merge. The dropped fraction of a full tiling is
  ``size**2 / (size + stride)**2``.
- ``repeat`` is the number of squares along each axis (an ``repeat x repeat`` group), or
  ``None`` for "tile the whole map".
- ``rotate`` is in degrees, counter-clockwise; ``shear_x``/``shear_y`` are shear factors.
  Transforms act on the pattern's coordinates, so they preserve its area (det = 1) and the
  expected dropped fraction.
- Randomness: at each training step the pattern is placed at a uniformly random offset,
  one per example and also one per channel unless ``share_c``.
- Guard rail: the dropped fraction is *not* bounded; the kept units are rescaled by the
  realised kept fraction, and a mask that drops everything yields zeros, never NaN.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from adsearch.errors import PatternError
from adsearch.strict import check_keys

#: The discrete choices of every field, in token order. Change the search space here.
CONV_VALUES: dict[str, tuple[Any, ...]] = {
    "size": (1, 2, 3, 4, 5, 6, 7),
    "stride": (1, 2, 3, 4, 6, 8, 12, 16),
    "repeat": (1, 2, 3, 4, None),
    "rotate": (0, 15, 30, 45),
    "shear_x": (0.0, 0.1, 0.25, 0.5),
    "shear_y": (0.0, 0.1, 0.25, 0.5),
    "share_c": (False, True),
    "residual": (False, True),
}

CONV_FIELDS: tuple[str, ...] = tuple(CONV_VALUES)

#: **ours** (not the paper's): the "off" choice of a site, shared by conv and seq patterns.
#: ``off = True`` means "no dropout at this site" (the ops treat the pattern as identity, and
#: its other fields are ignored). Only spaces named ``<kind>-<sites>+off`` emit it; the field
#: is optional in pattern objects and left out of ``to_dict()`` when False, so files and
#: pattern hashes from before it existed read and mean exactly what they did.
OFF_VALUES: dict[str, tuple[Any, ...]] = {"off": (False, True)}


def _check_value(cls: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    # bool is an int subclass: never accept True for an int field, or 1 for a bool field.
    ok = any(type(value) is type(a) and value == a for a in allowed) or (
        value is None and None in allowed
    )
    if not ok and isinstance(value, int) and not isinstance(value, bool):
        # JSON may carry 0 for 0.0 in float fields.
        ok = any(isinstance(a, float) and float(value) == a for a in allowed)
    if not ok:
        raise PatternError(
            f"{cls}.{name}: invalid value {value!r}; allowed values are "
            f"{', '.join(repr(a) for a in allowed)}"
        )


def _from_mapping(cls_name: str, table: dict[str, tuple[Any, ...]], data: Any) -> dict[str, Any]:
    """Check a pattern's JSON object against ``table`` (every field required) and
    :data:`OFF_VALUES` (optional), with :func:`adsearch.strict.check_keys`."""
    out = check_keys(data, [*table, *OFF_VALUES], cls_name, required=table, word="field",
                     error=PatternError)
    for k, allowed in table.items():
        v = out[k]
        if isinstance(v, int) and not isinstance(v, bool) and all(
            isinstance(a, float) for a in allowed
        ):
            out[k] = float(v)
    return out


@dataclass(frozen=True)
class ConvPattern:
    """One dropout pattern for one ConvNet site. See the module docstring for semantics."""

    size: int = 3
    stride: int = 4
    repeat: int | None = None
    rotate: int = 0
    shear_x: float = 0.0
    shear_y: float = 0.0
    share_c: bool = False
    residual: bool = False
    off: bool = False  # **ours**: no dropout at this site (see OFF_VALUES)

    def __post_init__(self) -> None:
        table = {**CONV_VALUES, **OFF_VALUES}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("shear_x", "shear_y") and type(v) is int:
                object.__setattr__(self, f.name, float(v))
            _check_value("ConvPattern", f.name, getattr(self, f.name), table[f.name])

    @property
    def period(self) -> int:
        """Tiling period in pixels: ``size + stride``."""
        return self.size + self.stride

    def drop_fraction(self, height: int | None = None, width: int | None = None) -> float:
        """Expected fraction of dropped units, from the geometry alone.

        A full tiling drops ``size**2 / period**2``. A finite ``repeat x repeat`` group on an
        ``(height, width)`` map drops ``repeat**2 * size**2 / (height * width)`` (capped at 1).
        Rotation and shear preserve area, so they leave both values unchanged. An ``off``
        pattern drops nothing.
        """
        if self.off:
            return 0.0
        if self.repeat is None:
            return self.size**2 / self.period**2
        if height is None or width is None:
            raise ValueError("a finite-repeat pattern needs the map's height and width")
        return min(1.0, (self.repeat * self.size) ** 2 / (height * width))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.off:  # the format from before the off choice, byte for byte
            del data["off"]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ConvPattern:
        return cls(**_from_mapping("ConvPattern", CONV_VALUES, data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConvPattern:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PatternError(f"ConvPattern: invalid JSON ({exc})") from None
        return cls.from_dict(data)
