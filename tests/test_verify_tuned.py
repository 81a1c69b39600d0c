"""``adsearch verify --tuned SPEC``: a baseline setting already tuned on validation elsewhere
skips its kind's grid (no tuning run of that kind in the store) and is the setting tested;
the report says which settings were tuned here and which were given; continuing with other
``--tuned`` is refused, an old verify run without the plan key still continues, and bad
input exits 1 with a message naming the problem and the fix, writing nothing.

Real tiny runs of the synthetic task (its baselines' optimum is p=0.1, so a given p=0.2 that
shows up in the test stage can only have come from ``--tuned``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import dump_db, open_store, run_cli

from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.errors import ConfigError
from adsearch.verify.plan import TUNE_SEED, parse_spec
from adsearch.verify.run import VerifyRequest, prepare

ARGS = ("verify", "syn", "--top-k", "1", "--seeds", "2", "--baselines", "dropout,spatial",
        "--tuned", "dropout:0.2")


def _search(root: Path, name: str, **kw: Any) -> None:
    cfg = SearchConfig(name=name, task="synthetic", controller="random", batch_size=2,
                       workers=2, budget_trials=2, **kw)
    assert run_daemon(str(create_search(cfg, RunDir(root / name)).path)).finished


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("tuned") / "runs"
    _search(runs, "syn")
    _search(runs, "seq", task_config={"space": "seq-2"}, space="seq-2")
    return runs


@pytest.fixture(scope="module")
def verified(root: Path) -> tuple[dict[str, Any], str]:
    proc = run_cli(root, *ARGS, timeout=300)
    return json.loads((root / "syn-verify" / "verify.json").read_text()), proc.stdout


def test_given_kind_is_not_tuned_and_is_tested(root: Path,
                                               verified: tuple[dict[str, Any], str]) -> None:
    doc, out = verified
    store, search = open_store(root / "syn-verify")
    try:
        trials = store.trials(search.id)
        events = [e for e in store.events(search.id) if e.kind == "verify.tuned"]
        plan = search.config["verify"]
    finally:
        store.close()
    tune = [t for t in trials if t.seed >= TUNE_SEED]
    # only spatial's grid (4 settings x 1 tuning seed): no dropout tuning run at all
    assert sorted(t.pattern[0]["drop_prob"] for t in tune) == [0.05, 0.1, 0.2, 0.3]
    assert {t.pattern[0]["kind"] for t in tune} == {"spatial"}
    assert len(trials) == 4 + 4 * 2  # then none, pattern 1, dropout, spatial x 2 seeds
    assert plan["given_tuned"] == {"dropout": {"kind": "dropout", "drop_prob": 0.2}}
    assert plan["tuned"]["dropout"] == {"spec": {"kind": "dropout", "drop_prob": 0.2},
                                        "label": "dropout p=0.2", "val_mean": None,
                                        "grid": [], "source": "given"}
    assert plan["tuned"]["spatial"]["source"] == "tuned"
    assert events[-1].data["dropout"]["source"] == "given"
    # the test stage trains the given setting (not the synthetic optimum 0.1) at both seeds
    rows = {r["label"]: r for r in doc["regularizers"]}
    assert list(rows) == ["none", "pattern 1", "dropout p=0.2", "spatial p=0.1"]
    assert rows["dropout p=0.2"]["stored"] == [{"kind": "dropout", "drop_prob": 0.2}]
    assert [r["seed"] for r in rows["dropout p=0.2"]["runs"]] == [0, 1]
    ids = {r["trial_id"] for r in rows["dropout p=0.2"]["runs"]}
    assert {t.seed for t in trials if t.id in ids} == {0, 1}
    # the report says which setting was given and which was tuned here
    assert doc["tuning"]["dropout"]["source"] == "given"
    assert doc["tuning"]["dropout"]["setting"] == "given (--tuned), not tuned here"
    assert doc["tuning"]["spatial"]["setting"] == "tuned here on validation"
    assert len(doc["tuning"]["spatial"]["grid"]) == 4
    assert "given settings (--tuned)" in doc["selection"]
    flat = " ".join(out.split())  # rich wraps the caption at the terminal width
    assert "dropout p=0.2: given (--tuned), not tuned here" in flat
    assert "spatial p=0.1: tuned here on validation" in flat
    assert "tuning spatial on validation: 4 run(s) added; dropout given with --tuned" in flat


def test_continue_needs_the_same_tuned(root: Path, verified: tuple[dict[str, Any], str]) -> None:
    req = VerifyRequest(name="syn", run_dir=str(root / "syn"), top_k=1, seeds=2,
                        baselines=("dropout", "spatial"),
                        tuned=('{"kind": "dropout", "drop_prob": 0.2}',))  # the same setting
    assert not prepare(req).created  # continues (running nothing is test_verify's)
    with pytest.raises(ConfigError, match="given_tuned="):
        prepare(dataclasses.replace(req, tuned=("dropout:0.3",)))
    res = run_cli(root, *ARGS[:-2], check=False)  # no --tuned now: refused too
    assert res.returncode == 1 and "exists with other settings (given_tuned=" in res.stderr
    assert "--verify-name NEW" in res.stderr


def test_old_verify_without_the_key_continues(root: Path) -> None:
    """A verify run made before --tuned has no ``given_tuned`` in its plan: read as None."""
    from adsearch.store import Store

    req = VerifyRequest(name="syn", run_dir=str(root / "syn"), verify_name="old",
                        baselines=("dropout",))
    vr = prepare(req)  # creates the verify search; runs nothing
    with Store(vr.run.store_url()) as store:
        search = store.get_search("old")
        old = {k: v for k, v in search.config["verify"].items() if k != "given_tuned"}
        store.set_search_config(search.id, {**search.config, "verify": old})
    assert not prepare(req).created
    with pytest.raises(ConfigError, match="given_tuned=None"):
        prepare(dataclasses.replace(req, tuned=("dropout:0.2",)))


def test_all_given_tunes_nothing(root: Path) -> None:
    run_cli(root, "verify", "syn", "--tune-only", "--baselines", "dropout,dropblock",
            "--tuned", '{"kind": "dropblock", "drop_prob": 0.2, "block_size": 3}',
            "--tuned", "dropout:0.2", "--verify-name", "given")
    doc = json.loads((root / "given" / "baselines.json").read_text())
    assert {k: (v["label"], v["source"]) for k, v in doc["tuning"].items()} == {
        "dropout": ("dropout p=0.2", "given"), "dropblock": ("dropblock p=0.2 b=3", "given")}
    store, search = open_store(root / "given")
    try:
        assert store.trials(search.id) == []
    finally:
        store.close()


def test_spec_syntax_is_calibrates() -> None:
    assert parse_spec("dropblock:0.2:3", "conv", "--tuned") == {
        "kind": "dropblock", "drop_prob": 0.2, "block_size": 3}
    with pytest.raises(ConfigError, match="--reference 'dropblock:0.2': dropblock needs"):
        parse_spec("dropblock:0.2", "conv", "--reference")


@pytest.mark.parametrize("args,needle", [
    (["seq", "--tuned", "dropblock:0.2:3"],
     "--tuned 'dropblock:0.2:3': dropblock does not apply to a seq space"),
    (["syn", "--tuned", "none"], "none has no setting to tune"),
    (["syn", "--tuned", "dropout:0.2", "--tuned", "dropout:0.1"],
     "two settings of dropout (dropout p=0.2 and dropout p=0.1); give one --tuned per"),
    (["syn", "--baselines", "dropout", "--tuned", "spatial:0.1"],
     "spatial is not among the baselines compared (dropout); add it to --baselines"),
    (["syn", "--tuned", "dropout"], "--tuned 'dropout': use none, KIND:RATE"),
])
def test_bad_tuned_writes_nothing(root: Path, args: list[str], needle: str) -> None:
    def files() -> list[Path]:  # SQLite's -wal/-shm files come and go with any reader
        return sorted(p.relative_to(root) for p in root.rglob("*")
                      if not p.name.endswith(("-wal", "-shm")))

    before = files()
    dbs = {p: dump_db(p) for p in root.glob("*/adsearch.db")}
    res = run_cli(root, "verify", *args, "--verify-name", "bad", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.startswith("error:") and needle in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr
    assert files() == before
    assert {p: dump_db(p) for p in dbs} == dbs
