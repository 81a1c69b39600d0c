"""``adsearch dashboard`` (issue 24) on real searches: the API gives the numbers of
``status --json``, ``list --json`` and ``show --json``; bad input is a 404 or a clear message
and the server keeps serving; the server never changes a search, even polled hard while
the daemon writes; the pages render in a real browser (headless Chromium) with the search's
name, its trials and drawn charts."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from store_backends import *  # noqa: F403  (fixtures: store_url, pg_base_url)
from test_daemon_support import REPO, cli_env, run_cli
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.dashboard.app import _finite
from adsearch.dashboard.data import Source
from adsearch.dashboard.serve import make
from adsearch.store import Store

runner = CliRunner()


@contextmanager
def served(source: Source, poll_s: float | None = None) -> Iterator[tuple[str, list[str]]]:
    """The dashboard of ``source`` on a free loopback port, in a thread: ``(base URL, the
    paths it was asked for)``."""
    server = make(source, "127.0.0.1", 0, poll_s=poll_s)
    asked: list[str] = []
    app_ = server.get_app()

    def logged(environ: dict[str, Any], start_response: Any) -> Any:
        asked.append(environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", ""))
        return app_(environ, start_response)

    server.set_app(logged)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    """``(status, content type, body)``; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def api(base: str, path: str) -> Any:
    status, ctype, body = get(base + path)
    assert status == 200 and ctype == "application/json", (path, status, body)
    return json.loads(body)


