"""The exported pattern-set file: versioned, plain JSON that users can read and edit.

Format (``format_version`` 1)::

    {
      "format": "adsearch.patternset",
      "format_version": 1,
      "space": "conv-3",                 # SearchSpace.name
      "space_fingerprint": "3f2a...",    # SearchSpace.fingerprint() (optional on read)
      "patterns": [ {...}, {...}, {...} ],   # one pattern object per site
      "provenance": {                    # all keys optional / null when unknown
        "search": "cifar-mini", "trial_id": 17, "reward": 0.612,
        "recheck": {                     # only when the search re-checked the pattern
          "selected_on": "recheck mean", "mean": 0.598, "n": 3,
          "seeds": [.., .., ..], "values": [.., .., ..], "trial_ids": [17, 40, 41]
        }
      }
    }

``reward`` is the trial's own (single-seed) value; ``recheck`` gives every full-budget
result of the pattern and their mean, which ``export --best`` ranked it on.

A file written for another space (a different kind or number of sites) or with a value
table that no longer matches is refused with a :class:`~adsearch.errors.PatternError`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adsearch.errors import PatternError
from adsearch.patterns.decode import decode_patterns
from adsearch.patterns.space import Pattern, SearchSpace
from adsearch.strict import check_keys

FORMAT = "adsearch.patternset"
FORMAT_VERSION = 1
#: The keys of a pattern file's top-level object.
_FILE_KEYS = ("format", "format_version", "space", "space_fingerprint", "patterns", "provenance")


@dataclass(frozen=True)
class Provenance:
    search: str | None = None
    trial_id: int | None = None
    reward: float | None = None  # the trial's own value (one seed)
    recheck: dict[str, Any] | None = None  # the pattern's re-check: seeds, values, mean, n
    # each site's map where the search recorded it: {"maps": [[H, W], ...], "source": words}
    # (adsearch.patterns.mapsides); `pattern show` draws at these sides
    site_maps: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"search": self.search, "trial_id": self.trial_id,
                               "reward": self.reward}
        if self.recheck is not None:
            out["recheck"] = dict(self.recheck)
        if self.site_maps is not None:
            out["site_maps"] = dict(self.site_maps)
        return out


@dataclass(frozen=True)
class PatternSet:
    space: SearchSpace
    patterns: tuple[Pattern, ...]
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patterns", tuple(self.patterns))
        self.space.encode(self.patterns)  # validates count and types

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "space": self.space.name,
            "space_fingerprint": self.space.fingerprint(),
            "patterns": [p.to_dict() for p in self.patterns],
            "provenance": self.provenance.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "pattern file") -> PatternSet:
        if not isinstance(data, dict):
            raise PatternError(f"{source}: expected a JSON object at the top level")
        if data.get("format") != FORMAT:
            raise PatternError(
                f"{source}: not an adsearch pattern file (format is {data.get('format')!r}, "
                f"expected {FORMAT!r}); write one with `adsearch export --best`"
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PatternError(
                f"{source}: format_version {version!r} is not supported; this adsearch reads "
                f"version {FORMAT_VERSION}"
            )
        check_keys(data, _FILE_KEYS, source, error=PatternError)
        try:
            space = SearchSpace.from_name(data.get("space", ""))
        except PatternError as exc:
            raise PatternError(f"{source}: {exc}") from None
        fp = data.get("space_fingerprint")
        if fp is not None and fp != space.fingerprint():
            raise PatternError(
                f"{source}: written for a different value table of space {space.name} "
                f"(fingerprint {fp}, this adsearch has {space.fingerprint()})"
            )
        raw = data.get("patterns")
        if not isinstance(raw, list):
            raise PatternError(f"{source}: 'patterns' must be a list with one object per site")
        try:
            pats = decode_patterns(raw, space)
        except PatternError as exc:
            raise PatternError(f"{source}: {exc}") from None
        prov = data.get("provenance") or {}
        if not isinstance(prov, dict):
            raise PatternError(f"{source}: 'provenance' must be an object")
        recheck = prov.get("recheck")
        if recheck is not None and not isinstance(recheck, dict):
            raise PatternError(f"{source}: 'provenance.recheck' must be an object")
        site_maps = prov.get("site_maps")
        if site_maps is not None and not isinstance(site_maps, dict):
            raise PatternError(f"{source}: 'provenance.site_maps' must be an object")
        try:
            provenance = Provenance(
                search=prov.get("search"), trial_id=prov.get("trial_id"), reward=prov.get("reward"),
                recheck=recheck, site_maps=site_maps,
            )
            return cls(space, pats, provenance)
        except PatternError as exc:
            raise PatternError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, *, source: str = "pattern file") -> PatternSet:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PatternError(f"{source}: invalid JSON ({exc})") from None
        return cls.from_dict(data, source=source)

    def check_space(self, expected: SearchSpace, *, source: str = "pattern file") -> None:
        """Refuse a file written for another kind or number of sites than ``expected``
        (a ``+off`` file runs on the model of the plain space and vice versa)."""
        if not self.space.same_sites(expected):
            raise PatternError(
                f"{source}: written for space {self.space.name}, but this model needs space "
                f"{expected.name}"
            )


def load_patternset(path: str | os.PathLike[str]) -> PatternSet:
    """Read a pattern file; every problem is a PatternError naming the path."""
    p = Path(path)
    if p.is_dir():
        found = sorted(q.name for q in p.glob("*.json"))[:3]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise PatternError(f"pattern file {p} is a directory{hint}; give the pattern file "
                           "itself, a JSON file written by `adsearch export --best -o FILE`")
    if not p.is_file():
        raise PatternError(f"pattern file {p} does not exist (write one with `adsearch export --best`)")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PatternError(f"pattern file {p}: cannot read it ({exc})") from None
    return PatternSet.from_json(text, source=f"pattern file {p}")


def save_patternset(ps: PatternSet, path: str | os.PathLike[str]) -> Path:
    """Write atomically (temp file, fsync, rename): a crash never leaves half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(ps.to_json() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
