"""What a chaos run found (issue 12, section 6): hostile names and paths, non-finite or
wrong-typed config values, corrupt files, read-only media, a full disk, refused commands that
must write nothing. Real SQLite stores, real daemons (in-process or subprocesses), CliRunner."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon

runner = CliRunner()


def cli(runs: Path, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs)})


def clean_error(res: Any, *needles: str) -> None:
    """Exit 1, one ``error:`` line naming every needle, and no traceback."""
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output, res.output
    assert res.stderr.startswith("error: "), res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr


def finished_search(root: Path, name: str, trials: int = 4, **kw: Any) -> RunDir:
    cfg = SearchConfig(name=name, task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=trials, **kw)
    run = create_search(cfg, RunDir(root / name))
    run_daemon(str(run.path))
    return run


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# ---------------------------------------------------------------------- names and paths
@pytest.mark.parametrize("name", ["q?x", "", "a" * 300, "../x", ".hidden", "a b", "a#b", "-x"])
def test_start_refuses_names_outside_the_safe_alphabet(tmp_path: Path, name: str) -> None:
    runs = tmp_path / "runs"
    res = cli(runs, "start", "--task", "synthetic", "--name", name, "--budget-trials", "1")
    clean_error(res, "--name: invalid search name", "A-Z a-z 0-9 . _ -")
    assert tree(tmp_path) == []


def test_a_run_dir_with_url_characters_keeps_its_store_inside(tmp_path: Path) -> None:
    """`?` and `#` in the run directory stay part of the SQLite path (they were a query)."""
    run = finished_search(tmp_path / "a?b#c", "qx", trials=2)
    assert (run.path / "adsearch.db").is_file()
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["a?b#c"]
    res = runner.invoke(app, ["status", "--run-dir", str(run.path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["state"] == "finished"


@pytest.mark.parametrize("cmd", [["status", "{}"], ["resume", "{}"], ["stop", "{}"],
                                 ["export", "{}", "--best"], ["show", "1", "-s", "{}"],
                                 ["plot", "{}"]])
def test_every_command_refuses_a_name_that_leaves_the_runs_root(tmp_path: Path,
                                                                 cmd: list[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    finished_search(elsewhere, "x", trials=2)
    runs = tmp_path / "runs"
    runs.mkdir()
    before = tree(elsewhere)
    res = cli(runs, *[c.format("../elsewhere/x") for c in cmd])
    clean_error(res, "NAME: invalid search name '../elsewhere/x'")
    assert tree(elsewhere) == before


def test_runs_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "runs"
    f.write_text("not a directory\n")
    for args in (["list"], ["status"], ["start", "--task", "synthetic", "--budget-trials", "1"]):
        clean_error(cli(f, *args), "is not a directory")
    assert f.read_text() == "not a directory\n"


def test_corrupt_search_json_is_named_as_corrupt(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    finished_search(runs, "ok", trials=2)
    finished_search(runs, "bad", trials=2)
    (runs / "bad" / "search.json").write_text("{not json")
    res = cli(runs, "status", "bad")
    clean_error(res, "search.json is corrupt")
    assert "known:" not in res.stderr


# ---------------------------------------------------------------------- config values
@pytest.mark.parametrize("text,needle", [
    ('{"noise_sd": NaN}', "--task-config: NaN is not a JSON number"),
    ('{"sleep": Infinity}', "--task-config: Infinity is not a JSON number"),
    ('{"sleep": -Infinity}', "--task-config: -Infinity is not a JSON number"),
    ('{"sleep": true}', "sleep: invalid value true; expected a finite number"),
    ('{"target_seed": 1.5}', "target_seed: invalid value 1.5; expected an integer"),
    ('{"reward": 3}', "reward: invalid value 3; expected a string"),
])
def test_start_refuses_non_finite_and_wrong_typed_config_values(tmp_path: Path, text: str,
                                                                needle: str) -> None:
    runs = tmp_path / "runs"
    res = cli(runs, "start", "--task", "synthetic", "--task-config", text, "--budget-trials", "1")
    clean_error(res, needle)
    assert tree(tmp_path) == []


@pytest.mark.parametrize("task,text,needle", [
    ("cifar10", '{"epochs": true}', "cifar10 config: epochs: invalid value true"),
    ("cifar10", '{"lr": "0.1"}', "cifar10 config: lr: invalid value \"0.1\""),
    ("wikitext2", '{"bptt": 35.5}', "wikitext2 config: bptt: invalid value 35.5"),
    ("translation", '{"test_split": 7}', "expected a string or null"),
])
def test_real_task_configs_check_field_types(tmp_path: Path, task: str, text: str,
                                             needle: str) -> None:
    res = cli(tmp_path / "runs", "start", "--task", task, "--task-config", text)
    clean_error(res, needle)
    assert tree(tmp_path) == []


def test_library_path_refuses_a_nan_too(tmp_path: Path) -> None:
    from adsearch.errors import ConfigError

    cfg = SearchConfig(name="n", task="synthetic", task_config={"noise_sd": float("nan")})
    with pytest.raises(ConfigError, match="noise_sd: invalid value NaN"):
        create_search(cfg, RunDir(tmp_path / "n"))
    assert tree(tmp_path) == []


def test_task_config_space_that_contradicts_space_is_refused(tmp_path: Path) -> None:
    res = cli(tmp_path / "runs", "start", "--task", "synthetic", "--space", "conv-3",
              "--task-config", '{"space": "seq-2"}', "--budget-trials", "1")
    clean_error(res, "--task-config space 'seq-2' contradicts --space conv-3")
    assert tree(tmp_path) == []


def _corrupt(db: Path) -> None:
    """Overwrite everything after the SQLite header with garbage (a real torn/corrupt file)."""
    for side in db.parent.glob(db.name + "-*"):
        side.unlink()
    data = db.read_bytes()
    db.write_bytes(data[:100] + bytes((i * 37 + 11) % 256 for i in range(len(data) - 100)))


def test_corrupt_database_gives_an_error_line_and_list_shows_the_others(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    finished_search(runs, "good", trials=2)
    finished_search(runs, "bad", trials=2)
    _corrupt(runs / "bad" / "adsearch.db")
    for args in (["status", "bad"], ["export", "bad", "--best"], ["show", "1", "-s", "bad"]):
        res = cli(runs, *args)
        clean_error(res, "adsearch.db is corrupt (", ".recover")
        assert "[SQL:" not in res.stderr and "sqlalche.me" not in res.stderr
    res = runner.invoke(app, ["list"], env={"ADSEARCH_RUNS": str(runs), "COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[1].strip(): line for line in res.stdout.splitlines() if "│" in line}
    assert "unreadable" in rows["bad"] and "finished" in rows["good"], res.stdout
    assert "unreadable bad: cannot open the store" in res.stdout


# ---------------------------------------------------------------------- refused commands
def _truncate_checkpoints(run: RunDir) -> None:
    cks = list(run.checkpoint_dir.glob("ckpt-*.pt"))
    assert cks
    for ck in cks:
        data = ck.read_bytes()
        ck.write_bytes(data[: len(data) // 2])  # truncated, as by a failing disk


@pytest.mark.parametrize("foreground", [False, True])
def test_a_refused_resume_with_a_budget_writes_nothing(tmp_path: Path, foreground: bool) -> None:
    from test_daemon_support import dump_db

    runs = tmp_path / "runs"
    cfg = SearchConfig(name="t", task="synthetic", controller="transformer", batch_size=2,
                       workers=1, budget_trials=4)
    run = create_search(cfg, RunDir(runs / "t"))
    assert run_daemon(str(run.path)).finished
    _truncate_checkpoints(run)
    before = dump_db(run.path / "adsearch.db")
    args = ["resume", "t", "--budget-trials", "10"] + (["--foreground"] if foreground else [])
    res = cli(runs, *args)
    clean_error(res, "no readable controller checkpoint")
    assert "budget set" not in res.output
    assert dump_db(run.path / "adsearch.db") == before


def test_resume_with_a_budget_writes_it_once_the_daemon_starts(tmp_path: Path) -> None:
    from adsearch.store import Store

    runs = tmp_path / "runs"
    run = finished_search(runs, "f", trials=2)
    res = cli(runs, "resume", "f", "--budget-trials", "4", "--foreground")
    assert res.exit_code == 0, res.output
    with Store(run.store_url(), readonly=True) as store:
        search = store.get_search("f")
        assert search.config["budget_trials"] == 4 and search.state == "finished"
        assert sum(store.counts(search.id, purposes=["search"]).values()) == 4  # + re-checks
        kinds = [e.kind for e in store.events(search.id)]
        assert kinds.count("search.budget") == 1


# ---------------------------------------------------------------------- controller events
def _update_events_and_checkpoints(run: RunDir) -> tuple[list[int], list[int]]:
    from adsearch.store import Store

    with Store(run.store_url(), readonly=True) as store:
        search = store.get_search(run.require_identity()["name"])
        events = [e.data["version"] for e in store.events(search.id, limit=10_000)
                  if e.kind == "controller.update"]
    conn = sqlite3.connect(run.path / "adsearch.db")
    try:
        versions = [v for (v,) in conn.execute("SELECT version FROM checkpoints ORDER BY id")]
    finally:
        conn.close()
    return events, versions


def test_a_kill_between_checkpoint_and_record_keeps_the_update_event(tmp_path: Path) -> None:
    """The state a kill -9 leaves after the checkpoint file is saved and before the store
    records it: the restarted daemon records the checkpoint *and* its controller.update
    event (the event travels in the file), so the trend keeps every point."""
    runs = tmp_path / "runs"
    cfg = SearchConfig(name="k", task="synthetic", controller="transformer", batch_size=2,
                       workers=1, budget_trials=6)
    run = create_search(cfg, RunDir(runs / "k"))
    assert run_daemon(str(run.path)).finished
    events, versions = _update_events_and_checkpoints(run)
    assert events == versions == [1, 2, 3]
    conn = sqlite3.connect(run.path / "adsearch.db")
    with conn:  # undo what the daemon wrote after saving its last checkpoint file
        (last,) = conn.execute("SELECT max(id) FROM checkpoints").fetchone()
        conn.execute("DELETE FROM checkpoint_trials WHERE checkpoint_id = ?", (last,))
        conn.execute("DELETE FROM checkpoints WHERE id = ?", (last,))
        conn.execute("DELETE FROM events WHERE id = (SELECT max(id) FROM events "
                     "WHERE kind = 'controller.update')")
    conn.close()
    res = cli(runs, "resume", "k", "--budget-trials", "8", "--foreground")
    assert res.exit_code == 0, res.output
    events, versions = _update_events_and_checkpoints(run)
    assert events == versions == [1, 2, 3, 4], (events, versions)


def test_add_checkpoint_records_its_event_in_the_same_transaction(tmp_path: Path) -> None:
    from adsearch.errors import StoreError
    from adsearch.store import Store

    with Store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        sid = store.create_search("s", {}).id
        with pytest.raises(StoreError):  # an unknown trial: neither the record nor the event
            store.add_checkpoint(sid, 1, "c.pt", [4242], event=("controller.update", "v1", {}))
        assert store.events(sid) == [] and store.latest_checkpoint(sid) is None
        store.add_checkpoint(sid, 1, "c.pt", [], event=("controller.update", "v1", {"v": 1}))
        (ev,) = store.events(sid)
        assert (ev.kind, ev.message, ev.data) == ("controller.update", "v1", {"v": 1})
        assert store.latest_checkpoint(sid) is not None


# ---------------------------------------------------------------------- a way out
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_fresh_controller_continues_without_a_readable_checkpoint(tmp_path: Path,
                                                                  damage: str) -> None:
    from adsearch.store import Store

    runs = tmp_path / "runs"
    cfg = SearchConfig(name="t", task="synthetic", controller="transformer", batch_size=2,
                       workers=1, budget_trials=4)
    run = create_search(cfg, RunDir(runs / "t"))
    assert run_daemon(str(run.path)).finished
    if damage == "truncate":
        _truncate_checkpoints(run)
        refusal = "no readable controller checkpoint"
    else:
        for ck in run.checkpoint_dir.glob("ckpt-*.pt"):
            ck.unlink()
        refusal = "holds none"
    res = cli(runs, "resume", "t", "--budget-trials", "8")
    clean_error(res, refusal, "--fresh-controller")
    res = cli(runs, "resume", "t", "--budget-trials", "8", "--fresh-controller", "--foreground")
    assert res.exit_code == 0, res.output
    with Store(run.store_url(), readonly=True) as store:
        search = store.get_search("t")
        assert search.state == "finished"
        assert sum(store.counts(search.id, purposes=["search"]).values()) == 8  # + re-checks
        events = store.events(search.id, limit=10_000)
        kinds = [e.kind for e in events]
        fresh = kinds.index("controller.fresh")
        assert events[fresh].data["refeed"] == 4
        # the new controller saw all 8 results, once each: 4 updates of 2 after the restart
        after = [e for e in events[fresh:] if e.kind == "controller.update"]
        assert [e.data["version"] for e in after] == [1, 2, 3, 4]
        fed = sorted(t for e in after for t in e.data["trial_ids"])
        # every search result, and no re-check run (no sample of the policy)
        assert fed == sorted(t.id for t in store.trials(search.id, purposes=["search"]))
        assert store.consumed_trial_ids(search.id) == set(fed)
    if damage == "truncate":
        (aside,) = run.checkpoint_dir.glob("replaced-*")
        assert len(list(aside.glob("ckpt-*.pt"))) == 2
    # and the new checkpoints are readable: a plain resume works again
    res = cli(runs, "resume", "t", "--budget-trials", "10", "--foreground")
    assert res.exit_code == 0, res.output


# ---------------------------------------------------------------------- read-only media
@pytest.fixture
def readonly_mount(tmp_path: Path) -> Any:
    """``mount(src) -> Path``: a read-only bind mount of ``src`` (unmounted afterwards). Root
    ignores file modes, so only a read-only file system really refuses writes here."""
    import shutil
    import subprocess

    if not shutil.which("mount"):
        pytest.skip("no mount(8) here: cannot make a read-only file system")
    mounted: list[Path] = []

    def mount(src: Path) -> Path:
        dst = tmp_path / f"ro-{len(mounted)}"
        dst.mkdir()
        for cmd in (["mount", "--bind", str(src), str(dst)],
                    ["mount", "-o", "remount,bind,ro", str(dst)]):
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                if cmd[1] != "--bind":
                    mounted.append(dst)
                pytest.skip(f"read-only bind mounts are not permitted here ({res.stderr.strip()})")
            if cmd[1] == "--bind":
                mounted.append(dst)
        probe = dst / ".probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        return dst

    yield mount
    for dst in reversed(mounted):
        subprocess.run(["umount", str(dst)], check=False)


def test_a_finished_search_reads_from_read_only_media(tmp_path: Path,
                                                      readonly_mount: Any) -> None:
    import shutil

    runs = tmp_path / "runs"
    finished_search(runs, "r", trials=3)
    archive = tmp_path / "archive"
    shutil.copytree(runs, archive)  # an archive copy: its search.json names the old place
    shutil.rmtree(runs)
    for side in (archive / "r").glob("adsearch.db-shm"):
        side.unlink()  # what a copy without the SQLite side files leaves
    ro = readonly_mount(archive)
    before = tree(archive)
    res = cli(ro, "status", "r", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["state"] == "finished"
    res = cli(ro, "export", "r", "--best", "-o", str(tmp_path / "best.json"))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "best.json").is_file()
    res = runner.invoke(app, ["list"], env={"ADSEARCH_RUNS": str(ro), "COLUMNS": "200"})
    assert res.exit_code == 0 and "finished" in res.stdout and "unreadable" not in res.stdout
    assert tree(archive) == before


# ---------------------------------------------------------------------- a full disk
@pytest.fixture
def tiny_fs(tmp_path: Path) -> Any:
    """A 600 KiB tmpfs (unmounted afterwards): a real file system that fills up."""
    import subprocess

    dst = tmp_path / "tiny"
    dst.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(dst)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({res.stderr.strip()}): needs root and "
                    "mount permission")
    yield dst
    subprocess.run(["umount", str(dst)], check=False)


def test_a_full_disk_is_named_in_status(tmp_path: Path, tiny_fs: Path) -> None:
    run_dir = tiny_fs / "d"
    res = runner.invoke(app, ["start", "--task", "synthetic", "--name", "d", "--run-dir",
                              str(run_dir), "--budget-trials", "200", "--batch-size", "2",
                              "--workers", "1", "--foreground"])
    clean_error(res, "no space left on device (", str(run_dir))
    res = runner.invoke(app, ["status", "--run-dir", str(run_dir), "--json"])
    assert res.exit_code == 0, res.output
    snap = json.loads(res.stdout)
    assert snap["state"] == "failed"
    assert any("no space left on device (" + str(run_dir) in w for w in snap["waiting"]), snap


# ---------------------------------------------------------------------- small things
@pytest.mark.parametrize("args,needle", [
    (["status", "s", "--top-k", "-1"], "--top-k: invalid value -1"),
    (["status", "s", "--top-k", "0"], "--top-k: invalid value 0"),
    (["status", "s", "--watch", "--interval", "-1"], "--interval: invalid value -1"),
    (["export", "s", "--best", "--top-k", "-1"], "--top-k: invalid value -1"),
])
def test_bad_counts_are_refused(tmp_path: Path, args: list[str], needle: str) -> None:
    runs = tmp_path / "runs"
    finished_search(runs, "s", trials=2)
    clean_error(cli(runs, *args), needle)


def test_a_done_trial_shows_no_error_of_an_earlier_attempt(tmp_path: Path) -> None:
    from adsearch.store import Store

    runs = tmp_path / "runs"
    cfg = SearchConfig(name="e", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=3, task_config={"sleep": 0.5})
    run = create_search(cfg, RunDir(runs / "e"))

    def cold_stop_once_running(d: Any) -> None:
        if d.children:
            d.request_stop(cold=True, reason="test")  # kills the child: trial requeued

    run_daemon(str(run.path), on_tick=cold_stop_once_running)
    with Store(run.store_url(), readonly=True) as store:
        search = store.get_search("e")
        requeued = [t for t in store.trials(search.id) if t.error and "requeued" in t.error]
    assert requeued, "the cold stop requeued no trial"
    assert run_daemon(str(run.path)).finished
    with Store(run.store_url(), readonly=True) as store:
        search = store.get_search("e")
        for t in requeued:
            t = store.get_trial(t.id)
            assert t.state == "done" and t.error is None, t
    res = cli(runs, "show", "e", str(requeued[0].id), "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["trial"]["error"] is None


def test_a_checkpoint_fallback_shows_in_status(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg = SearchConfig(name="fb", task="synthetic", controller="transformer", batch_size=2,
                       workers=1, budget_trials=6)
    run = create_search(cfg, RunDir(runs / "fb"))
    assert run_daemon(str(run.path)).finished
    newest = sorted(run.checkpoint_dir.glob("ckpt-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # torn: the previous one is loaded
    res = cli(runs, "resume", "fb", "--budget-trials", "8", "--foreground")
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["status", "fb"], env={"ADSEARCH_RUNS": str(runs), "COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    assert "controller: checkpoint fallback: restored v2 from" in res.stdout, res.stdout
    assert f"skipped {newest.name}" in res.stdout
    snap = json.loads(cli(runs, "status", "fb", "--json").stdout)
    (note,) = snap["controller_notes"]
    assert note.startswith("checkpoint fallback: restored v2")