def cli_json(runs: Path, *args: str) -> Any:
    res = runner.invoke(app, [*args, "--json"], env={"ADSEARCH_RUNS": str(runs)})
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _search(root: Path, name: str, controller: str, **kw: Any) -> Path:
    cfg = SearchConfig(name=name, task="synthetic", controller=controller, batch_size=2,
                       workers=2, budget_trials=8, **kw)
    run = create_search(cfg, RunDir(root / name))
    assert run_daemon(str(run.path)).finished
    return run.path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A controller search with ASHA rungs, a random search at the same budget, and a verify
    of the first (its report, with paired differences)."""
    root = tmp_path_factory.mktemp("dash") / "runs"
    _search(root, "ctrl", "transformer", scheduler="asha", min_epochs=1, max_epochs=9, eta=3,
            prune_min_trials=2, task_config={"epochs": 9})
    _search(root, "rand", "random", task_config={"epochs": 9})
    run_cli(root, "verify", "ctrl", "--top-k", "1", "--seeds", "2", "--baselines", "dropout",
            timeout=300)
    assert (root / "ctrl-verify" / "verify.json").is_file()
    return root


# ---------------------------------------------------------------------------- the API
def test_api_gives_the_numbers_of_the_cli(runs: Path) -> None:
    with served(Source(runs=runs)) as (base, _):
        rows = api(base, "/api/searches")
        listed = cli_json(runs, "list")
        assert [r["search"] for r in rows] == ["ctrl", "ctrl-verify", "rand"]
        for row, cli_row in zip(rows, listed, strict=True):  # list --json's keys, same values
            assert {k: row[k] for k in cli_row} == cli_row
        for name in ("ctrl", "rand", "ctrl-verify"):
            assert api(base, f"/api/search/{name}") == _finite(cli_json(runs, "status", name))
            assert (api(base, f"/api/search/{name}?top_k=3")
                    == _finite(cli_json(runs, "status", name, "--top-k", "3")))
        snap = api(base, "/api/search/ctrl")
        assert snap["rungs"]["rungs"] and snap["best"] is not None and snap["updates"]
        best = snap["best"]["trial_id"]
        assert (api(base, f"/api/search/ctrl/trial/{best}")
                == _finite(cli_json(runs, "show", "ctrl", str(best))))
        extra = api(base, "/api/search/ctrl/extra")
        own = cli_json(runs, "status", "ctrl")["budget"]["finished"]
        assert len(extra["series"]) == own  # one point per finished search trial
        assert [p["n"] for p in extra["series"]] == list(range(1, own + 1))
        full = [p["reward"] for p in extra["series"] if p["full"]]
        assert all((p["kind"] == "full") == p["full"] for p in extra["series"])
        assert {p["kind"] for p in extra["series"]} == {"full", "stopped"}  # ASHA stops some
        assert max(full) == pytest.approx(snap["best"]["reward"])
        # the top patterns drawn at conv-3's real map sides (32, 16, 8 px)
        assert [s["shape"] for s in extra["masks"][0]["sites"]] == [[32, 32], [16, 16], [8, 8]]
        assert extra["masks"][0]["trial_id"] == best
        t = api(base, f"/api/search/ctrl/trial/{best}/extra")
        assert t["log_tail"]["lines"] and t["log_tail"]["lines"][0].startswith("[child] trial")
        assert [r["rung"] for r in t["rungs"]] == [1.0, 3.0, 9.0]  # the best went to the top
        assert [r["promoted"] for r in t["rungs"][:2]] == [True, True]
        v = api(base, "/api/verify/ctrl-verify")
        doc = json.loads((runs / "ctrl-verify" / "verify.json").read_text())
        assert v["report"] == _finite(doc) and v["progress"]["test"] == {"done": 3 * 2}
        assert v["progress"]["tuning"] == {"done": 4}  # dropout's grid, one seed
        cmp_ = api(base, "/api/compare?s=ctrl&s=rand")
        assert [s["search"] for s in cmp_["searches"]] == ["ctrl", "rand"]
        assert all(s["budget"]["drawn"] == 8 for s in cmp_["searches"])


def test_bad_input_is_a_404_or_a_clear_message_and_the_server_goes_on(
        runs: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(runs / "rand", root / "rand")
    shutil.copytree(runs / "rand", root / "broken")
    (root / "broken" / "adsearch.db").write_bytes(b"this is not a database" * 100)
    ident = json.loads((root / "broken" / "search.json").read_text())
    ident["store"] = f"sqlite:///{root / 'broken' / 'adsearch.db'}"
    (root / "broken" / "search.json").write_text(json.dumps(ident))
    for side in ("-wal", "-shm"):
        (root / "broken" / f"adsearch.db{side}").unlink(missing_ok=True)
    with served(Source(runs=root)) as (base, _):
        for path in ("/search/nope", "/search/rand/trial/99999", "/search/rand/trial/x",
                     "/verify/rand", "/nowhere", "/static/../search.json", "/compare?s=nope"):
            status, ctype, body = get(base + path)
            assert status == 404 and ctype.startswith("text/html"), (path, status)
            assert "404" in body and "all searches" in body
        status, _, body = get(base + "/search/nope")
        assert "no search &#x27;nope&#x27;" in body and "known: broken, rand" in body
        for path in ("/api/search/nope", "/api/search/rand/trial/99999", "/api/nothing"):
            status, ctype, body = get(base + path)
            assert status == 404 and ctype == "application/json" and json.loads(body)["error"]
        # a store that cannot be read: a clear message (503), its row says so, others serve
        status, _, body = get(base + "/api/search/broken")
        assert status == 503 and "adsearch.db" in json.loads(body)["error"], (status, body)
        rows = {r["search"]: r for r in api(base, "/api/searches")}
        assert rows["broken"]["state"] == "unreadable" and rows["broken"]["error"]
        assert rows["rand"]["state"] == "finished"
        status, _, body = get(base + "/search/broken")  # the page loads; its script says why
        assert status == 200 and 'id="banner"' in body
        assert get(base + "/api/search/rand", method="POST")[0] == 405  # read-only
        assert api(base, "/api/search/rand")["search"] == "rand"


def test_cli_binds_loopback_and_says_so(runs: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "adsearch", "dashboard", "--port", "0"],
                            cwd=REPO, env=cli_env(runs), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("adsearch dashboard: http://127.0.0.1:"), first
        assert str(runs.absolute()) in first and "read-only" in first
        assert "loopback" in second and "only this machine" in second
        url = first.split()[2]
        assert json.loads(get(url + "api/searches")[2])[0]["search"] == "ctrl"
    finally:
        proc.terminate()
        proc.wait(20)
    res = runner.invoke(app, ["dashboard", "--runs", str(runs), "--store", "sqlite:///x.db"])
    assert res.exit_code == 1 and "--runs and --store exclude each other" in res.stderr
    with served(Source(runs=runs)) as (base, _):  # a port in use: a clear error, no traceback
        port = base.rsplit(":", 1)[1]
        res = runner.invoke(app, ["dashboard", "--runs", str(runs), "--port", port])
        assert res.exit_code == 1 and f"cannot serve on 127.0.0.1:{port}" in res.stderr
        assert "Traceback" not in res.output


def test_a_store_with_no_run_directory(runs: Path, store_url: str) -> None:
    """``--store URL``: every search of a store (SQLite and PostgreSQL), read in read-only
    transactions, with the numbers of ``status --store URL --search NAME --json``."""
    src = f"sqlite:///{runs / 'rand' / 'adsearch.db'}"
    res = runner.invoke(app, ["db", "copy", src, store_url, "--search", "rand"])
    assert res.exit_code == 0, res.output
    with served(Source(store_url=store_url)) as (base, _):
        rows = api(base, "/api/searches")
        assert [(r["search"], r["state"], r["daemon_pid"]) for r in rows] == [
            ("rand", "finished", None)]
        snap = api(base, "/api/search/rand")
        res = runner.invoke(app, ["status", "--store", store_url, "--search", "rand", "--json"])
        assert res.exit_code == 0, res.output
        assert snap == _finite(json.loads(res.stdout)) and snap["run_dir"] is None
        best = snap["best"]["trial_id"]
        assert api(base, f"/api/search/rand/trial/{best}")["run_dir"] is None
        assert api(base, f"/api/search/rand/trial/{best}/extra")["log_tail"] is None
        assert get(base + "/verify/rand")[0] == 404  # no verify search


def test_light_commands_load_no_web_server() -> None:
    code = ("import sys; import adsearch.cli.main; "
            "bad = [m for m in sys.modules if m.startswith(('wsgiref', 'adsearch.dashboard.app',"
            " 'adsearch.dashboard.serve', 'adsearch.dashboard.data', 'torch'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# ---------------------------------------------------------------------------- read-only
def _outcome(run_dir: Path) -> list[tuple[Any, ...]]:
    """Every trial of a search with what it drew and got, in id order."""
    store = Store(RunDir(run_dir).store_url(), readonly=True)
    try:
        search = store.get_search(run_dir.name)
        res = {r.trial_id: r for r in store.results(search.id)}
        return [(t.id, t.pattern_hash, t.seed, t.state, t.purpose, t.controller_version,
                 res[t.id].reward if t.id in res else None,
                 res[t.id].learned_reward if t.id in res else None)
                for t in store.trials(search.id)]
    finally:
        store.close()


def _files(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_a_hard_polled_dashboard_changes_nothing(tmp_path: Path) -> None:
    """The same seeded search twice, once with the dashboard polled hard by four threads
    while the daemon writes: identical trials, patterns, seeds and rewards. Then, on the
    finished search, polling changes no byte of the run directory."""

    def search(root: Path) -> Path:
        cfg = SearchConfig(name="s", task="synthetic", controller="transformer", batch_size=2,
                           workers=1, budget_trials=10, seed=7,
                           task_config={"sleep": 0.05, "epochs": 3},
                           scheduler="asha", min_epochs=1, max_epochs=3, prune_min_trials=2)
        run = create_search(cfg, RunDir(root / "s"))
        assert run_daemon(str(run.path)).finished
        return run.path

    quiet = _outcome(search(tmp_path / "quiet"))
    root = tmp_path / "polled"
    stop = threading.Event()
    seen: list[tuple[int, str, str]] = []
    with served(Source(runs=root)) as (base, _):
        def hammer(k: int) -> None:
            paths = ["/api/searches", "/api/search/s", "/api/search/s/extra",
                     "/api/search/s/trial/1", "/api/search/s/trial/1/extra",
                     "/api/compare?s=s", "/search/s"]
            i = k
            while not stop.is_set():
                path = paths[i % len(paths)]
                i += 1
                status, _, body = get(base + path)
                ok = status == 200 and path == "/api/search/s"
                seen.append((status, json.loads(body)["state"] if ok else body[:300], path))

        threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        try:
            polled = search(root)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert _outcome(polled) == quiet
        assert len(seen) > 100, len(seen)  # it really was polled hard
        first = next(i for i, (s, st, _) in enumerate(seen) if s == 200 and st == "running")
        # before the search exists: 404 (no run directory) or 503 (no store in it yet)
        assert all(s in (200, 404, 503) for s, _, _ in seen[:first]), seen[:first]
        # once it runs, every page answers; a trial's pages answer 404 only until that trial
        # is drawn (the search can be running before its first trial exists)
        trial_ok = next((i for i, (s, _, p) in enumerate(seen) if s == 200 and "/trial/" in p),
                        len(seen))
        for i, (s, body, path) in enumerate(seen[first:], start=first):
            if "/trial/" in path and i < trial_ok:
                assert s in (200, 404), (path, s, body)
            else:
                assert s == 200, (path, s, body)
        assert trial_ok < len(seen)  # trial 1's pages were served while the search ran
        before = _files(polled)
        stop.clear()
        threads = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
        assert _files(polled) == before


# ---------------------------------------------------------------------------- browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, tmp: Path, *extra: str) -> str:
    """The DOM of ``url`` after its scripts ran (headless Chromium, no network but loopback)."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}",
           "--virtual-time-budget=5000", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium (.ci/run "
                                             "installs it)")
