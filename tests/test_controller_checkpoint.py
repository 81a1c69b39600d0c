"""Checkpoints: atomic writes, keep-K, exact resume, corrupt-file fallback, space refusal,
and ``weights_only`` loading (a checkpoint is data, never code)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from adsearch.controller import (
    CheckpointFallbackWarning,
    CheckpointManager,
    Sample,
    SpaceMismatchError,
    make_controller,
    read_checkpoint,
)
from adsearch.controller.checkpoint import MAGIC
from adsearch.controller.synthetic import make_reward
from adsearch.errors import CheckpointError, ConfigError
from adsearch.patterns import SearchSpace

torch.set_num_threads(1)
CONV = SearchSpace("conv", 3)
REWARD = make_reward("match", CONV, seed=0)


def step(ctrl, n: int = 8):  # type: ignore[no-untyped-def]
    """One sample + update with noise-free synthetic rewards; returns (samples, stats)."""
    samples = ctrl.sample(n)
    stats = ctrl.update([(s, REWARD(s.tokens, noise=False)) for s in samples])
    return samples, stats


@pytest.mark.parametrize("kind", ["transformer", "random"])
def test_exact_resume_is_bit_identical(tmp_path: Path, kind: str) -> None:
    ctrl = make_controller(kind, CONV, {"epsilon": 0.05}, seed=11)
    for _ in range(3):
        step(ctrl)
    mgr = CheckpointManager(tmp_path, keep=2)
    path = mgr.save(ctrl, consumed_ids=[3, 1, 2])
    assert mgr.last_saved is not None and mgr.last_saved.version == 3
    assert mgr.last_saved.path == path
    # The uninterrupted run continues...
    a1, sa1 = step(ctrl)
    a2, sa2 = step(ctrl)
    # ...and a restored one must do exactly the same.
    restored, consumed = CheckpointManager(tmp_path).load_latest(CONV)
    assert consumed == {1, 2, 3} and restored.version == 3
    b1, sb1 = step(restored)
    b2, sb2 = step(restored)
    assert (a1, sa1, a2, sa2) == (b1, sb1, b2, sb2)
    if kind == "transformer":
        for p, q in zip(ctrl.policy.parameters(), restored.policy.parameters(), strict=True):
            assert torch.equal(p, q)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Float reductions depend on the thread count: pin it to the child process's value,
    as a restarted daemon runs with the same thread setting as the one that crashed."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def test_exact_resume_across_processes(tmp_path: Path, one_thread: None) -> None:
    """A crash restarts the daemon in a new process: the next samples and update must match
    those of the run that never stopped."""
    ctrl = make_controller("transformer", CONV, seed=7)
    step(ctrl)
    CheckpointManager(tmp_path).save(ctrl, consumed_ids=range(8))
    samples, stats = step(ctrl)
    code = (
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from adsearch.controller import CheckpointManager\n"
        "from adsearch.controller.synthetic import make_reward\n"
        "from adsearch.patterns import SearchSpace\n"
        "sp = SearchSpace('conv', 3)\n"
        "r = make_reward('match', sp, seed=0)\n"
        "c, ids = CheckpointManager(sys.argv[1]).load_latest(sp)\n"
        "ss = c.sample(8)\n"
        "st = c.update([(s, r(s.tokens, noise=False)) for s in ss])\n"
        "print(json.dumps({'samples': [s.to_dict() for s in ss], 'stats': st.to_dict(),\n"
        "                  'ids': sorted(ids)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["ids"] == list(range(8))
    assert [Sample.from_dict(d) for d in got["samples"]] == samples
    assert got["stats"] == stats.to_dict()


def test_keeps_last_k_and_leaves_no_temp_files(tmp_path: Path) -> None:
    ctrl = make_controller("random", CONV, seed=0)
    mgr = CheckpointManager(tmp_path / "ckpt", keep=2)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / ".tmp-ckpt-crashed").write_bytes(b"partial")  # a crash mid-write
    for _ in range(5):
        step(ctrl)
        mgr.save(ctrl, [])
    infos = mgr.checkpoints()
    assert [(i.seq, i.version) for i in infos] == [(4, 4), (5, 5)]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [i.path.name for i in infos]
    data = read_checkpoint(infos[-1].path)
    assert data["space"] == {"name": "conv-3", "fingerprint": CONV.fingerprint()}
    assert data["config"] == ctrl.config.to_dict() and data["kind"] == "random"
    assert set(data["provenance"]) >= {"adsearch", "torch", "created_at", "seed"}


def _three_checkpoints(tmp_path: Path) -> tuple[CheckpointManager, list[Path]]:
    ctrl = make_controller("transformer", CONV, seed=0)
    mgr = CheckpointManager(tmp_path, keep=3)
    paths = []
    for k in range(3):
        step(ctrl)
        paths.append(mgr.save(ctrl, consumed_ids=range(8 * (k + 1))))
    return mgr, paths


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_corrupt_latest_falls_back_to_previous(tmp_path: Path, damage: str) -> None:
    mgr, paths = _three_checkpoints(tmp_path)
    blob = paths[-1].read_bytes()
    if damage == "truncate":
        paths[-1].write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        i = len(blob) - 100
        paths[-1].write_bytes(blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1 :])
    elif damage == "garbage":
        paths[-1].write_bytes(b"PK\x03\x04 not a checkpoint")
    else:
        paths[-1].write_bytes(b"")
    with pytest.raises(CheckpointError, match=paths[-1].name):
        read_checkpoint(paths[-1])
    with pytest.warns(CheckpointFallbackWarning, match=paths[-1].name):
        ctrl, ids = mgr.load_latest(CONV)
    assert ctrl.version == 2 and ids == set(range(16))
    assert mgr.last_loaded is not None and mgr.last_loaded.info.path == paths[-2]
    assert len(mgr.last_loaded.notes) == 1 and paths[-1].name in mgr.last_loaded.notes[0]


def test_all_corrupt_or_none_raises(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no controller checkpoint"):
        CheckpointManager(tmp_path / "missing").load_latest(CONV)
    mgr, paths = _three_checkpoints(tmp_path)
    for p in paths:
        p.write_bytes(p.read_bytes()[:50])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CheckpointFallbackWarning)
        with pytest.raises(CheckpointError, match="no readable controller checkpoint"):
            mgr.load_latest(CONV)


def test_other_space_is_refused_without_fallback(tmp_path: Path) -> None:
    mgr, _ = _three_checkpoints(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointFallbackWarning)  # must not fall back
        with pytest.raises(SpaceMismatchError, match="conv-3.*conv-2"):
            mgr.load_latest(SearchSpace("conv", 2))
    ctrl = make_controller("transformer", SearchSpace("seq", 2))
    with pytest.raises(CheckpointError, match="search space"):
        ctrl.load_state_dict(make_controller("transformer", CONV).state_dict())
    with pytest.raises(CheckpointError, match="'random' controller"):
        make_controller("transformer", CONV).load_state_dict(
            make_controller("random", CONV).state_dict()
        )


class _Exploit:
    """Pickles to a call of os.mkdir: loading it with full pickle would run code."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.target,))


