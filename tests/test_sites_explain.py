"""What find_sites says about what is not a site, and the embedding layout check (issue 23 §4).

- A model without sites is refused with what it has, why that is not a site, and the fix
  (squeezenet1_0: nothing; convnext_tiny and swin_t: LayerNorm / window attention; an MLP
  with BatchNorm1d).
- maxvit_t gets sites for its batch norms and a note that its attention blocks are left out.
- A time-first encoder behind a batch-first embedding: the dry run sees the contradiction,
  the emb op follows the embedding's own layout (its pattern runs along time), and the
  table, attach (a warning) and ``adsearch sites`` say so.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.errors import ConfigError
from adsearch.patterns import SeqPattern
from adsearch.sites import attach, find_sites

torch.set_num_threads(1)
runner = CliRunner()
IMG = torch.zeros(1, 3, 64, 64)


@pytest.mark.parametrize(
    "name,found",
    [
        ("squeezenet1_0", ["26 Conv2d and no normalisation or attention layer at all"]),
        ("convnext_tiny", ["5 LayerNorm2d, 18 LayerNorm", "a LayerNorm normalises the last axis"]),
        ("swin_t", ["29 LayerNorm", "12 ShiftedWindowAttention", "seq sites are mapped only for"]),
    ],
)
def test_torchvision_refusals_say_what_was_found(name: str, found: list[str]) -> None:
    model = torchvision.models.get_model(name, weights=None)
    with pytest.raises(ConfigError) as err:
        find_sites(model, IMG)
    msg = str(err.value)
    assert "no BatchNorm2d and no recognised Transformer layer" in msg
    for part in found:
        assert part in msg, msg
    assert "What you can do: insert the ops by hand" in msg
    assert "adsearch.ops.make_dropout(pattern)" in msg and "'What is not a site'" in msg


def test_batchnorm1d_mlp_refusal_explains_the_shape() -> None:
    mlp = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20), nn.ReLU(), nn.Linear(20, 2))
    with pytest.raises(ConfigError) as err:
        find_sites(mlp, torch.zeros(4, 10))
    msg = str(err.value)
    assert "1 BatchNorm1d (e.g. '1'): not a site" in msg
    assert "(N, C) features or (N, C, L) signals" in msg and "(N, C, H, W) maps" in msg


def test_maxvit_attention_blocks_left_out_with_a_note() -> None:
    model = torchvision.models.get_model("maxvit_t", weights=None)
    table = find_sites(model, torch.zeros(1, 3, 224, 224))
    assert table and all(s.kind == "conv" for s in table)
    assert len(table.notes) == 1
    note = table.notes[0]
    assert note.startswith("MaxVit's attention blocks are not sites")
    assert "22 RelativePositionalMultiHeadAttention" in note and "45 LayerNorm" in note
    assert "the patterns act after its BatchNorm2d layers only" in note


def test_plain_models_have_no_notes() -> None:
    assert find_sites(torchvision.models.resnet18(weights=None), IMG).notes == ()
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    assert find_sites(enc, torch.zeros(2, 5, 16)).notes == ()


class _TimeFirstLM(nn.Module):
    """Batch-first token ids (N, T), a time-first encoder: the model transposes between."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=False)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

    def forward(self, tok: torch.Tensor) -> torch.Tensor:
        return self.enc(self.emb(tok).transpose(0, 1)).transpose(0, 1)


#: Token spans of one step every 5 steps at the embedding (the other pattern acts elsewhere).
EMB_ONLY = [
    SeqPattern(size=1, stride=4, mask="token", sites=("emb",)),
    SeqPattern(size=1, stride=4, mask="token", sites=("ffn_out",)),
]