def test_pages_render_in_a_real_browser(runs: Path, tmp_path: Path) -> None:
    with served(Source(runs=runs), poll_s=0.5) as (base, asked):
        dom = chromium(base + "/", tmp_path, "--dump-dom")
        assert 'data-loaded="1"' in dom, dom[-3000:]
        for name in ("ctrl", "rand", "ctrl-verify"):
            assert f'href="/search/{name}">{name}</a>' in dom

        asked.clear()
        dom = chromium(base + "/search/ctrl", tmp_path, "--dump-dom")
        assert 'data-loaded="1"' in dom and '<h1 id="search-name">ctrl' in dom
        snap = api(base, "/api/search/ctrl")
        extra = api(base, "/api/search/ctrl/extra")
        for t in extra["trials"]:  # the latest trials, linked
            assert f'href="/search/ctrl/trial/{t["trial_id"]}">{t["trial_id"]}</a>' in dom
        assert f'<b id="best-reward">{snap["best"]["reward"]:.4f}</b>' in dom
        for chart in ("chart-best", "chart-learned"):  # drawn: an SVG with a plotted series
            assert f'<svg id="{chart}" class="chart"' in dom and 'class="series"' in dom
        assert len(extra["masks"]) >= 1  # the top patterns x 3 sites x 2 channels each
        assert dom.count('class="mask"') == len(extra["masks"]) * 3 * 2
        assert "Spearman" in dom  # the rung table's rank agreement
        # live: the page asked for its data again without a reload
        assert sum(1 for a in asked if a.startswith("/api/search/ctrl?")) >= 2, asked
        assert sum(1 for a in asked if a == "/search/ctrl?") == 1

        shot = tmp_path / "search.png"
        chromium(base + "/search/ctrl", tmp_path, f"--screenshot={shot}",
                 "--window-size=1280,900", "--hide-scrollbars")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        best = snap["best"]["trial_id"]
        dom = chromium(f"{base}/search/ctrl/trial/{best}", tmp_path, "--dump-dom")
        assert f'<h1 id="trial-title">trial {best} of' in dom
        assert '<svg id="chart-curve" class="chart"' in dom and 'id="log-tail"' in dom
        assert dom.count('class="mask"') == 3 * 2

        dom = chromium(base + "/verify/ctrl-verify", tmp_path, "--dump-dom")
        assert "Δ vs none [95% CI]" in dom and '<svg id="chart-verify" class="chart"' in dom
        assert dom.count('class="bar"') == 2  # pattern 1 and tuned dropout, each vs none

        dom = chromium(base + "/compare?s=ctrl&s=rand", tmp_path, "--dump-dom")
        assert '<svg id="chart-compare" class="chart"' in dom
        assert dom.count('class="series"') == 2

        dom = chromium(base + "/search/nope", tmp_path, "--dump-dom")
        assert '<h1 id="error-title">404: not found</h1>' in dom
