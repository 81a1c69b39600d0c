"""Crash-safe controller checkpoints: atomic writes, the last K kept, integrity-checked
loads that fall back to the previous checkpoint.

File layout (format 1, **ours**; details in ``docs/controller.md``)::

    ADSEARCH-CKPT 1\\n
    <sha256 of the payload, 64 hex chars>\\n
    <payload: torch.save() of a dict of plain data and tensors>

The payload dict holds ``format``, ``format_version``, ``seq`` (save counter), ``version``
(controller version), ``kind``, ``space`` (name and fingerprint), ``config`` (the
controller config as a plain dict), ``consumed_ids`` (sorted trial ids whose rewards are
already in the weights), ``event`` (the daemon's ``controller.update`` event, or None),
``controller`` (``controller.state_dict()``: weights, Adam state, baseline, RNG states) and
``provenance`` (adsearch and torch versions, UTC time). Loading
verifies the checksum, then ``torch.load(weights_only=True)``: a checkpoint is data, never
code. Files are named ``ckpt-<seq:08d>-v<version:08d>.pt``; the newest is the highest seq.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adsearch import atomic
from adsearch.controller.base import Controller
from adsearch.controller.factory import controller_from_state
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace

MAGIC = b"ADSEARCH-CKPT 1\n"
FORMAT = "adsearch-controller-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{8,})-v(\d{8,})\.pt$")
_TMP_PREFIX = ".tmp-ckpt-"


class CheckpointFallbackWarning(UserWarning):
    """A newer checkpoint was unreadable and an older one was loaded instead."""


class SpaceMismatchError(CheckpointError):
    """The checkpoint was written for another search space (never a reason to fall back)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a checkpoint lives and which controller version it holds (from its file name)."""

    path: Path
    seq: int  # save counter within the directory (monotonic)
    version: int  # controller version (updates applied) stored in it


@dataclass(frozen=True)
class LoadedCheckpoint:
    """The result of the last successful load, with notes on any checkpoint skipped."""

    info: CheckpointInfo
    consumed_ids: frozenset[int]
    notes: tuple[str, ...] = field(default_factory=tuple)  # one line per skipped file
    provenance: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] | None = None  # what save(event=...) stored: {"kind", "message", "data"}


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, fsync of
    the directory): a crash leaves either the old state or the new file, never a partial one."""
    atomic.write_bytes_atomic(path, data, sync_dir=True, prefix=_TMP_PREFIX)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify and decode one checkpoint file into its payload dict.

    Raises:
        CheckpointError: missing, truncated, corrupt (checksum), or not a checkpoint.
    """
    import torch

    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {p}: cannot read it ({exc.strerror})") from None
    head = len(MAGIC) + 65
    if not blob.startswith(MAGIC):
        raise CheckpointError(
            f"checkpoint {p}: not an adsearch controller checkpoint (bad header); "
            "delete it or point the daemon at the right checkpoint directory"
        )
    if len(blob) < head or blob[head - 1 : head] != b"\n":
        raise CheckpointError(f"checkpoint {p}: truncated header; the file is corrupt, delete it")
    digest, payload = blob[len(MAGIC) : head - 1], blob[head:]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(
            f"checkpoint {p}: checksum mismatch ({len(payload)} payload bytes): the file is "
            "truncated or corrupt; delete it to resume from the previous checkpoint"
        )
    try:
        data = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad archives
        raise CheckpointError(
            f"checkpoint {p}: cannot decode the payload ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
            "delete it to resume from the previous checkpoint"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {p}: payload is not an adsearch controller checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {p}: format version {data.get('format_version')!r}, this adsearch "
            f"reads version {FORMAT_VERSION}; upgrade adsearch or start a fresh search"
        )
    return data


class CheckpointManager:
    """Saves and restores controller checkpoints in ``directory``, keeping the newest ``keep``.

    Args:
        directory: created if missing; holds only this search's checkpoints.
        keep: number of checkpoints kept after each save (>= 1; the rest are deleted).
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ConfigError(f"CheckpointManager.keep: invalid value {keep!r}; must be >= 1")
        self.directory = Path(directory)
        self.keep = keep
        self.last_saved: CheckpointInfo | None = None
        self.last_loaded: LoadedCheckpoint | None = None

    # ------------------------------------------------------------------ listing
    def checkpoints(self) -> list[CheckpointInfo]:
        """Checkpoint files in the directory, oldest first (by save counter)."""
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append(CheckpointInfo(p, int(m.group(1)), int(m.group(2))))
        return sorted(out, key=lambda c: c.seq)

    def latest(self) -> CheckpointInfo | None:
        """The newest checkpoint file (not verified), or None."""
        cps = self.checkpoints()
        return cps[-1] if cps else None

    # ------------------------------------------------------------------ save
    def save(self, controller: Controller, consumed_ids: Iterable[int],
             event: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint of ``controller`` and the trial ids already consumed.

        Atomic (temp file, fsync, rename); afterwards only the newest ``keep`` remain.
        Returns the new file's path; :attr:`last_saved` also gives its version and seq.
        ``event`` (plain JSON data: ``{"kind", "message", "data"}``) travels in the file, so
        a daemon killed after the save and before recording it in the store can record the
        checkpoint and its event together when it restarts (``last_loaded.event``).
        """
        import torch

        import adsearch

        ids = []
        for i in consumed_ids:
            if isinstance(i, bool) or not isinstance(i, int):
                raise ConfigError(
                    f"CheckpointManager.save: consumed id {i!r} is not an integer trial id"
                )
            ids.append(i)
        self.directory.mkdir(parents=True, exist_ok=True)
        prev = self.latest()
        seq = (prev.seq + 1) if prev else 1
        state = controller.state_dict()
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "seq": seq,
            "version": int(controller.version),
            "kind": controller.kind,
            "space": dict(state["space"]),
            "config": controller.config.to_dict(),
            "consumed_ids": sorted(set(ids)),
            "event": event,
            "controller": state,
            "provenance": {
                "adsearch": adsearch.__version__,
                "torch": str(torch.__version__),
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seed": int(controller.seed),
            },
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        body = buf.getvalue()
        blob = MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        path = self.directory / f"ckpt-{seq:08d}-v{int(controller.version):08d}.pt"
        write_bytes_atomic(path, blob)
        self.last_saved = CheckpointInfo(path, seq, int(controller.version))
        self._prune()
        return path

    def _prune(self) -> None:
        for old in self.checkpoints()[: -self.keep]:
            old.path.unlink(missing_ok=True)
        for tmp in self.directory.glob(_TMP_PREFIX + "*"):  # left by a crash mid-write
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ load
    def load(self, path: str | os.PathLike[str], space: SearchSpace) -> tuple[Controller, set[int]]:
        """Load one checkpoint file (no fallback).

        Raises:
            CheckpointError: unreadable/corrupt file, or written for another search space.
        """
        p = Path(path)
        data = read_checkpoint(p)
        sp = data.get("space")
        if not isinstance(sp, dict) or (sp.get("name"), sp.get("fingerprint")) != (
            space.name,
            space.fingerprint(),
        ):
            name = sp.get("name") if isinstance(sp, dict) else sp
            fp = sp.get("fingerprint") if isinstance(sp, dict) else "?"
            raise SpaceMismatchError(
                f"checkpoint {p} belongs to search space {name!r} (fingerprint {fp}), not to "
                f"{space.name!r} (fingerprint {space.fingerprint()}): it is another search's "
                "checkpoint; use that search's checkpoint directory or start a fresh search"
            )
        try:
            ids = {int(i) for i in data["consumed_ids"]}
            ctrl = controller_from_state(data["controller"], space)
            version = int(data["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {p}: incomplete payload ({type(exc).__name__}: {exc}); delete it "
                "to resume from the previous checkpoint"
            ) from None
        if ctrl.version != version:
            raise CheckpointError(
                f"checkpoint {p}: header says version {version} but the controller state is at "
                f"{ctrl.version}; the file is inconsistent, delete it"
            )
        info = CheckpointInfo(p, int(data.get("seq", 0)), version)
        event = data.get("event")
        self.last_loaded = LoadedCheckpoint(
            info, frozenset(ids), (), dict(data.get("provenance", {})),
            event if isinstance(event, dict) else None,
        )
        return ctrl, ids

    def load_latest(self, space: SearchSpace) -> tuple[Controller, set[int]]:
        """The newest readable checkpoint: ``(controller, consumed_ids)``.

        A corrupt or truncated newer file is skipped with a
        :class:`CheckpointFallbackWarning` and a note in ``last_loaded.notes``; a checkpoint
        of another search space is refused outright (no fallback).

        Raises:
            CheckpointError: no checkpoint at all, none readable, or another search space.
        """
        cps = self.checkpoints()
        if not cps:
            raise CheckpointError(
                f"no controller checkpoint in {self.directory}; start a fresh controller "
                "(make_controller) or point at the search's checkpoint directory"
            )
        notes: list[str] = []
        for info in reversed(cps):
            try:
                ctrl, ids = self.load(info.path, space)
            except SpaceMismatchError:
                raise
            except CheckpointError as exc:
                note = f"skipped {info.path.name}: {exc}"
                notes.append(note)
                warnings.warn(note, CheckpointFallbackWarning, stacklevel=2)
                continue
            assert self.last_loaded is not None
            self.last_loaded = LoadedCheckpoint(
                self.last_loaded.info,
                self.last_loaded.consumed_ids,
                tuple(notes),
                self.last_loaded.provenance,
                self.last_loaded.event,
            )
            return ctrl, ids
        raise CheckpointError(
            f"no readable controller checkpoint in {self.directory} ({len(cps)} tried):\n"
            + "\n".join(notes)
            + "\nrestore a readable checkpoint, or continue with a new controller that is fed "
            "every stored result: `adsearch resume NAME --fresh-controller`"
        )
