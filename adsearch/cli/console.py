"""How the CLI prints: a Rich console that does not wrap oddly off a terminal, and ``--help``
without a type after flags.

- :class:`CliConsole`: when its output is not a terminal (piped, logged, CI) and
  ``COLUMNS`` is unset, Rich would lay everything out at 80 columns, hard-wrapping long
  lines and squeezing tables. There it neither wraps text (a log reader wraps lines itself)
  nor squeezes tables below :data:`PIPE_WIDTH` columns. On a terminal, or with ``COLUMNS``
  set, it is a plain ``rich.console.Console``.
- :func:`flags_take_no_value`: typer 0.29's Rich help prints ``<bool>`` after every flag
  (``--json <bool>``) as if it took a value; flags show nothing there, as in click's help.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, ConsoleDimensions

#: Width of the layout when the output is not a terminal and ``COLUMNS`` is unset.
PIPE_WIDTH = 200


class CliConsole(Console):
    """A ``rich.console.Console`` that does not wrap at 80 columns off a terminal (see the
    module docstring). Decided at each print, so it follows a redirected ``sys.stdout``."""

    def _piped(self) -> bool:
        return not self.is_terminal and "COLUMNS" not in self._environ

    @property  # type: ignore[override]
    def size(self) -> ConsoleDimensions:
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and self._piped():
            return ConsoleDimensions(max(dims.width, PIPE_WIDTH), dims.height)
        return dims  # type: ignore[no-any-return]

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return bool(self._soft_wrap) or self._piped()

    @soft_wrap.setter
    def soft_wrap(self, value: bool) -> None:
        self._soft_wrap = value


def make_console(**kwargs: Any) -> Console:
    """A :class:`CliConsole` (``kwargs`` as for ``rich.console.Console``)."""
    return CliConsole(**kwargs)


def flags_take_no_value() -> None:
    """Make typer's Rich help print nothing in the type column of a flag (idempotent)."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_adsearch_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None  # a flag takes no value: `--json`, not `--json <bool>`
        return original(self, ctx)

    display_type_rich._adsearch_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
