"""How to run the ``adsearch`` command from the user's shell, for every hint that suggests one
(issue 23 §3). Standard library only, so any layer may use it.

``make run`` installs adsearch into ``.venv`` and does not activate it (a Makefile cannot
change its caller's shell), so after it a plain ``adsearch status`` is "command not found".
A hint therefore names the command the way it works *now*: ``adsearch`` when the
``adsearch`` on ``PATH`` is this installation's, else the path of this installation's
script (relative to the working directory when it lies below it, e.g.
``.venv/bin/adsearch``), else ``python -m adsearch`` with this interpreter.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def _script() -> Path | None:
    """This installation's ``adsearch`` script: next to the interpreter (a venv's ``bin``)."""
    here = Path(sys.executable).parent / "adsearch"
    return here if here.is_file() and os.access(here, os.X_OK) else None


def adsearch_command() -> str:
    """The shell words that run this adsearch, e.g. ``adsearch`` or ``.venv/bin/adsearch``."""
    script = _script()
    found = shutil.which("adsearch")
    if found is not None and (script is None or _same(Path(found), script)):
        return "adsearch"
    if script is not None:
        try:
            rel = script.absolute().relative_to(Path.cwd().absolute())
            return str(rel)
        except ValueError:
            return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m adsearch"


def runnable(text: str) -> str:
    """``text`` with every suggested command (a backticked "adsearch ...") spelled the
    way it runs in this shell (:func:`adsearch_command`): error messages and status lines
    are written with plain ``adsearch``."""
    cmd = adsearch_command()
    return text if cmd == "adsearch" else text.replace("`adsearch ", f"`{cmd} ")


def on_path() -> bool:
    """Whether a plain ``adsearch`` in this shell runs this installation."""
    return adsearch_command() == "adsearch"


def activate_hint() -> str | None:
    """How to get a plain ``adsearch`` in the user's shell, or None when it works already:
    the activate command of this installation's virtual environment."""
    if on_path():
        return None
    activate = Path(sys.executable).parent / "activate"
    if not activate.is_file():
        return None
    try:
        where = str(activate.absolute().relative_to(Path.cwd().absolute()))
    except ValueError:
        where = shlex.quote(str(activate.absolute()))
    return f"source {where}"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
