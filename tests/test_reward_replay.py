"""Replay of a real search's rewards (issue 19 §2): the round-3 LM protocol, rerun for 20
minutes by the adsearch of before issue 19 (tests/fixtures/make_reward_replay.py made the
fixture from its store). Each controller batch is replayed with the rung values recorded
before its update. The round-3 rule reproduces every logged batch mean and collapses (every
batch from the 2nd on is one tied value); the learning-curve offset rule (adsearch.reward)
gives every batch whose patterns differ a spread, and the controller's update stays bounded
on both."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adsearch.reward import batch_rewards

FIXTURE = Path(__file__).parent / "fixtures" / "reward_replay_lm.json"
DOC = json.loads(FIXTURE.read_text(encoding="utf-8"))
TRIALS = {t["id"]: t for t in DOC["trials"]}


@dataclass(frozen=True)
class Row:
    trial_id: int
    rung: float
    value: float
    promoted: bool | None


@dataclass(frozen=True)
class Res:
    trial_id: int
    reward: float | None
    metrics: dict[str, Any] = field(default_factory=dict)


def _rows_at(t: float) -> list[Row]:
    """The rung values recorded by time ``t`` (seconds after the search was created)."""
    return [Row(tid, r["rung"], r["value"], r["promoted"]) for tid, tr in TRIALS.items()
            for r in tr["rungs"] if r["t"] <= t]


def _result(tid: int) -> Res:
    t = TRIALS[tid]
    m: dict[str, Any] = {}
    if t["truncated_at_rung"] is not None:
        m = {"truncated": 1.0, "truncated_at_rung": t["truncated_at_rung"]}
    if t["bad_pattern"]:
        m["bad_pattern"] = 1.0
    return Res(tid, t["reward"], m)


def _quantile(values: list[float], q: float) -> float:
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _round3_reward(rows: list[Row], tid: int) -> float:
    """The round-3 rule, as ``adsearch.daemon.pruning.rung_reward`` had it: a stopped
    child's mid-rank at its rung, mapped to that quantile of the full-budget values."""
    t = TRIALS[tid]
    value, rung = float(t["reward"]), t["truncated_at_rung"]
    if rung is None:
        return value
    top = [r.value for r in rows if r.promoted is None]
    xs = [r.value for r in rows if abs(r.rung - rung) < 1e-6]
    if not top or not xs:
        return value
    below = sum(1 for v in xs if v < value)
    equal = sum(1 for v in xs if v == value)
    p = (below + 0.5 * max(equal, 1)) / len(xs) if len(xs) > 1 else 0.5
    return _quantile(top, min(1.0, max(0.0, p)))


def _replay() -> list[dict[str, Any]]:
    fail = float(DOC["config"]["failure_reward"])
    out = []
    for b in DOC["batches"]:
        rows, ids = _rows_at(b["t"]), b["trial_ids"]
        new = batch_rewards(ids, {i: _result(i) for i in ids}, rows, fail)
        out.append({"version": b["version"], "ids": ids, "logged": b["logged"],
                    "old": [_round3_reward(rows, i) for i in ids], "new": [new[i] for i in ids],
                    "patterns": len({TRIALS[i]["canonical"] for i in ids})})
    return out


REPLAY = _replay()


def test_the_fixture_is_the_round3_lm_protocol() -> None:
    cfg = DOC["config"]
    assert (cfg["task"], cfg["space"], cfg["scheduler"], cfg["batch_size"]) == (
        "wikitext2", "seq-2+off", "asha", 4)
    assert DOC["task_config"]["epochs"] == 16 and len(REPLAY) == 25
    assert all(len(b["ids"]) == 4 for b in REPLAY)


def test_the_round3_rule_replays_the_logged_means_and_collapses() -> None:
    for b in REPLAY:  # the replay is faithful: it gives the mean each update logged
        assert statistics.fmean(b["old"]) == pytest.approx(b["logged"]["mean_reward"], abs=1e-6)
    flat = [b["version"] for b in REPLAY if max(b["old"]) == min(b["old"])]
    assert flat == list(range(2, 26))  # every batch from the 2nd on: one value
    olds = [r for b in REPLAY for r in b["old"]]
    tied = max(olds.count(v) for v in set(olds))
    assert tied == 97 and round(statistics.mode(olds), 4) == 0.6119  # 97 of 100 rewards
    # and the update it fed blew up: batch 2's loss and gradient norm as logged
    assert REPLAY[1]["logged"]["loss"] > 100 and REPLAY[1]["logged"]["grad_norm"] > 1000


def test_the_offset_rule_gives_spread_wherever_patterns_differ() -> None:
    differ = [b for b in REPLAY if b["patterns"] > 1]
    assert len(differ) == 25
    for b in differ:
        assert max(b["new"]) - min(b["new"]) > 1e-3, b
    for b in REPLAY:  # children with different results never share a reward
        seen: dict[float, tuple[Any, Any]] = {}
        for tid, r in zip(b["ids"], b["new"], strict=True):
            t = TRIALS[tid]
            key = (t["truncated_at_rung"], t["reward"])
            assert seen.setdefault(r, key) == key, (b["version"], tid)
    # full-budget children keep their reward; stopped ones are on the full-budget scale
    for b in REPLAY:
        for tid, r in zip(b["ids"], b["new"], strict=True):
            if TRIALS[tid]["truncated_at_rung"] is None:
                assert r == TRIALS[tid]["reward"]
            else:
                assert -0.5 < r < 1.5


@pytest.mark.parametrize("rule", ["old", "new"])
def test_replayed_controller_updates_stay_bounded(rule: str) -> None:
    """The 25 batches through the transformer controller, in order, from the search's seed.
    The first update is the one round 3 made (same samples, same rewards, no baseline yet),
    so the replay reproduces its logged loss and gradient norm. After it, round 3 logged a
    loss of 133 and a gradient norm of 3350 on batch 2 (an advantage of -176); now every
    advantage is within ``adv_clip``, so the surrogate is within ``dual_clip * adv_clip``
    (plus the entropy bonus, ``entropy_coef`` times at most the uniform entropy), and the
    gradient norm stays a tenth of round 3's, on the collapsed rewards as on the new ones."""
    import torch

    from adsearch.controller import Sample, make_controller
    from adsearch.patterns import SearchSpace

    torch.set_num_threads(1)
    space = SearchSpace.from_name(DOC["config"]["space"])
    ctrl = make_controller("transformer", space, seed=int(DOC["config"]["seed"]))
    cfg = ctrl.config
    h_max = sum(math.log(c) for c in space.choices())
    bound = cfg.dual_clip * cfg.adv_clip + cfg.entropy_coef * h_max
    for b in REPLAY:
        batch = [(Sample.from_dict({"tokens": TRIALS[i]["tokens"], "logp": TRIALS[i]["logp"],
                                    "version": TRIALS[i]["controller_version"]}, space=space), r)
                 for i, r in zip(b["ids"], b[rule], strict=True)]
        stats = ctrl.update(batch)
        if b["version"] == 1:
            assert stats.loss == pytest.approx(b["logged"]["loss"], rel=1e-3, abs=1e-4)
            assert stats.grad_norm == pytest.approx(b["logged"]["grad_norm"], rel=1e-3)
        assert stats.adv_max <= cfg.adv_clip + 1e-6, (b["version"], stats)
        assert math.isfinite(stats.loss) and abs(stats.loss) <= bound, (b["version"], stats)
        assert stats.grad_norm < 0.1 * REPLAY[1]["logged"]["grad_norm"], (b["version"], stats)
