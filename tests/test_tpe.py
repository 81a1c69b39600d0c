"""--controller tpe (issue 20 §3): Optuna's TPE behind the controller interface, exactly
reproducible from its state (same history -> same next pattern)."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from adsearch.controller import controller_from_state, make_controller
from adsearch.errors import CheckpointError
from adsearch.patterns import SearchSpace

pytest.importorskip("optuna")


def _reward(tokens: tuple[int, ...], space: SearchSpace) -> float:
    """A smooth synthetic reward on the v2 conv space: best near rate index 4 at each site."""
    f = len(space.values)
    return -sum((tokens[s * f] - 4) ** 2 for s in range(space.num_sites)) / 10.0


@pytest.mark.parametrize("name", ["conv2-3", "seq2-2", "conv-3+off"])
def test_same_history_same_next_pattern(name: str) -> None:
    sp = SearchSpace.from_name(name)
    a = make_controller("tpe", sp, seed=5)
    for _ in range(3):
        batch = a.sample(4)
        a.update([(s, _reward(s.tokens, sp)) for s in batch])
    state = a.state_dict()
    b = controller_from_state(state, sp)  # e.g. after kill -9 and resume from the checkpoint
    na, nb = a.sample(3), b.sample(3)
    assert [s.tokens for s in na] == [s.tokens for s in nb]
    assert len({s.tokens for s in na}) == 3  # a batch's draws differ
    one_by_one = controller_from_state(state, sp)
    assert [one_by_one.sample(1)[0].tokens for _ in range(3)] == [s.tokens for s in na]
    late = controller_from_state(state, sp)  # a resume: the draw index comes from the store
    late.sync_drawn(state["drawn"] + 1)
    assert late.sample(1)[0].tokens == na[1].tokens
    assert all(s.logp == 0.0 for s in na)
    # another seed or another history gives another draw
    c = controller_from_state({**state, "seed": 6}, sp)
    assert [s.tokens for s in c.sample(3)] != [s.tokens for s in na]


def test_tpe_learns_on_a_synthetic_reward() -> None:
    """After 40 told trials the next 10 TPE draws score better on average than 10 uniform
    draws (the reward is a bowl in the rate indices; the seeds are fixed)."""
    sp = SearchSpace.from_name("conv2-3")
    ctrl = make_controller("tpe", sp, seed=0)
    for _ in range(10):
        batch = ctrl.sample(4)
        ctrl.update([(s, _reward(s.tokens, sp)) for s in batch])
    tpe = [_reward(s.tokens, sp) for s in ctrl.sample(10)]
    rng = random.Random(0)
    uni = [_reward(tuple(sp.encode(sp.sample(rng))), sp) for _ in range(10)]
    assert sum(tpe) / 10 > sum(uni) / 10


def test_bad_state_is_refused() -> None:
    sp = SearchSpace.from_name("conv2-3")
    state = make_controller("tpe", sp).state_dict()
    with pytest.raises(CheckpointError, match="TPE"):
        controller_from_state({**state, "history": [[[0, 1], 0.5]]}, sp)
    with pytest.raises(CheckpointError, match="search space"):
        controller_from_state(state, SearchSpace.from_name("conv2-4"))


def test_importing_the_controller_package_does_not_import_optuna() -> None:
    code = ("import sys, adsearch.controller, adsearch.cli.main\n"
            "assert 'optuna' not in sys.modules, 'optuna was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_tpe_state_survives_a_checkpoint_file(tmp_path) -> None:
    """The daemon's checkpoint (torch.save, loaded with weights_only=True) keeps TPE's whole
    state: the restored controller draws what the saved one draws."""
    from adsearch.controller import CheckpointManager

    sp = SearchSpace.from_name("seq2-2")
    ctrl = make_controller("tpe", sp, seed=2)
    for _ in range(3):
        batch = ctrl.sample(4)
        ctrl.update([(s, _reward(s.tokens, sp)) for s in batch])
    CheckpointManager(tmp_path).save(ctrl, consumed_ids=range(12))
    restored, consumed = CheckpointManager(tmp_path).load_latest(sp)
    assert consumed == set(range(12)) and restored.kind == "tpe"
    assert [s.tokens for s in restored.sample(2)] == [s.tokens for s in ctrl.sample(2)]
