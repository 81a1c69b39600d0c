"""Option spellings shared by the commands (docs/cli.md, "One name for one thing").

Every command spells a child's budget ``--child-epochs``/``--child-steps`` and a file it
writes ``-o/--output``; older spellings stay as hidden aliases, resolved by :func:`one`.
"""

from __future__ import annotations

from typing import Any

from adsearch.errors import ConfigError


def one(name: str, value: Any, old: str, old_value: Any) -> Any:
    """The value of an option given under its name or its hidden old spelling (not both)."""
    if value is not None and old_value is not None:
        raise ConfigError(f"give {name} once ({old} is its old spelling)")
    return value if value is not None else old_value
