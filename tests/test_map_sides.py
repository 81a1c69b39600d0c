"""Each site's map side, recorded and drawn at (issue 20 §1).

``find_sites``/``attach`` record the map that reaches each site (from the example input, or
at the first forward pass); a script search's children report it, a built-in task's search
stores it where it starts; ``show``, ``export`` and ``pattern show`` draw and report each
site at those sides, falling back to the space's defaults only when nothing was recorded,
and say which. Real models, real subprocesses, a real store.
"""

from __future__ import annotations

import json
import math
import pickle
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_daemon_support import run_cli
from torch import nn
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.cli.pattern_cmd import expected_drop
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.rundir import RunDir
from adsearch.daemon.runner import run_daemon
from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, load_patternset, save_patternset
from adsearch.sites import attach, attachment_of, find_sites
from adsearch.store import Store
from adsearch.trial import SITES_FILE, Trial

REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "tests" / "fixtures" / "cnn_script.py"
SIDES_24 = [[24, 24], [12, 12], [6, 6]]
runner = CliRunner()


def small_cnn() -> nn.Module:
    """The user's own network: three conv + BatchNorm stages (stride 1, 2, 2)."""
    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU())

    torch.manual_seed(0)
    return nn.Sequential(block(3, 8, 1), block(8, 8, 2), block(8, 8, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


#: a finite-repeat v1 pattern: what it drops depends on the map (2 squares of 3 px per side)
FINITE = ConvPattern(size=3, stride=2, repeat=2)


def test_find_sites_records_the_example_maps_and_says_when_it_guessed() -> None:
    model = small_cnn()
    rows = find_sites(model, torch.zeros(2, 3, 24, 24))
    assert [r.map_shape for r in rows] == [(24, 24), (12, 12), (6, 6)]
    assert {r.map_source for r in rows} == {"example"}
    assert rows[1].to_dict()["map_shape"] == [12, 12]
    guessed = find_sites(model)  # no example: the 224 px zero image, and it says so
    assert [r.map_shape for r in guessed] == [(224, 224), (112, 112), (56, 56)]
    assert {r.map_source for r in guessed} == {"default"}


def test_attach_without_example_records_the_first_forward_pass() -> None:
    model = small_cnn()
    ps = PatternSet(SearchSpace("conv", 3), (FINITE,) * 3)
    att = attach(model, ps)
    assert {s.map_source for s in att.sites} == {"default"}  # the dry run's 224 px guess
    model.train()
    model(torch.randn(4, 3, 24, 24))
    assert att.map_shapes == ((24, 24), (12, 12), (6, 6))
    assert {s.map_source for s in att.sites} == {"forward"}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(m._forward_hooks for m in bns)  # each probe removed itself
    model(torch.randn(4, 3, 32, 32))  # recorded once: a later batch changes nothing
    assert att.map_shapes == ((24, 24), (12, 12), (6, 6))
    att.detach()
    with_example = attach(model, ps, torch.zeros(1, 3, 24, 24))
    assert with_example.map_shapes == ((24, 24), (12, 12), (6, 6)) and not with_example._probes
    with_example.detach()


def test_an_attached_model_with_pending_probes_pickles() -> None:
    """The probe is a class, not a closure: torch.save of an attached model still works, and
    the copy records its own maps at its first forward pass."""
    model = small_cnn()
    attach(model, PatternSet(SearchSpace("conv", 3), (FINITE,) * 3))
    copy = pickle.loads(pickle.dumps(model))
    copy.train()
    copy(torch.randn(2, 3, 24, 24))
    got = attachment_of(copy)
    assert got is not None and got.map_shapes == ((24, 24), (12, 12), (6, 6))


def test_a_compiled_model_with_pending_probes_traces_in_one_graph() -> None:
    """Under torch.compile a probe records nothing (Dynamo cannot remove a hook while it
    traces) and breaks no graph; the maps stay the dry run's, and say so."""
    model = small_cnn()
    att = attach(model, PatternSet(SearchSpace("conv", 3), (FINITE,) * 3))
    model.train()
    torch.compile(model, backend="eager", fullgraph=True)(torch.randn(2, 3, 24, 24))
    assert {s.map_source for s in att.sites} == {"default"}
    model(torch.randn(2, 3, 24, 24))  # an eager call still records
    assert att.map_shapes == ((24, 24), (12, 12), (6, 6))


def test_the_attached_op_drops_what_pattern_show_reports_at_the_recorded_maps() -> None:
    """The op at each site of the user's CNN at 24 px drops, on average over independent
    placements, the ``expected_drop`` that ``pattern show`` reports for that map (the
    finite-repeat pattern drops 2*2*9 = 36 px of 576, 144 and 36: different shares). The
    tolerance is 6 standard errors of the mean over the independent (example, channel)
    draws."""
    model = small_cnn()
    att = attach(model, PatternSet(SearchSpace("conv", 3), (FINITE,) * 3))
    seen: dict[int, list[torch.Tensor]] = {0: [], 1: [], 2: []}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for k, bn in enumerate(bns):
        def hook(_m: nn.Module, inp: Any, out: torch.Tensor, k: int = k) -> None:
            x = inp[0]
            dropped = ((out == 0) & (x != 0)).to(torch.float64).mean(dim=(2, 3))  # (N, C)
            seen[k].append(dropped.flatten())
        bn.adsearch_drop.register_forward_hook(hook)
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        for _ in range(8):
            model(torch.randn(32, 3, 24, 24))
    for k, shape in enumerate(att.map_shapes):
        assert shape is not None
        per_draw = torch.cat(seen[k])  # 8 * 32 * 8 independent placements
        mean, se = float(per_draw.mean()), float(per_draw.std()) / math.sqrt(len(per_draw))
        want = expected_drop(FINITE, shape)
        assert abs(mean - want) <= 6 * se + 1e-9, (k, shape, mean, want, se)
    assert expected_drop(FINITE, (24, 24)) < expected_drop(FINITE, (12, 12)) < expected_drop(
        FINITE, (6, 6))


def test_attach_reports_the_maps_to_the_trial(tmp_path: Path, monkeypatch: Any) -> None:
    """In a child (``$ADSEARCH_TRIAL`` set) attach writes the trial's sites file once the
    maps are known; ``record_sites`` refuses what is not a map."""
    import adsearch.trial

    spec = {"trial_id": 3, "space": "conv-3", "patterns": [FINITE.to_dict()] * 3, "seed": 0,
            "device": "cpu"}
    (tmp_path / "trial.json").write_text(json.dumps(spec))
    monkeypatch.setenv("ADSEARCH_TRIAL", str(tmp_path / "trial.json"))
    monkeypatch.setattr(adsearch.trial, "_current", None)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # current() installs its own
    trial = adsearch.trial.current()
    model = small_cnn()
    attach(model, trial.patterns)
    assert not (tmp_path / SITES_FILE).exists()  # not known before the first forward pass
    model.train()
    model(torch.randn(2, 3, 24, 24))
    doc = json.loads((tmp_path / SITES_FILE).read_text())
    assert doc == {"maps": SIDES_24, "sources": ["forward"] * 3}
    with pytest.raises(adsearch.trial.TrialError, match="two positive integers"):
        Trial(patterns=None, dir=tmp_path).record_sites([(0, 4)])


# ---------------------------------------------------------------------------- searches
def _cli(runs: Path, *args: str) -> Any:
    res = runner.invoke(app, list(args), env={"ADSEARCH_RUNS": str(runs)})
    assert res.exit_code == 0, res.output
    return res


def test_a_script_search_is_shown_and_exported_at_the_scripts_own_maps(tmp_path: Path) -> None:
    """The user's CNN at 24 px as a script search of conv-3: each child's attach reports
    24/12/6 (from its first forward pass); ``show`` draws every site at those maps (not the
    space's 32/16/8) and says where they come from; ``export`` writes them in the file's
    provenance and ``pattern show --json`` reports each site's expected drop there."""
    runs = tmp_path / "runs"
    cmd = shlex.join([sys.executable, str(CNN), "--side", "24"])
    cfg = SearchConfig(name="cnn", task="script", controller="random", batch_size=2, workers=1,
                       budget_trials=2, recheck=False, max_drop=1.0, space="conv-3",
                       task_config={"command": cmd, "workdir": str(tmp_path), "space": "conv-3"})
    run = create_search(cfg, RunDir(runs / "cnn"))
    assert run_daemon(str(run.path)).finished
    with Store(run.store_url(), readonly=True) as st:
        res = st.results(st.get_search("cnn").id)
    assert len(res) == 2 and all(r.metrics["site_maps"] == SIDES_24 for r in res), res
    tid = res[0].trial_id
    doc = json.loads(_cli(runs, "show", str(tid), "-s", "cnn", "--json").stdout)
    assert doc["site_maps"]["maps"] == SIDES_24 and doc["site_maps"]["recorded"]
    assert f"trial {tid}'s own child" in doc["site_maps"]["source"]
    text = _cli(runs, "show", str(tid), "-s", "cnn").stdout
    assert "site maps: 24x24, 12x12, 6x6 (reported by" in text
    for k, (h, _) in enumerate(SIDES_24):
        assert f"site {k} ({h}x{h} map)" in text
    assert "32x32" not in text and "site_maps=" not in text  # not in the metrics line
    out = tmp_path / "best.json"
    _cli(runs, "export", "cnn", "-o", str(out))
    ps = load_patternset(out)
    assert ps.provenance.site_maps is not None and ps.provenance.site_maps["maps"] == SIDES_24
    shown = json.loads(_cli(runs, "pattern", "show", str(out), "--json").stdout)
    assert shown["maps"]["maps"] == SIDES_24 and "provenance" in shown["maps"]["source"]
    for site, p in zip(shown["sites"], ps.patterns, strict=True):
        side = SIDES_24[site["site"]][0]
        assert site["shape"] == [side, side]
        assert site["expected_drop"] == pytest.approx(expected_drop(p, (side, side)), abs=1e-6)


def test_a_task_search_stores_its_maps_where_it_starts(tmp_path: Path) -> None:
    """A task that states its maps (the synthetic task standing for a 24 px network): the
    daemon stores them when the search starts, and ``show`` draws at them."""
    runs = tmp_path / "runs"
    cfg = SearchConfig(name="s24", task="synthetic", controller="random", batch_size=2,
                       workers=1, budget_trials=2, recheck=False, max_drop=1.0, space="conv-3",
                       task_config={"input_side": 24})
    assert run_daemon(str(create_search(cfg, RunDir(runs / "s24")).path)).finished
    doc = json.loads(_cli(runs, "show", "1", "-s", "s24", "--json").stdout)
    assert doc["site_maps"]["maps"] == SIDES_24
    assert doc["site_maps"]["source"] == "the task's site maps, stored when the search started"
    plain = SearchConfig(name="s0", task="synthetic", controller="random", batch_size=2,
                         workers=1, budget_trials=1, recheck=False, space="conv2-3")
    assert run_daemon(str(create_search(plain, RunDir(runs / "s0")).path)).finished
    doc = json.loads(_cli(runs, "show", "1", "-s", "s0", "--json").stdout)
    assert doc["site_maps"]["maps"] == [[32, 32], [16, 16], [8, 8]]  # nothing recorded
    assert not doc["site_maps"]["recorded"] and "defaults" in doc["site_maps"]["source"]
    text = _cli(runs, "show", "1", "-s", "s0").stdout  # a v2 trial is drawn too
    assert "site 2 (8x8 map): rate=" in text and "no map was recorded" in text


def test_pattern_show_sides_for_files_that_carry_none(tmp_path: Path) -> None:
    path = save_patternset(PatternSet(SearchSpace("conv", 3), (FINITE,) * 3), tmp_path / "p.json")

    def maps(*opts: str) -> dict[str, Any]:
        return dict(json.loads(_cli(tmp_path, "pattern", "show", str(path), "--json",
                                    *opts).stdout))

    default = maps()
    assert default["maps"]["maps"] == [[32, 32], [16, 16], [8, 8]]
    assert not default["maps"]["recorded"] and "defaults" in default["maps"]["source"]
    given = maps("--sides", "24,12,6")
    assert given["maps"] == {"maps": SIDES_24, "source": "--sides 24,12,6", "recorded": True}
    assert [s["expected_drop"] for s in given["sites"]] == [
        pytest.approx(expected_drop(FINITE, (v, v)), abs=1e-6) for v in (24, 12, 6)]
    assert maps("--input-size", "24")["maps"]["maps"] == SIDES_24  # WRN: strides 1, 2, 4
    text = _cli(tmp_path, "pattern", "show", str(path), "--sides", "24,12,6").stdout
    assert "maps: 24x24, 12x12, 6x6 (--sides 24,12,6)" in text
    bad = run_cli(tmp_path, "pattern", "show", str(path), "--sides", "24,12", check=False)
    assert bad.returncode == 1 and "has 3 site(s)" in bad.stderr and "Traceback" not in bad.stderr
    # a baseline written for given sides records them: pattern show draws it there
    base = tmp_path / "b.json"
    _cli(tmp_path, "pattern", "baseline", "dropblock", "--rate", "0.1", "--block", "3",
         "--space", "conv2-3", "--sides", "24,12,6", "-o", str(base))
    shown = json.loads(_cli(tmp_path, "pattern", "show", str(base), "--json").stdout)
    assert shown["maps"]["maps"] == SIDES_24 and shown["maps"]["recorded"]
    assert [s["geometry"]["side_px"] for s in shown["sites"]] == [3, 3, 3]
