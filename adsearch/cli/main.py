"""Entry point of the ``adsearch`` command.

Each command group lives in its own module and adds itself through ``register(app)``.
Library errors (:class:`~adsearch.errors.AdsearchError`) become a clean message on stderr
and exit status 1 here, at the boundary: :func:`_guard` wraps every registered command, so
the same holds under ``typer.testing.CliRunner``. Modules keep heavy imports (torch) inside
their command functions, so that light commands such as ``status`` never import torch.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from adsearch.cli.console import flags_take_no_value
from adsearch.command import runnable
from adsearch.errors import AdsearchError

err_console = Console(stderr=True)
flags_take_no_value()  # `--json`, not `--json <bool>`, in every --help

app = typer.Typer(
    name="adsearch",
    help="Learn structured dropout patterns (AutoDropout) with a crash-safe search daemon.",
    no_args_is_help=True,
    add_completion=True,  # Typer's own: --install-completion / --show-completion
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from adsearch import __version__

        typer.echo(f"adsearch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the adsearch version and exit."),
) -> None:
    """Learn structured dropout patterns (AutoDropout) with a crash-safe search daemon."""


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AdsearchError as exc:
            # a suggested `adsearch ...` spelled as it runs in this shell (not on PATH after
            # `make run`: `.venv/bin/adsearch ...`)
            err_console.print(f"[bold red]error:[/] {escape(runnable(str(exc)))}",
                              highlight=False, soft_wrap=True,
                              emoji=False)  # "mod:X:" is no emoji code
            raise typer.Exit(1) from None

    return wrapper


def _guard_all(t: typer.Typer) -> None:
    for info in t.registered_commands:
        if info.callback is not None and not getattr(info.callback, "__wrapped__", None):
            info.callback = _guard(info.callback)
    for group in t.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


def _register_all() -> None:
    from adsearch.cli import (
        calibrate_cmd,
        db_cmd,
        delete_cmd,
        pattern_cmd,
        read_cmd,
        search_cmd,
        sites_cmd,
        train_cmd,
        verify_cmd,
        worker_cmd,
    )
    from adsearch.dashboard import command as dashboard_cmd  # typer only: the server is lazy

    for mod in (search_cmd, read_cmd, train_cmd, pattern_cmd, db_cmd, worker_cmd, delete_cmd,
                verify_cmd, sites_cmd, calibrate_cmd, dashboard_cmd):
        mod.register(app)
    _guard_all(app)


_register_all()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    try:
        app(args=argv, prog_name="adsearch")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _console_main()
