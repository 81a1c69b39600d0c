"""The migrations ship with the package, and the explicit package list misses nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adsearch.store import Store
from adsearch.store.schema import migrations_dir

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {
        ".".join(d.relative_to(REPO).parts)
        for d in (REPO / "adsearch").rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
    } | {"adsearch"}
    missing = sorted(on_disk - listed)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    mapped = {p for p in listed if p.startswith("adsearch.migrations")}
    assert mapped == {"adsearch.migrations", "adsearch.migrations.versions"}
    assert cfg["package-dir"]["adsearch.migrations"] == "migrations"


def test_migrations_import_as_adsearch_migrations() -> None:
    import adsearch.migrations

    assert migrations_dir() == REPO / "migrations" == Path(adsearch.migrations.__file__).parent
    assert (migrations_dir() / "env.py").is_file() and (
        migrations_dir() / "script.py.mako"
    ).is_file()
    assert sorted(p.name for p in (migrations_dir() / "versions").glob("0*.py")) == [
        "0001_initial.py",
        "0002_event_log.py",
        "0003_queue_entries.py",
        "0004_rungs.py",
        "0005_search_v2.py",
        "0006_daemon_lease.py",
    ]


def test_reading_the_store_never_imports_torch_or_alembic(tmp_path: Path) -> None:
    """`adsearch status` reads the store: that path must stay light (a real subprocess)."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    code = (
        "import sys\n"
        "from adsearch.store import Store\n"
        f"s = Store({url!r}, readonly=True)\n"
        "s.counts(s.get_search('x').id)\n"
        "print(sorted(m for m in ('torch', 'alembic') if m in sys.modules))\n"
    )
    with Store(url) as st:  # creating a store may import alembic; reading it may not
        st.create_search("x", {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
