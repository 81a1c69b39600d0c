"""adsearch.atomic: readers see the old file or the new one, and a failed write leaves no trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adsearch.atomic import write_bytes_atomic, write_json_atomic


def test_replaces_whole_file_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.json"
    write_json_atomic(target, {"v": 1}, indent=1)
    write_json_atomic(target, {"v": 2}, durable=False)
    assert json.loads(target.read_text()) == {"v": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_unencodable_data_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_json_atomic(target, {"reward": 0.5})
    with pytest.raises(ValueError):
        write_json_atomic(target, {"reward": float("nan")}, allow_nan=False)
    assert json.loads(target.read_text()) == {"reward": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_custom_temp_prefix_is_cleaned_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "ck.pt"
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes", prefix=".tmp-ckpt-", sync_dir=True)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(target, b"data", prefix=".tmp-ckpt-", sync_dir=True)
    assert target.read_bytes() == b"data" and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
