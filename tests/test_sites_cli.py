"""``adsearch sites``: CliRunner for the table, JSON and errors, plus one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adsearch.cli.main import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module outside the package with model-building functions."""
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def encoder():
                layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
                return nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)

            def mlp():
                return nn.Sequential(nn.Linear(16, 8), nn.ReLU())

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def test_torchvision_table_and_json() -> None:
    r = runner.invoke(app, ["sites", "torchvision:resnet18", "--input", "1,3,32,32"])
    assert r.exit_code == 0, r.output
    assert "space conv-5" in r.output and "16x16" in r.output and "layer4.0.bn1" in r.output
    r = runner.invoke(app, ["sites", "torchvision:resnet18", "--input", "1,3,32,32", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["space"] == "conv-5" and doc["input"] == [1, 3, 32, 32]
    assert [s["shape"] for s in doc["sites"]] == [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]
    assert doc["sites"][2]["shortcuts"] == ["layer2.0", "layer2.1"]


def test_user_function(user_models: str) -> None:
    r = runner.invoke(app, ["sites", f"{user_models}:encoder", "--input", "2,7,16", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["space"] == "seq-2"
    rows = {s["name"]: s for s in doc["sites"]}
    assert list(rows) == ["qkv", "attn_out", "ffn_hidden", "ffn_out", "residual"]
    assert rows["ffn_hidden"]["shape"] == [2, 7, 32] and len(rows["residual"]["modules"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["torchvision:resnet1"], "torchvision has no model 'resnet1'; close names: resnet18"),
        (["resnet18"], "expected 'torchvision:NAME'"),
        (["no_such_module_xyz:build"], "cannot import module 'no_such_module_xyz'"),
        (["my_models:missing"], "has no callable 'missing'"),
        (["my_models:not_a_model"], "returned int, expected a torch.nn.Module"),
        (["my_models:mlp", "--input", "1,16"], "has no BatchNorm2d and no recognised Transformer"),
        (["torchvision:resnet18", "--input", "1,3,0,32"], "--input: invalid shape '1,3,0,32'"),
        (["torchvision:resnet18", "--input", "1,5,32,32"], "dry-run forward pass failed"),
    ],
)
def test_errors(user_models: str, args: list[str], message: str) -> None:
    r = runner.invoke(app, ["sites", *args])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and message in r.output, r.output
    assert "Traceback" not in r.output


def test_real_subprocess_and_light_import() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adsearch",
            "sites",
            "torchvision:mobilenet_v2",
            "--input",
            "1,3,32,32",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["space"] == "conv-5"
    # registering the command must not import torch (light commands stay light)
    code = "import sys, adsearch.cli.main; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
