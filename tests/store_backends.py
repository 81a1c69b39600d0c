"""Store fixtures, imported by the tests/test_store*.py files.

``store_url`` is parametrized over the backends: ``sqlite`` (a fresh file per test) and
``postgresql`` (the database ``adsearch_test`` on the server of :func:`pg_base_url`, emptied
before each test).

PostgreSQL: set ``ADSEARCH_TEST_PG`` to the URL of a server you run (for example
``postgresql+psycopg://me@localhost/postgres``; the user must be allowed to create
databases). When it is unset, the session starts its own throw-away server: ``initdb`` into
a temporary folder and ``pg_ctl start`` on a free loopback port (fsync off), found under
``$ADSEARCH_PG_BIN``, on ``PATH`` or in ``/usr/lib/postgresql/*/bin``. The PostgreSQL cases
are skipped only when those binaries are absent (or psycopg is not installed:
``pip install 'adsearch[postgres]'``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adsearch.store import NewTrial, Store

__all__ = ["new_trials", "pg_base_url", "sqlite_url", "store", "store_url"]


def new_trials(n: int, *, start: int = 0, version: int = 0) -> list[NewTrial]:
    """Return ``n`` distinct trials as a controller would draw them."""
    return [
        NewTrial(
            pattern=[
                {"size": 3 + (i % 5), "stride": i % 3, "repeat": None, "share_c": bool(i % 2)}
            ],
            pattern_hash=f"{i:064x}"[-64:],
            tokens=[i % 7, (i // 7) % 7, 1],
            controller_version=version,
            logp=-0.5 * (i % 11),
            seed=1000 + i,
        )
        for i in range(start, start + n)
    ]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'adsearch.db'}"
        return
    base = request.getfixturevalue("pg_base_url")
    yield from _fresh_database(base)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A writable store, created at head."""
    s = Store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a new SQLite store file (for SQLite-only behaviour: WAL, read-only files)."""
    return f"sqlite:///{tmp_path / 'adsearch.db'}"


def _pg_bindir() -> Path | None:
    candidates = [os.environ.get("ADSEARCH_PG_BIN", "")]
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _PgServer:
    """A throw-away PostgreSQL server shared by every module that imports these fixtures."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.users = 0
        self._stop: list[object] = []

    def acquire(self) -> str:
        if self.url is None:
            self.url = self._start()
        self.users += 1
        return self.url

    def release(self) -> None:
        self.users -= 1
        if self.users == 0 and self._stop:
            bindir, data, root = self._stop
            subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"],  # type: ignore[operator]
                           capture_output=True, user=self._user(), timeout=60, check=False)  # fmt: skip
            shutil.rmtree(root, ignore_errors=True)  # type: ignore[arg-type]
            self.url, self._stop = None, []

    def restart(self, *, down_seconds: float = 0.0) -> None:
        """Stop the server (``-m fast``: connections are terminated), stay down for
        ``down_seconds``, then start it again on the same port and data."""
        import time

        bindir, data, root = self._stop
        run = {"check": True, "capture_output": True, "text": True, "user": self._user(), "timeout": 120}
        subprocess.run([bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], **run)  # type: ignore[operator, call-overload]  # fmt: skip
        time.sleep(down_seconds)
        subprocess.run([bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", self._opts,  # type: ignore[operator]
                        "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]  # fmt: skip

    @staticmethod
    def _user() -> str | None:
        # PostgreSQL refuses to run as root: run the server as the "postgres" user then.
        return "postgres" if os.geteuid() == 0 else None

    def _start(self) -> str:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; set ADSEARCH_TEST_PG")
        root = Path(tempfile.mkdtemp(prefix="adsearch-pg-"))
        data = root / "data"
        user = self._user()
        if user:
            shutil.chown(root, user)
        run = {"check": True, "capture_output": True, "text": True, "user": user, "timeout": 120}
        port = _free_port()
        subprocess.run([bindir / "initdb", "-D", data, "-U", "adsearch", "--auth=trust", "-E", "UTF8",
                        "--no-sync", "--no-instructions"], **run)  # type: ignore[call-overload]  # fmt: skip
        opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        try:
            subprocess.run([bindir / "pg_ctl", "-D", data, "-l", root / "server.log", "-o", opts,
                            "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]  # fmt: skip
        except subprocess.CalledProcessError as exc:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            pytest.fail(f"pg_ctl start failed: {exc.stderr}\n{log}")
        self._stop = [bindir, data, root]
        self._opts = opts
        return f"postgresql+psycopg://adsearch@127.0.0.1:{port}/postgres"


_PG = _PgServer()
TEST_DB = "adsearch_test"


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    """URL of a PostgreSQL server for the session: $ADSEARCH_TEST_PG, or a throw-away one."""
    pytest.importorskip("psycopg", reason="pip install 'adsearch[postgres]' to test PostgreSQL")
    if os.environ.get("ADSEARCH_TEST_PG"):
        yield os.environ["ADSEARCH_TEST_PG"]
        return
    url = _PG.acquire()
    try:
        yield url
    finally:
        _PG.release()


def _fresh_database(base: str, name: str = TEST_DB) -> Iterator[str]:
    """Yield the URL of the database ``name`` (``adsearch_test``, or another ``adsearch_test_*``
    when a test needs two databases) on the server, emptied first.

    Only that database is ever emptied, never the one ``base`` names.
    """
    if not name.startswith(TEST_DB):
        raise ValueError(f"test databases are named {TEST_DB}*, not {name!r}")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            # A process an earlier test left running (a worker it failed to stop) would hold
            # locks the DROP waits on, or deadlock with it: end its sessions first.
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    yield url
