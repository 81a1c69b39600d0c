"""Issue 19 §4: canonical patterns, the drop cap (at 4, 8 and 16 px maps, against the ops'
own masks), the trial cache (real daemons on the synthetic task, real SQLite stores, real
child processes), the seed mode in status. No mocks: the figures are checked against the
maths and against masks drawn by the ops."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_daemon_support import check_exactly_once
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.dedup import Admission, task_site_maps
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.errors import ConfigError
from adsearch.ops.cap import conv_drop, refusal, seq_drop
from adsearch.ops.conv import pattern_dropout_2d
from adsearch.ops.seq import pattern_dropout_seq
from adsearch.patterns import ConvPattern, SearchSpace, SeqPattern
from adsearch.patterns.canonical import canonical_dicts, canonical_patterns, is_none, pattern_hash
from adsearch.patterns.patternset import load_patternset
from adsearch.store import NewTrial, Store

runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"


def cli(runs: Path, *args: str) -> Any:
    return runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs)})


def hoeffding(n: int, delta: float = 1e-6) -> float:
    """Half-width that the mean of ``n`` independent values in [0, 1] leaves with
    probability below ``delta`` (Hoeffding)."""
    return math.sqrt(math.log(2 / delta) / (2 * n))


# ----------------------------------------------------------------------------- canonical
def test_off_sites_and_all_off_have_one_spelling() -> None:
    space = SearchSpace.from_name("conv-3+off")
    a = [ConvPattern(size=7, stride=1, repeat=4, off=True), ConvPattern(size=2), ConvPattern(off=True)]
    b = [ConvPattern(size=1, stride=16, rotate=45, off=True), ConvPattern(size=2),
         ConvPattern(share_c=True, residual=True, off=True)]
    assert space.encode(a) != space.encode(b)  # the controller's tokens differ ...
    ca, cb = canonical_patterns(a), canonical_patterns(b)
    assert ca == cb and ca[1] == ConvPattern(size=2)  # ... the canonical patterns do not
    assert pattern_hash([p.to_dict() for p in ca]) == pattern_hash([p.to_dict() for p in cb])
    # every spelling of all-off is none, one pattern and one hash
    offs = [[ConvPattern(size=s, stride=t, off=True) for s, t in ((1, 1), (3, 4), (7, 16))],
            [ConvPattern(rotate=r, shear_x=0.5, off=True) for r in (0, 15, 30)]]
    assert all(is_none(o) for o in offs) and not is_none(ca)
    assert canonical_patterns(offs[0]) == canonical_patterns(offs[1]) == [ConvPattern(off=True)] * 3
    # sequence: off sites, and the inert groups/share_t of a token mask
    s1 = SeqPattern(size=4, stride=2, mask="token", groups=8, share_t=False, sites=("emb",))
    s2 = SeqPattern(size=4, stride=2, mask="token", groups=2, share_t=True, sites=("emb",))
    g1 = SeqPattern(size=4, stride=2, mask="group", groups=8, share_t=False)
    assert canonical_patterns([s1]) == canonical_patterns([s2]) and canonical_patterns([g1]) == [g1]
    assert canonical_patterns([SeqPattern(size=16, sites=("qkv",), off=True)]) == [SeqPattern(off=True)]
    # canonical is a fixed point; a verify baseline spec is left alone
    dicts = [p.to_dict() for p in ca]
    assert canonical_dicts(space, dicts) == dicts
    spec = [{"kind": "dropout", "drop_prob": 0.1}]
    assert canonical_dicts(space, spec) == spec


def test_token_masks_train_alike_whatever_their_inert_fields() -> None:
    """The op never reads a token mask's groups or share_t, nor draws numbers for them: the
    same generator seed gives the same mask, so the canonical spelling trains the same."""
    from adsearch.patterns.canonical import canonical_pattern

    x = torch.ones(8, 40, 16)
    p = SeqPattern(size=4, stride=2, mask="token", groups=8, share_t=False)
    out = [pattern_dropout_seq(x, q, True, torch.Generator().manual_seed(3))
           for q in (p, canonical_pattern(p))]
    assert canonical_pattern(p) != p and torch.equal(out[0], out[1])


@pytest.mark.parametrize("name", ["conv-3", "seq-2"])
def test_v1_pattern_files_still_load(name: str) -> None:
    ps = load_patternset(FIXTURES / f"patterns_v1_{name}.json")
    assert ps.space == SearchSpace.from_name(name)
    # canonical forms are made when a trial is drawn, never on load; an active conv site is
    # its own canonical form
    if name == "conv-3":
        assert canonical_patterns(ps.patterns) == list(ps.patterns)


# ----------------------------------------------------------------------------- the cap
CONV_CASES = [
    ConvPattern(size=3, stride=1),                       # whole-map tiling, 9/16
    ConvPattern(size=2, stride=4),                       # 4/36
    ConvPattern(size=7, stride=16),                      # big squares, far apart
    ConvPattern(size=4, stride=1, repeat=1),             # one 4 px square
    ConvPattern(size=3, stride=1, repeat=2),             # a 2x2 group that wraps on 4 px
    ConvPattern(size=5, stride=2, repeat=None, rotate=30, shear_x=0.25),
    ConvPattern(size=2, stride=4, repeat=3, rotate=45),
]


def _torus_union(repeat: int, size: int, period: int, side: int) -> int:
    """Pixels of one axis of an ``side``-px torus covered by ``repeat`` intervals
    ``[k * period, k * period + size)`` (an unrotated finite group, per axis)."""
    return len({(k * period + j) % side for k in range(repeat) for j in range(size)})


@pytest.mark.parametrize("side", [4, 8, 16])
def test_conv_drop_is_the_maths_where_it_is_known(side: int) -> None:
    for p in CONV_CASES:
        mean, wipe = conv_drop(p, side, side)
        plain = p.rotate == 0 and p.shear_x == 0 and p.shear_y == 0
        if plain and p.repeat is None:  # uniform phase: every pixel w.p. size^2 / period^2
            assert mean == pytest.approx(p.size**2 / p.period**2, abs=1e-12)
            # a placement drops the whole map iff the square covers it on both axes
            covered = max(0, p.size - side + 1) / p.period
            assert wipe == pytest.approx(covered**2, abs=1e-12)
        elif plain:  # a finite group on the torus: the product of the per-axis unions
            axis = _torus_union(p.repeat, p.size, p.period, side) / side
            assert mean == pytest.approx(axis**2, abs=1e-12)
            assert wipe == (1.0 if axis == 1.0 else 0.0)


@pytest.mark.parametrize("side", [4, 8, 16])
def test_conv_drop_matches_masks_drawn_by_the_op(side: int) -> None:
    """Seeded draws of the op itself: the mean dropped share of N*C independent placements
    lies within Hoeffding's bound (delta 1e-6) of the figure, and so does the share of
    placements that drop a whole map."""
    n, c = 64, 128
    tol = hoeffding(n * c)
    for p in CONV_CASES:
        mean, wipe = conv_drop(p, side, side)
        out = pattern_dropout_2d(torch.ones(n, c, side, side), p, True,
                                 torch.Generator().manual_seed(side))
        dropped = (out == 0).to(torch.float64).mean(dim=(2, 3))  # per (example, channel) map
        assert abs(float(dropped.mean()) - mean) < tol, (p, side)
        assert abs(float((dropped == 1).to(torch.float64).mean()) - wipe) < tol, (p, side)


def test_seq_drop_is_exact_and_matches_the_op() -> None:
    n, t, d = 256, 37, 10  # 10 channels: 4 and 8 groups do not divide them
    for p in (SeqPattern(size=4, stride=1, mask="token"), SeqPattern(size=2, stride=8, mask="group", groups=4),
              SeqPattern(size=16, stride=1, mask="interleave", groups=8, share_t=False),
              SeqPattern(size=1, stride=32, mask="group", groups=8)):
        expect = p.size / p.period * (1.0 if p.mask == "token" else 1.0 / p.groups)
        assert seq_drop(p) == pytest.approx(expect, abs=1e-15)
        out = pattern_dropout_seq(torch.ones(n, t, d), p, True, torch.Generator().manual_seed(1))
        share = (out == 0).to(torch.float64).mean(dim=(1, 2))  # per example, in [0, 1]
        assert abs(float(share.mean()) - expect) < hoeffding(n), p


def test_refusal_reasons_at_4_8_16_px() -> None:
    maps = [((16, 16),), ((16, 16), (8, 8)), ((8, 8), (4, 4))]
    ok = ConvPattern(size=2, stride=4)
    assert refusal([ok, ok, ok], maps, 0.5) is None
    # a 4 px square wipes the 4 x 4 map of site 2 at every placement, whatever the cap
    square = ConvPattern(size=4, stride=1, repeat=1)
    for cap in (0.5, 1.0):
        why = refusal([ok, ok, square], maps, cap)
        assert why is not None and "site 2 drops the whole of its 4x4 map" in why
    assert refusal([square, square, ok], maps, 0.5) is None  # 6.25% of 16 px, 25% of 8 px
    # 9/16 = 56.2% of every map: over 0.5, under 0.6
    dense = ConvPattern(size=3, stride=1)
    why = refusal([dense, ok, ok], maps, 0.5)
    assert why is not None and "site 0 drops 56.2% of the units of its 16x16 map" in why
    assert "cap of 50%" in why and refusal([dense, ok, ok], maps, 0.6) is None
    # off sites drop nothing; sequence patterns need no maps
    assert refusal([ConvPattern(size=7, stride=1, off=True)] * 3, maps, 0.01) is None
    assert "80.0%" in (refusal([SeqPattern(size=4, stride=1, mask="token")], None, 0.5) or "")
    # without map sizes, a whole-map tiling is capped by its area; a finite group is unknown
    assert refusal([dense], None, 0.5) is not None and refusal([square], None, 0.5) is None


def test_the_image_task_states_its_site_maps() -> None:
    from adsearch.tasks import get_task, load_config

    task = get_task("cifar10")
    assert task.site_maps(load_config(task, "cifar10", {})) == [
        ((32, 32),), ((32, 32), (16, 16)), ((16, 16), (8, 8))]  # the first block of a group
    # sees the previous group's map; the 16 px protocol halves every map
    assert task.site_maps(load_config(task, "cifar10", {"image_size": 16})) == [
        ((16, 16),), ((16, 16), (8, 8)), ((8, 8), (4, 4))]
    synth = get_task("synthetic")
    assert task_site_maps(synth, load_config(synth, "synthetic", {}))[:2] == (False, None)
    assert task_site_maps(synth, load_config(synth, "synthetic", {"input_side": 16}))[1] == [
        ((16, 16),), ((8, 8),), ((4, 4),)]


def test_max_drop_is_validated(tmp_path: Path) -> None:
    for bad in (0, 1.5, -0.1, True):
        with pytest.raises(ConfigError, match="--max-drop"):
            SearchConfig(name="m", task="synthetic", max_drop=bad).validate()  # type: ignore[arg-type]
    res = cli(tmp_path / "runs", "start", "--task", "synthetic", "--name", "m", "--max-drop", "0")
    assert res.exit_code == 1 and "--max-drop: invalid value 0" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "runs" / "m").exists()


# ----------------------------------------------------------------------------- daemons
def make(tmp_path: Path, name: str, **kw: Any) -> RunDir:
    opts: dict[str, Any] = {"task": "synthetic", "controller": "random", "batch_size": 4,
                            "workers": 2, "budget_trials": 16, "recheck": False}
    opts.update(kw)
    return create_search(SearchConfig(name=name, **opts), RunDir(tmp_path / name))


def trained(run: RunDir, trials: list[Any]) -> list[Any]:
    """Trials that ran a child: the daemon wrote a spec and the child a log for them."""
    return [t for t in trials if list(run.trial_dir(t.id).glob("attempt-*.log"))]


def test_duplicates_reuse_the_stored_result_and_no_child_trains_twice(tmp_path: Path) -> None:
    """conv-1+off with every child at seed 0: half the draws are all-off (none), so the
    search draws many duplicates. Each key (pattern, seed) trains one child at most; the
    other draws are cache hits that copy its result, reach the controller and cost no child."""
    run = make(tmp_path, "dup", space="conv-1+off", child_seed=0,
               task_config={"space": "conv-1+off", "sleep": 0.2})
    daemon = run_daemon(str(run.path))
    assert daemon.finished and not daemon.fatal
    store, search = check_exactly_once(run)  # hits are done trials, consumed exactly once
    try:
        trials = store.trials(search.id)
        assert len(trials) == 16 and all(t.state == "done" for t in trials)
        results = {r.trial_id: r for r in store.results(search.id)}
        ran = trained(run, trials)
        keys = [(t.pattern_hash, t.seed) for t in ran]
        assert len(keys) == len(set(keys)), "a child trained a (pattern, seed) twice"
        hits = [t for t in trials if results[t.id].cache_of is not None]
        assert hits and len(ran) + len(hits) == 16
        by_id = {t.id: t for t in trials}
        for t in hits:
            r, src = results[t.id], results[results[t.id].cache_of]
            source = by_id[r.cache_of]
            assert source in ran and source.id < t.id and t.attempts == 0
            assert (source.pattern_hash, source.seed) == (t.pattern_hash, t.seed)
            assert (r.reward, r.metrics, r.curve) == (src.reward, src.metrics, src.curve)
            assert r.seconds == 0.0 and not run.trial_dir(t.id).exists()  # no child, no spec
        # every drawn all-off pattern is stored as the one canonical none
        none = [ConvPattern(off=True).to_dict()]
        assert all(t.pattern == none for t in trials if t.pattern[0].get("off"))
        events = store.events(search.id, 200, kinds=["trial.cache_hit"])
        assert sorted(e.data["trial_id"] for e in events) == sorted(t.id for t in hits)
        assert store.dedup_counts(search.id) == {"cache_hits": len(hits), "refused": 0}
        (start,) = store.events(search.id, 200, kinds=["dedup.start"])
        assert "no drop cap (the task trains no network)" in start.message
        assert "every child seed 0" in start.message
    finally:
        store.close()
    snap = json.loads(cli(tmp_path, "status", "dup", "--run-dir", str(run.path), "--json").stdout)
    assert snap["cache_hits"] == len(hits) and snap["child_seed"] == {"mode": "shared", "value": 0}
    # the audit script of the benchmarks reads the same from the store
    audit = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" /
                                                "dedup_audit.py"), "dup", "--store",
                            run.store_url()], capture_output=True, text=True, check=True)
    figures = json.loads(audit.stdout)
    assert figures["trained_twice"] == 0 and figures["cache_hits"] == len(hits)
    assert figures["children"] == {"search": 16 - len(hits)}
    text = cli(tmp_path, "status", "dup", "--run-dir", str(run.path)).stdout
    assert "every child trains with seed 0 (--child-seed)" in text
    assert f"{len(hits)} cache hit(s)" in text


def test_a_capped_pattern_is_a_bad_pattern_without_a_child(tmp_path: Path) -> None:
    """input_side 4: site maps of 4, 2 and 1 px, where most patterns drop too much. Those are
    stored done at once as bad patterns with the failure reward and the reason; no child ran
    for them, and every pattern that did train passes the cap."""
    run = make(tmp_path, "cap", task_config={"input_side": 4}, failure_reward=-1.0,
               budget_trials=12)
    daemon = run_daemon(str(run.path))
    assert daemon.finished and not daemon.fatal  # refusals do not trip the failure breaker
    store, search = check_exactly_once(run)
    maps = [((4, 4),), ((2, 2),), ((1, 1),)]
    space = SearchSpace.from_name("conv-3")
    try:
        trials = store.trials(search.id)
        results = {r.trial_id: r for r in store.results(search.id)}
        refused = [t for t in trials if results[t.id].metrics.get("refused")]
        assert refused, "input_side 4 refuses most conv-3 patterns; none was refused"
        ran = trained(run, trials)
        assert len(ran) + len(refused) == len(trials) == 12
        for t in refused:
            r = results[t.id]
            assert r.reward == -1.0 and r.metrics["bad_pattern"] == 1.0 and t.attempts == 0
            assert "refused before training" in (t.error or "") and not run.trial_dir(t.id).exists()
            pats = [space.pattern_cls.from_dict(p) for p in t.pattern]
            assert refusal(pats, maps, 0.5) == t.error
        for t in ran:
            assert refusal([space.pattern_cls.from_dict(p) for p in t.pattern], maps, 0.5) is None
        n_bad, _ = store.bad_patterns(search.id)
        assert n_bad == len(refused)
        (start,) = store.events(search.id, 200, kinds=["dedup.start"])
        assert "drop cap 50% at the site maps (site 0: 4x4; site 1: 2x2; site 2: 1x1)" in start.message
    finally:
        store.close()
    snap = json.loads(cli(tmp_path, "status", "cap", "--run-dir", str(run.path), "--json").stdout)
    assert snap["refused"] == len(refused) and snap["bad_patterns"]["count"] == len(refused)
    assert snap["child_seed"] == {"mode": "per-trial", "from_seed": 0} and snap["max_drop"] == 0.5
    assert "each child its own seed, drawn from search seed 0" in cli(
        tmp_path, "status", "cap", "--run-dir", str(run.path)).stdout


# ----------------------------------------------------------------------------- waiting copies
def _gate(tmp_path: Path, **kw: Any) -> tuple[Store, Any, Admission]:
    run = make(tmp_path, "gate", child_seed=0, **kw)
    store = Store(run.store_url())
    search = store.get_search("gate")
    cfg = SearchConfig.from_dict(search.config)
    return store, search, Admission(store, search.id, cfg, SearchSpace.from_name("conv-3"),
                                    (False, None, None))


def _draw(seed: int = 0, size: int = 2) -> NewTrial:
    pats = [ConvPattern(size=size).to_dict()] * 3
    return NewTrial(pattern=pats, pattern_hash=pattern_hash(pats), tokens=[0] * 24,
                    controller_version=0, logp=-1.0, seed=seed)


def test_a_duplicate_waits_for_its_running_first_copy_and_reuses_its_result(tmp_path: Path) -> None:
    store, search, gate = _gate(tmp_path)
    try:
        first = gate.admit([_draw(), _draw(), _draw(seed=1)], set())
        assert len(first.queued) == 2 and first.finished == [] and gate.n_waiting == 1
        src = first.queued[0]
        active = set(first.queued)
        again = gate.admit([_draw()], active)  # drawn while the first copy is queued
        assert again.queued == [] and gate.n_waiting == 2
        assert gate.resolve(active).queued == []  # still queued: they keep waiting
        store.finish_trial(src, 0.7, {"clean_reward": 0.7}, [{"epoch": 1, "val_metric": 0.7}], 3.0)
        active.discard(src)
        out = gate.resolve(active)
        assert out.queued == [] and len(out.finished) == 2 and gate.n_waiting == 0
        for tid in out.finished:
            (r,) = store.results(search.id, [tid])
            assert r.cache_of == src and r.reward == 0.7 and r.curve == [{"epoch": 1, "val_metric": 0.7}]
        events = store.events(search.id, 20, kinds=["trial.cache_hit"])
        assert [e.data["waited"] for e in events] == [True, True]
        # later draws of the key are hits at once
        assert len(gate.admit([_draw()], active).finished) == 1
    finally:
        store.close()


def test_a_failed_first_copy_lets_one_duplicate_train(tmp_path: Path) -> None:
    """A child's bad pattern may be a crash (classify() counts unknown exceptions as bad
    patterns): never reused. The first waiting duplicate trains, the next waits on it."""
    store, search, gate = _gate(tmp_path)
    try:
        src = gate.admit([_draw()], set()).queued[0]
        gate.admit([_draw(), _draw()], {src})
        store.finish_trial(src, 0.0, {"bad_pattern": 1.0}, [], 1.0, error="RuntimeError: boom")
        out = gate.resolve(set())
        assert len(out.queued) == 1 and out.finished == [] and gate.n_waiting == 1
        assert gate.resolve(set(out.queued)).queued == []  # the other waits on the new copy
    finally:
        store.close()


def test_which_results_may_be_reused(tmp_path: Path) -> None:
    store, search, gate = _gate(tmp_path, scheduler="asha", min_epochs=1, max_epochs=3, eta=3.0)
    try:
        from adsearch.store.records import utcnow

        def result(**metrics: Any) -> Any:
            from adsearch.store import ResultRecord

            return ResultRecord(trial_id=1, reward=0.5, metrics=metrics, curve=[], seconds=1.0,
                                created_at=utcnow())

        assert gate.reusable(result())  # full budget, succeeded
        assert not gate.reusable(result(bad_pattern=1.0))
        assert gate.reusable(result(truncated=1.0, truncated_at_rung=1.0))  # rung 1 prunes
        assert not gate.reusable(result(truncated=1.0, truncated_at_rung=2.0))  # no such rung
        # a rung the daemon no longer prunes at would let the copy train on
        store.set_search_config(search.id, {**search.config, "rungs_off": [1.0]})
        assert not gate.reusable(result(truncated=1.0, truncated_at_rung=1.0))
    finally:
        store.close()


def test_a_cache_hit_is_not_another_seed_of_its_pattern(tmp_path: Path) -> None:
    """The re-check's mean over a pattern's runs counts a trained (pattern, seed) once: its
    cache hits repeat that run, they are no new measurement."""
    from adsearch.daemon import recheck

    store, search, gate = _gate(tmp_path)
    try:
        src = gate.admit([_draw()], set()).queued[0]
        store.finish_trial(src, 0.6, {}, [], 2.0)
        assert len(gate.admit([_draw(), _draw()], set()).finished) == 2
        (score,) = recheck.scores(store, search.id, {_draw().pattern_hash}).values()
        assert [(r.trial_id, r.reward) for r in score.runs] == [(src, 0.6)]
    finally:
        store.close()
