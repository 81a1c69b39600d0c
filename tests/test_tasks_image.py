"""Image data and children on real CIFAR-10 JPEGs (the shipped slice in tests/fixtures/data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from adsearch import rungs
from adsearch.daemon.config import SearchConfig
from adsearch.daemon.launch import create_search
from adsearch.daemon.pruning import Scheduler
from adsearch.daemon.rundir import RunDir
from adsearch.errors import ConfigError, DataError
from adsearch.patterns import ConvPattern
from adsearch.store import Store
from adsearch.store.records import NewTrial
from adsearch.tasks import Budget, get_task
from adsearch.tasks.image import ImageConfig
from adsearch.tasks.image_data import augment, load_test_set, load_train_pool, scan_image_folder


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def _pool(path: object, **kw: object) -> tuple:
    args = {"image_size": None, "download": False, "train_per_class": None, "val_per_class": None, "val_fraction": 0.1, "split_seed": 0}
    args.update(kw)
    return load_train_pool(path, **args)  # type: ignore[arg-type]


def test_embedded_sample_is_balanced_and_disjoint() -> None:
    train, val, source = _pool(None)
    assert "embedded" in source
    assert train.x.shape == (2000, 3, 32, 32) and train.x.dtype == torch.uint8
    assert val.x.shape == (2000, 3, 32, 32)  # large enough to rank (BENCHMARKS.md)
    assert train.y.bincount().tolist() == [200] * 10 and val.y.bincount().tolist() == [200] * 10
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    flat_t = {bytes(r.numpy()) for r in train.x.reshape(2000, -1)}
    assert not any(bytes(r.numpy()) in flat_t for r in val.x.reshape(2000, -1))
    sub, _, _ = _pool(None, train_per_class=20)
    assert sub.y.bincount().tolist() == [20] * 10


def test_image_folder_splits_are_balanced_reproducible_disjoint(data_slices: Path) -> None:
    tree = data_slices / "cifar10-jpg"  # 10 train and 5 test real JPEGs per class
    train, val, source = _pool(tree, train_per_class=6, val_per_class=3, split_seed=3)
    assert source.endswith("train")  # found the train/ sub-tree
    assert train.x.shape == (60, 3, 32, 32) and val.x.shape == (30, 3, 32, 32)
    assert train.y.bincount().tolist() == [6] * 10 and val.y.bincount().tolist() == [3] * 10
    again, val2, _ = _pool(tree, train_per_class=6, val_per_class=3, split_seed=3)
    assert torch.equal(again.x, train.x) and torch.equal(val2.x, val.x)
    other, _, _ = _pool(tree, train_per_class=6, val_per_class=3, split_seed=4)
    assert not torch.equal(other.x, train.x)
    seen = {bytes(r.numpy()) for r in train.x.reshape(len(train), -1)}
    assert not any(bytes(r.numpy()) in seen for r in val.x.reshape(len(val), -1))
    test, _ = load_test_set(tree, image_size=None, download=False, per_class=5)
    assert test.x.shape == (50, 3, 32, 32) and test.classes == train.classes
    resized, _ = load_test_set(tree / "test", image_size=24, download=False, per_class=1)
    assert resized.x.shape == (10, 3, 24, 24)


def test_augment_is_a_padded_crop_and_flip() -> None:
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment(x, 0, False, g), x)
    out = augment(x, 4, False, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for n in range(6):  # every output is one 32x32 window of the zero-padded input
        assert any(torch.equal(out[n], padded[n, :, i : i + 32, j : j + 32]) for i in range(9) for j in range(9))
    flips = augment(x, 0, True, torch.Generator().manual_seed(1))
    assert all(torch.equal(flips[n], x[n]) or torch.equal(flips[n], x[n].flip(2)) for n in range(6))
    assert not torch.equal(flips, x)


def _tiny(**kw: object) -> ImageConfig:
    base = {"depth": 10, "width": 1, "train_per_class": 30, "val_per_class": 20, "epochs": 4,
            "batch_size": 50, "lr": 0.1}
    base.update(kw)
    return get_task("cifar10").config_from_dict(base)


def test_short_training_lowers_loss_and_reports_test_accuracy(data_slices: Path) -> None:
    task = get_task("cifar10")
    cfg = _tiny(test_data=str(data_slices / "cifar10-jpg" / "test"), test_per_class=5)
    pats = [ConvPattern(size=2, stride=4), ConvPattern(size=1, stride=2, residual=True), ConvPattern(size=2, stride=2, share_c=True)]
    res = task.run_child(cfg, pats, Budget(), "cpu", 0)
    losses = [p["train_loss"] for p in res.curve]
    assert len(res.curve) == 4 and losses[-1] < losses[0] - 0.05, losses
    assert res.reward == res.metrics["val_acc"] and 0.0 <= res.reward <= 1.0
    assert 0.0 <= res.metrics["test_acc"] <= 1.0 and res.metrics["diverged"] == 0.0
    assert res.metrics["steps"] == 4 * (300 // 50) and res.seconds > 0
    again = task.run_child(cfg, pats, Budget(), "cpu", 0)
    assert again.metrics["val_loss"] == pytest.approx(res.metrics["val_loss"], rel=1e-4)  # seeded


def test_budget_steps_and_divergence() -> None:
    task = get_task("cifar10")
    res = task.run_child(_tiny(), {"kind": "dropout", "drop_prob": 0.1}, Budget(steps=3), "cpu", 1)
    assert res.metrics["steps"] == 3
    bad = task.run_child(_tiny(lr=1e30, momentum=0.0, weight_decay=0.0, schedule="constant"), None, Budget(steps=30), "cpu", 0)
    assert bad.reward == 0.0 and bad.metrics["diverged"] == 1.0 and "diverged_step" in bad.metrics


def test_bad_image_inputs_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist.*ImageFolder"):
        _pool(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        _pool(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="flat has no class sub-folders"):
        scan_image_folder(tmp_path / "flat")
    (tmp_path / "noimg" / "cat").mkdir(parents=True)
    (tmp_path / "noimg" / "cat" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="cat holds no images"):
        _pool(tmp_path / "noimg")
    for c in ("cat", "dog"):
        (tmp_path / "corrupt" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "corrupt" / c / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode image .*corrupt/cat/0.jpg"):
        _pool(tmp_path / "corrupt", val_per_class=1)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.npz is not an adsearch image sample"):
        _pool(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="asks for 10000 per class"):
        _pool(None, train_per_class=10000)
    with pytest.raises(ConfigError, match="needs a data path"):
        get_task("imagenet").run_child(get_task("imagenet").get_default_config(), None, Budget(steps=1), "cpu", 0)
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'; use one of sgd, adamw"):
        get_task("cifar10").run_child(_tiny(optimizer="adam"), None, Budget(steps=1), "cpu", 0)
    with pytest.raises(ConfigError, match="unknown key"):
        get_task("cifar10").config_from_dict({"epoch": 3})


def test_imagenet_task_trains_resnet50_on_an_image_folder(data_slices: Path) -> None:
    task = get_task("imagenet")
    cfg = task.config_from_dict({"data": str(data_slices / "cifar10-jpg" / "train"), "image_size": 40, "train_per_class": 2, "val_per_class": 1, "batch_size": 10})
    assert cfg.model == "resnet50" and task.space(cfg).name == "conv-4"
    pats = [ConvPattern(size=2, stride=4)] * 3 + [ConvPattern(size=1, stride=2, residual=True)]
    res = task.run_child(cfg, pats, Budget(steps=2), "cpu", 0)
    assert res.metrics["steps"] == 2 and 0.0 <= res.reward <= 1.0 and res.metrics["diverged"] == 0.0


def test_eval_every_skips_validation_passes_but_not_rungs_or_the_end() -> None:
    task = get_task("cifar10")
    res = task.run_child(_tiny(epochs=7, eval_every=3), None, Budget(), "cpu", 0)
    assert [p["epoch"] for p in res.curve] == [3.0, 6.0, 7.0]
    # an early-stopping rung (epochs) is validated even between eval_every passes
    ruled = task.run_child(_tiny(epochs=4, eval_every=5), None, Budget(rungs=(1.0, 2.0)), "cpu", 0)
    assert [p["epoch"] for p in ruled.curve] == [1.0, 2.0, 4.0]
    with pytest.raises(ConfigError, match="eval_every=0"):
        task.run_child(_tiny(eval_every=0), None, Budget(steps=1), "cpu", 0)


def test_reward_metric_round_trips_and_a_bad_value_is_refused() -> None:
    task = get_task("cifar10")
    assert task.get_default_config().reward_metric == "val_acc"  # the paper's reward
    cfg = task.config_from_dict({"reward_metric": "val_loss", "val_per_class": 7})
    again = task.config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.reward_metric == "val_loss" and again.val_per_class == 7
    with pytest.raises(ConfigError, match="reward_metric='val_ppl': use one of val_acc, val_loss"):
        task.config_from_dict({"reward_metric": "val_ppl"})
    with pytest.raises(ConfigError, match="reward_metric"):
        task.run_child({"reward_metric": "loss"}, None, Budget(steps=1), "cpu", 0)
    with pytest.raises(ConfigError, match="reward_metric"):
        get_task("imagenet").config_from_dict({"reward_metric": 1})


def _rung_search(tmp_path: Path, tc: dict[str, object]) -> tuple[Store, int, Scheduler]:
    """A real SQLite search with one rung at epoch 1 of 2 that stops the bottom half."""
    cfg = SearchConfig(name="r", task="cifar10", controller="random", workers=1, batch_size=2,
                       budget_trials=8, task_config=tc, prune_epoch=1, prune_min_trials=3,
                       prune_quantile=0.5)
    run = create_search(cfg, RunDir(tmp_path / "r"))
    store = Store(run.store_url())
    sid = store.get_search("r").id
    return store, sid, Scheduler(SearchConfig.from_dict(store.get_search("r").config),
                                 run.store_url())


def _new_trials(store: Store, sid: int, n: int) -> list[int]:
    recs = store.add_trials(sid, [NewTrial(pattern=[], pattern_hash=f"h{i}", tokens=[],
                                           controller_version=0, logp=0.0, seed=i)
                                  for i in range(n)])
    return [r.id for r in recs]


def test_val_loss_reward_is_exp_of_minus_loss_at_every_point_and_at_the_rungs(
        tmp_path: Path) -> None:
    """A tiny real run: reward, curve and the values recorded at the rungs are all
    exp(-validation loss), higher is better; accuracy and loss stay in metrics and curve."""
    tc = {"depth": 10, "width": 1, "train_per_class": 20, "val_per_class": 10,
          "batch_size": 50, "lr": 0.1, "epochs": 2, "reward_metric": "val_loss"}
    task = get_task("cifar10")
    store, sid, sched = _rung_search(tmp_path, tc)
    try:
        full_id, cut_id = _new_trials(store, sid, 2)
        res = task.run_child(tc, None, Budget.from_dict(sched.budget(full_id), reporter=store), "cpu", 0)
        assert "truncated" not in res.metrics and len(res.curve) == 2
        assert res.reward == math.exp(-res.metrics["val_loss"]) and 0.0 < res.reward < 1.0
        for p in res.curve:
            assert p["val_metric"] == math.exp(-p["val_loss"]) and 0.0 <= p["val_acc"] <= 1.0
        assert res.metrics["val_acc"] == res.curve[-1]["val_acc"]
        rows = {r.rung: r.value for r in store.rung_rows(sid) if r.trial_id == full_id}
        assert rows == {1.0: res.curve[0]["val_metric"], 2.0: res.reward}
        # higher is better on that scale: below two values near exp(-0) = 1, a child stops
        rule = rungs.rule(sched.schedule.keep, sched.schedule.min_trials)
        for i, other in enumerate(_new_trials(store, sid, 2)):
            store.record_rung(other, 1.0, 1.0, 0.98 + 0.01 * i, rule)
        cut = task.run_child(tc, None, Budget.from_dict(sched.budget(cut_id), reporter=store), "cpu", 0)
        assert cut.metrics["truncated"] == 1.0 and len(cut.curve) == 1
        assert cut.reward == cut.curve[0]["val_metric"] == math.exp(-cut.metrics["val_loss"])
        assert cut.metrics["prune_below"] > cut.reward
        # with val_acc, the same child at the same seed is rewarded (and ranked) by accuracy
        acc = task.run_child({**tc, "reward_metric": "val_acc"}, None, Budget(), "cpu", 0)
        assert acc.metrics["val_loss"] == pytest.approx(res.metrics["val_loss"], rel=1e-4)
        assert acc.reward == acc.metrics["val_acc"] == acc.curve[-1]["val_metric"]
    finally:
        store.close()


@pytest.mark.parametrize(("key", "value"), [("val_per_class", 0), ("val_fraction", 0.0),
                                            ("val_fraction", 1.0)])
def test_an_empty_or_whole_validation_split_is_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"{key}={value!r}"):
        get_task("cifar10").config_from_dict({key: value})


def test_keep_best_reports_and_tests_the_weights_of_the_best_validation_pass() -> None:
    """Early stopping as a tuned length: with a learning rate that wrecks the net late, the
    best pass is an early one, and the reward, ``val_*`` and the test metrics are those of its
    weights (re-evaluated here), not of the last ones."""
    task = get_task("cifar10")
    cfg = _tiny(epochs=6, keep_best=True, lr=0.4, schedule="constant")
    res = task.run_child(cfg, None, Budget(), "cpu", 0)
    best = max(res.curve, key=lambda p: p["val_metric"])
    assert res.metrics["best_epoch"] == best["epoch"]
    assert res.reward == best["val_metric"] and res.metrics["val_loss"] == best["val_loss"]
    plain = task.run_child(_tiny(epochs=6, lr=0.4, schedule="constant"), None, Budget(), "cpu", 0)
    # the same run; only the reported weights differ
    assert [q["val_loss"] for q in plain.curve] == pytest.approx([q["val_loss"] for q in res.curve])
    assert "best_epoch" not in plain.metrics and plain.reward == res.curve[-1]["val_metric"]
    assert best is not res.curve[-1]  # this setting peaks early (0.195 at epoch 4 of 6)
    assert res.reward > plain.reward
