"""``adsearch dashboard``: the command (registered by :mod:`adsearch.cli.main`).

Only typer is imported here; the server, the stores and numpy load when the command runs,
so ``status``, ``list`` and ``--help`` stay light.
"""

from __future__ import annotations

from pathlib import Path

import typer

RUNS = typer.Option(None, "--runs", metavar="DIR",
                    help="Serve the searches whose run directories are under DIR (default: "
                         "$ADSEARCH_RUNS or ./runs).")
STORE = typer.Option(None, "--store", metavar="URL",
                     help="Serve every search of this store URL instead (no run directories: "
                          "daemon state unknown).")
HOST = typer.Option("127.0.0.1", "--host",
                    help="Address to bind (default loopback: this machine only).")
PORT = typer.Option(8080, "--port", help="Port to serve on (0: any free port).")


def dashboard(
    runs: Path = RUNS,
    store_url: str = STORE,
    host: str = HOST,
    port: int = PORT,
) -> None:
    """Serve a live, read-only web page of the searches (docs/dashboard.md)."""
    from adsearch.dashboard.data import Source
    from adsearch.dashboard.serve import exposure, make
    from adsearch.errors import ConfigError

    if runs is not None and store_url is not None:
        raise ConfigError("--runs and --store exclude each other: serve the run directories "
                          "under DIR, or every search of one store URL")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port: invalid value {port}; use 0..65535 (0: any free port)")
    if store_url is None:
        from adsearch.daemon.launch import runs_root

        runs = runs if runs is not None else runs_root()
        if runs.exists() and not runs.is_dir():
            raise ConfigError(f"--runs {runs}: not a directory; give the folder that holds "
                              "the run directories (./runs by default)")
        source = Source(runs=runs)
    else:
        from adsearch.store import Store

        Store(store_url, readonly=True).close()  # a bad URL fails now, with its message
        source = Source(store_url=store_url)
    server = make(source, host, port)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"adsearch dashboard: http://{shown}:{server.server_port}/ serving "
               f"{source.describe()} (read-only)")
    typer.echo(exposure(host))
    typer.echo("Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("dashboard stopped")
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` to ``app``."""
    app.command("dashboard")(dashboard)
