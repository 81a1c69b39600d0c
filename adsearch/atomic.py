"""Atomic file writes: readers see the old file or the new one, never half of one.

Every write goes to a temp file in the target's folder and is renamed over the target. With
``durable`` the data is fsynced first (and with ``sync_dir`` the folder after the rename), so
the write survives a power loss and not only a crash. Standard library only, so any layer may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = True,
    sync_dir: bool = False,
    prefix: str | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically. ``sync_dir`` (with ``durable``) also fsyncs the
    folder, so the rename itself survives a power loss; ``prefix`` names the temp file
    (default ``.NAME.``), so a caller can find temp files that a crash left behind."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(p)  # "No space left on device" then names the file
        raise
    if durable and sync_dir and hasattr(os, "O_DIRECTORY"):
        dfd = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, durable: bool = True) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), durable=durable)


def write_json_atomic(
    path: str | os.PathLike[str], data: Any, *, durable: bool = True, **dump_kwargs: Any
) -> None:
    """Write ``data`` as JSON atomically; ``dump_kwargs`` go to :func:`json.dumps`. Data that
    cannot be encoded raises before anything is written."""
    write_text_atomic(path, json.dumps(data, **dump_kwargs), durable=durable)