def _dropped_steps(model: _TimeFirstLM, tok: torch.Tensor) -> list[list[int]]:
    """Per example, the time steps whose embedding the emb op zeroed (one training pass)."""
    seen: list[torch.Tensor] = []
    handle = model.emb.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        model(tok)
    finally:
        handle.remove()
    zero = (seen[0] == 0).all(-1)  # (N, T): the embedding output is batch first
    return [torch.nonzero(row).flatten().tolist() for row in zero]


def test_emb_layout_contradiction_is_detected_and_the_pattern_runs_along_time() -> None:
    torch.manual_seed(0)
    model = _TimeFirstLM().train()
    n, t = 3, 16
    tok = torch.randint(1, 50, (n, t))  # no zero rows in the table: ids 1.. are not padding
    table = find_sites(model, tok)
    assert table[0].name == "emb" and table[0].shape == (n, t, 16)  # like every other row
    assert all(s.shape[:2] == (n, t) for s in table)
    assert len(table.notes) == 1 and "'emb' outputs (3, 16, 16), batch first" in table.notes[0]
    assert "the emb op follows the embedding's own layout (N, T, D)" in table.notes[0]
    with pytest.warns(UserWarning, match="emb op follows the embedding's own layout"):
        handle = attach(model, EMB_ONLY, tok)
    with handle:
        assert handle.notes == table.notes
        for seed in range(5):
            torch.manual_seed(seed)
            for steps in _dropped_steps(model, tok):
                # a span of 1 every 5 steps at one phase per example: 3 or 4 of 16, period 5
                assert len(steps) in (3, 4), steps
                assert all(b - a == 5 for a, b in zip(steps, steps[1:], strict=False)), steps


def test_emb_layout_that_cannot_be_told_or_was_not_checked_is_said() -> None:
    model = _TimeFirstLM()
    square = find_sites(model, torch.randint(1, 50, (4, 4)))
    assert len(square.notes) == 1
    assert "cannot be checked" in square.notes[0] and "batch size equals its" in square.notes[0]
    unchecked = find_sites(model)
    assert unchecked.notes == (
        "emb: the embeddings' layout was not checked against the Transformer layers' "
        "batch_first (no example_input, so the model was not run); pass one batch of your "
        "input as example_input",
    )
    assert len(find_sites(model, torch.randint(1, 50, (2, 7))).notes) == 1  # contradiction

    class _Consistent(_TimeFirstLM):
        def forward(self, tok: torch.Tensor) -> torch.Tensor:  # tok (T, N): no transpose
            return self.enc(self.emb(tok))

    assert find_sites(_Consistent(), torch.randint(1, 50, (7, 2))).notes == ()


def test_sites_cli_prints_the_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes_models.py").write_text(textwrap.dedent(
        """
        import torch
        from torch import nn

        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(50, 16)
                layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=False)
                self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)

            def forward(self, tok):
                return self.enc(self.emb(tok).transpose(0, 1)).transpose(0, 1)

        def lm():
            return LM()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    r = runner.invoke(app, ["sites", "notes_models:lm", "--input", "2,9", "--dtype", "int64"],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "note: emb: 'emb' outputs (2, 9, 16), batch first" in r.output
    r = runner.invoke(app, ["sites", "notes_models:lm", "--input", "2,9", "--dtype", "int64",
                            "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert len(doc["notes"]) == 1 and doc["notes"][0].startswith("emb: 'emb' outputs")


def test_docs_stage_count_of_inception_v3_matches_find_sites() -> None:
    """docs/sites.md said every stride-32 classifier has five stages; inception_v3's
    unpadded 3x3 convs give it seven resolutions, and the docs now say so with the sides."""
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    table = find_sites(model, torch.zeros(1, 3, 299, 299))
    sides = [s.shape[0] for s in table]
    assert sides == [149, 147, 73, 71, 35, 17, 8]
    docs = (Path(__file__).resolve().parents[1] / "docs" / "sites.md").read_text()
    assert "**inception_v3 is `conv-7`**" in docs
    assert ", ".join(map(str, sides)) + " pixels at 299x299" in " ".join(docs.split())
