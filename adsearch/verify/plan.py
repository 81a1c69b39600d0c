"""What a verify run trains: the baseline grids, the regularizers, and the planned trials.

A verify run of search ``NAME`` is a search of its own, ``NAME-verify``, in the same store,
with the ``fixed`` controller: its trials are planned here, not sampled. Each planned trial
is one (stage, regularizer, seed) child run:

- stage ``tune``: every setting of each baseline's grid, at the tuning seeds; its reward is
  the child's *validation* reward, and the best setting of each baseline is picked on it.
  A baseline given with ``--tuned SPEC`` (already tuned on validation elsewhere) has no
  grid here: its given setting is the one tested;
- stage ``test``: ``none``, the top-k patterns of ``NAME`` and the tuned best of each
  baseline, at seeds ``0..N-1``; the same seed gives the same initialisation and data order
  to every regularizer (the tasks seed torch and the data order from the trial seed), so the
  runs pair up seed by seed.

A trial is identified by ``pattern_hash = hash(stage, regularizer)`` plus its seed, so
planning twice adds nothing twice (an interrupted verify continues). No torch here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from adsearch.errors import ConfigError
from adsearch.strict import strict_from_dict

#: Drop rates of every baseline grid (issue 14; the paper tunes its baselines, grid **ours**).
GRID_RATES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
#: DropBlock block sides in px, crossed with :data:`GRID_RATES`.
DROPBLOCK_SIZES: tuple[int, ...] = (3, 5, 7)
#: Baselines that act on (N, C, H, W) feature maps.
CONV_BASELINES: tuple[str, ...] = ("dropout", "spatial", "dropblock")
#: The seed of the tuning runs (**ours**): not one of the test seeds 0..N-1, so the setting
#: picked for a baseline is not picked on the very runs it is then tested with.
TUNE_SEED = 10_000


def seq_baselines() -> tuple[str, ...]:
    """Baselines that act on (N, T, D) sequence states (models.sites.SEQ_BASELINE_KINDS)."""
    from adsearch.models.sites import SEQ_BASELINE_KINDS

    return tuple(k for k in SEQ_BASELINE_KINDS if k != "none")


def baseline_kinds(space_kind: str, requested: Sequence[str] | None,
                   option: str = "--baselines") -> tuple[str, ...]:
    """The baselines to tune for a space of ``space_kind`` ("conv" or "seq").

    ``requested`` None: every baseline valid for the space. Raises ConfigError on a name
    that is unknown or not valid for the space (e.g. DropBlock on a sequence model); the
    message starts with ``option``, the command-line option that asked for it.
    """
    valid = CONV_BASELINES if space_kind == "conv" else seq_baselines()
    if requested is None:
        return valid
    known = set(CONV_BASELINES) | set(seq_baselines())
    out: list[str] = []
    for name in requested:
        if name not in known:
            raise ConfigError(f"{option}: unknown baseline {name!r}; use some of "
                              f"{', '.join(sorted(known))}")
        if name not in valid:
            raise ConfigError(f"{option}: {name} does not apply to a {space_kind} space; "
                              f"for this search use some of {', '.join(valid)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"--baselines: empty list; use some of {', '.join(valid)}")
    return tuple(out)


def grid(kind: str) -> list[dict[str, Any]]:
    """Every setting of baseline ``kind``'s grid, as ``make_dropout`` spec dicts."""
    if kind == "dropblock":
        return [{"kind": kind, "drop_prob": p, "block_size": b}
                for p in GRID_RATES for b in DROPBLOCK_SIZES]
    return [{"kind": kind, "drop_prob": p} for p in GRID_RATES]


def parse_spec(text: str, space_kind: str, option: str) -> dict[str, Any]:
    """One regularizer setting as the command line gives it: ``none``, ``KIND:RATE``
    (``dropout:0.1``), ``dropblock:RATE:BLOCK`` (block side in px) or a JSON spec object such
    as ``{"kind": "variational", "drop_prob": 0.3}``; checked against the baselines that fit
    a space of ``space_kind`` ("conv" or "seq"). Returns a ``make_dropout`` spec dict
    (``{"kind": "none"}`` for none). ``option`` (``--reference``, ``--tuned``) names the
    option in the ConfigError raised on a bad value."""
    raw = text.strip()
    if raw == "none":
        return {"kind": "none"}
    spec: dict[str, Any]
    if raw.startswith("{"):
        try:
            spec = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{option} {text!r}: invalid JSON ({exc})") from None
        if not isinstance(spec, dict) or "kind" not in spec:
            raise ConfigError(f"{option} {text!r}: a JSON spec is an object with a \"kind\"")
    else:
        parts = raw.split(":")
        try:
            nums = [float(x) for x in parts[1:]]
        except ValueError:
            nums = []
        if len(parts) not in (2, 3) or len(nums) != len(parts) - 1:
            raise ConfigError(f"{option} {text!r}: use none, KIND:RATE (dropout:0.1), "
                              "dropblock:RATE:BLOCK or a JSON spec")
        spec = {"kind": parts[0], "drop_prob": nums[0]}
        if len(nums) == 2:
            spec["block_size"] = int(nums[1])
    if spec["kind"] == "none":
        return {"kind": "none"}
    baseline_kinds(space_kind, [str(spec["kind"])], f"{option} {text!r}")  # unknown or misfit
    p = spec.get("drop_prob")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ConfigError(f"{option} {text!r}: drop_prob {p!r} must be a number in [0, 1)")
    if spec["kind"] == "dropblock" and not isinstance(spec.get("block_size"), int):
        raise ConfigError(f"{option} {text!r}: dropblock needs a block size, e.g. "
                          "dropblock:0.1:5")
    return spec