def test_loading_never_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    torch.save({"format": "adsearch-controller-checkpoint", "x": _Exploit(str(marker))}, buf)
    body = buf.getvalue()
    path = tmp_path / "ckpt-00000001-v00000000.pt"
    path.write_bytes(MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
    with pytest.raises(CheckpointError, match="cannot decode"):
        read_checkpoint(path)
    assert not marker.exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep"):
        CheckpointManager(tmp_path, keep=0)
    ctrl = make_controller("random", CONV)
    with pytest.raises(ConfigError, match="trial id"):
        CheckpointManager(tmp_path).save(ctrl, consumed_ids=[1, True])  # type: ignore[list-item]


def test_running_reward_std_is_saved_and_old_states_load(tmp_path: Path) -> None:
    """The advantage scale's running std is part of the state (exact resume covers it);
    a state written before it existed loads with none (the first batch then sets it)."""
    ctrl = make_controller("transformer", CONV, seed=3)
    step(ctrl)
    state = ctrl.state_dict()
    assert state["reward_std"] == ctrl.reward_std is not None and ctrl.reward_std > 0
    old = {k: v for k, v in state.items() if k != "reward_std"}
    restored = make_controller("transformer", CONV, seed=3)
    restored.load_state_dict(old)
    assert restored.reward_std is None and restored.version == ctrl.version
    again = make_controller("transformer", CONV, seed=3)
    again.load_state_dict(state)
    assert again.reward_std == ctrl.reward_std