def given_settings(texts: Sequence[str], space_kind: str,
                   kinds: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """``adsearch verify --tuned SPEC`` (repeatable): baseline settings already tuned on
    validation elsewhere, one per kind, each a kind of ``kinds`` (the baselines compared).
    Returns ``{kind: spec}`` in the order given, or None when none is given. Raises
    ConfigError on a bad spec, ``none``, a kind given twice or one not compared."""
    given: dict[str, dict[str, Any]] = {}
    for text in texts:
        spec = parse_spec(text, space_kind, "--tuned")
        kind = str(spec["kind"])
        if kind == "none":
            raise ConfigError(f"--tuned {text!r}: none has no setting to tune (it is always "
                              "compared); give a baseline's setting, e.g. --tuned dropout:0.2")
        if kind in given:
            raise ConfigError(f"--tuned: two settings of {kind} ({describe(given[kind])} and "
                              f"{describe(spec)}); give one --tuned per baseline")
        if kind not in kinds:
            raise ConfigError(f"--tuned {text!r}: {kind} is not among the baselines compared "
                              f"({', '.join(kinds)}); add it to --baselines or drop this "
                              "--tuned")
        given[kind] = spec
    return given or None


def describe(spec: dict[str, Any]) -> str:
    """A short label of a baseline spec: ``dropblock p=0.1 b=5``."""
    if spec["kind"] == "none":
        return "none"
    label = f"{spec['kind']} p={spec['drop_prob']:g}"
    return label + (f" b={spec['block_size']}" if "block_size" in spec else "")


@dataclass(frozen=True)
class Regularizer:
    """One regularizer of the test stage.

    Attributes:
        label: its name in tables and JSON (``none``, ``pattern 1``, ``dropblock p=0.1 b=5``).
        role: ``none``, ``pattern`` (a top-k pattern of the search), ``compared`` (the best
            pattern of a ``--compare`` search) or ``baseline``.
        kind: ``none``, ``pattern`` or the baseline kind.
        stored: what the trial stores in its ``pattern`` column (patterns, or [spec]).
        source_trial: the search trial a pattern comes from (None otherwise).
    """

    label: str
    role: str
    kind: str
    stored: list[Any]
    source_trial: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Regularizer:
        return strict_from_dict(cls, data, "verify regularizer", word="field")


def trial_key(stage: str, stored: list[Any]) -> str:
    """The ``pattern_hash`` of a planned trial: stage and regularizer (seed is its own column)."""
    blob = json.dumps([stage, stored], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def none_regularizer() -> Regularizer:
    return Regularizer("none", "none", "none", [{"kind": "none"}])


def baseline_regularizer(spec: dict[str, Any]) -> Regularizer:
    return Regularizer(describe(spec), "baseline", str(spec["kind"]), [dict(spec)])


def pattern_regularizers(patterns: Sequence[dict[str, Any]]) -> list[Regularizer]:
    """``patterns``: the plan's ``patterns`` entries (trial_id, reward, pattern)."""
    return [Regularizer(f"pattern {i}", "pattern", "pattern", list(p["pattern"]),
                        int(p["trial_id"])) for i, p in enumerate(patterns, 1)]


def compared_regularizers(entries: Sequence[dict[str, Any]]) -> list[Regularizer]:
    """``entries``: the plan's ``compared`` list (search, trial_id, reward, pattern, and
    ``space`` when that search drew from the other pattern family of the same sites: its
    pattern is then stored as ``{"kind": "patterns", "space", "patterns"}``, which the child
    decodes with that space, see :func:`adsearch.daemon.child.regularizer_of`)."""
    return [Regularizer(f"{e['search']} best", "compared", "pattern", _compared_stored(e),
                        int(e["trial_id"])) for e in entries]


def _compared_stored(entry: dict[str, Any]) -> list[Any]:
    if entry.get("space") is None:
        return list(entry["pattern"])
    return [{"kind": "patterns", "space": entry["space"], "patterns": list(entry["pattern"])}]


def check_counts(top_k: int, seeds: int) -> None:
    """k >= 1 patterns and >= 2 seeds (a confidence interval needs two values)."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"--top-k: invalid value {top_k!r}; use an integer >= 1")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise ConfigError(f"--seeds: invalid value {seeds!r}; a confidence interval over seeds "
                          "needs at least 2 seeds")
