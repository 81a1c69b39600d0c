"""Tests of ``adsearch pattern show|sample`` (CliRunner plus one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from adsearch.cli.main import app
from adsearch.patterns import ConvPattern, PatternSet, SearchSpace, SeqPattern, save_patternset

runner = CliRunner()


@pytest.fixture()
def conv_file(tmp_path: Path) -> Path:
    ps = PatternSet(
        SearchSpace("conv", 2),
        (ConvPattern(size=4, stride=4, share_c=True), ConvPattern(size=2, stride=6, rotate=30)),
    )
    return save_patternset(ps, tmp_path / "best.json")


def test_show_prints_block_art(conv_file: Path) -> None:
    result = runner.invoke(app, ["pattern", "show", str(conv_file), "--shape", "8", "8", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "space conv-2, 2 site(s)" in result.output
    assert "site 0 (8x8 map): size=4, stride=4" in result.output and "site 1 (8x8 map):" in result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("│")]
    assert len(lines) == 2 * 4  # two sites, 8 rows -> 4 half-block lines each
    # site 0 (period 8, size 4, share_c): 4 identical panels, each a 4x4 block on 8x8
    panels = lines[0].strip("│").split("│")
    assert len(panels) == 4 and len(set(panels)) == 1 and len(panels[0]) == 8
    art = "".join(lines[:4])
    pixels = 2 * art.count("█") + art.count("▀") + art.count("▄")
    assert pixels == 4 * 16  # 16 dropped pixels per panel


def test_show_one_site_png(conv_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks.png"
    result = runner.invoke(app, ["pattern", "show", str(conv_file), "--site", "1", "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert "site 0" not in result.output and "site 1" in result.output
    with Image.open(out) as img:
        assert img.format == "PNG"
        # a row of panel labels (14 px) above the 160 px panels
        assert img.size == (300 + 4 * (160 + 6) + 6, 24 + 14 + 160 + 2 * 6)
        px = img.convert("RGB")
        colours = {c for _, c in px.getcolors(1 << 16)}
        assert {(0, 0, 0), (200, 200, 200), (255, 255, 255)} <= colours  # dropped/text, background, kept
        title = px.crop((0, 0, 300, 24))  # the title line and the label column hold text
        label = px.crop((0, 24, 300, 24 + 14 + 160))
        assert min(c[0] for _, c in title.getcolors(1 << 16)) < 100  # text drawn on the grey
        assert min(c[0] for _, c in label.getcolors(1 << 16)) < 100
        for k in range(4):  # each panel has its label ("channel k") above it, on the grey
            x0 = 300 + 6 + k * (160 + 6)
            above = px.crop((x0, 24 + 6, x0 + 160, 24 + 6 + 14))
            assert min(c[0] for _, c in above.getcolors(1 << 16)) < 100


def _wrn_file(tmp_path: Path) -> Path:
    ps = PatternSet(SearchSpace("conv", 3), (ConvPattern(size=2, stride=2, repeat=1),) * 3)
    return save_patternset(ps, tmp_path / "wrn.json")


def test_show_draws_each_site_at_its_real_map_size(tmp_path: Path) -> None:
    """conv-3 is WRN on 32x32 inputs: its sites see 32, 16 and 8 px maps, so one 2x2 block
    drops 4/1024, 4/256 and 4/64 of them (the old fixed 32x32 said 0.4% for all three)."""
    result = runner.invoke(app, ["pattern", "show", str(_wrn_file(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["space"] == "conv-3" and [s["shape"] for s in doc["sites"]] == [[32, 32], [16, 16], [8, 8]]
    assert [s["drop_fraction"] for s in doc["sites"]] == pytest.approx([4 / 1024, 4 / 256, 4 / 64], abs=1e-6)
    assert doc["sites"][0]["pattern"]["repeat"] == 1 and set(doc["provenance"]) == {"search", "trial_id", "reward"}
    text = runner.invoke(app, ["pattern", "show", str(_wrn_file(tmp_path))])
    assert text.exit_code == 0, text.output
    assert "site 2 (8x8 map)" in text.output and "drops 6.2%" in text.output
    forced = json.loads(runner.invoke(app, ["pattern", "show", str(_wrn_file(tmp_path)), "--json", "--shape", "8", "8"]).output)
    assert [s["shape"] for s in forced["sites"]] == [[8, 8]] * 3


def test_show_seq_file(tmp_path: Path) -> None:
    ps = PatternSet(SearchSpace("seq", 1), (SeqPattern(size=2, stride=2, mask="token"),))
    path = save_patternset(ps, tmp_path / "seq.json")
    result = runner.invoke(app, ["pattern", "show", str(path), "--shape", "16", "4"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("│")]
    assert len(lines) == 2  # D = 4 channels as rows, T = 16 steps as columns
    assert all(len(p) == 16 for p in lines[0].strip("│").split("│"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "5"], "--site 5 is out of range"),
        (["--shape", "0", "8"], "--shape takes two integers H W in 1..1024"),
    ],
)
def test_show_bad_options(conv_file: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["pattern", "show", str(conv_file), *args])
    assert result.exit_code == 1
    assert message in result.output


def test_show_bad_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pattern", "show", str(tmp_path / "nope.json")])
    assert result.exit_code == 1 and "does not exist" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "adsearch.patternset", "format_version": 1, "space": "conv-1", "patterns": [{"size": 99}]}')
    result = runner.invoke(app, ["pattern", "show", str(bad)])
    assert result.exit_code == 1 and "unknown field" not in result.output and "missing field" in result.output
    assert "Traceback" not in result.output


def test_sample_json_and_art() -> None:
    result = runner.invoke(app, ["pattern", "sample", "--space", "conv-3", "--n", "2", "--seed", "4", "--format", "json"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2
    sets = [PatternSet.from_dict(json.loads(ln)) for ln in lines]
    assert all(s.space == SearchSpace("conv", 3) for s in sets)
    again = runner.invoke(app, ["pattern", "sample", "--space", "conv-3", "--n", "2", "--seed", "4", "--format", "json"])
    assert again.output == result.output
    art = runner.invoke(app, ["pattern", "sample", "--space", "seq-2", "--n", "1", "--seed", "0"])
    assert art.exit_code == 0, art.output
    assert "# sample 0: tokens" in art.output and "site 1 (T=64, D=32):" in art.output
    bad = runner.invoke(app, ["pattern", "sample", "--space", "lstm-2"])
    assert bad.exit_code == 1 and "unknown kind 'lstm'" in bad.output
    bad = runner.invoke(app, ["pattern", "sample", "--space", "conv-1", "--format", "yaml"])
    assert bad.exit_code == 1 and "allowed values are art, json" in bad.output


def test_subprocess_smoke(conv_file: Path) -> None:
    exe = Path(sys.executable).with_name("adsearch")
    proc = subprocess.run(
        [str(exe), "pattern", "show", str(conv_file), "--site", "0", "--shape", "8", "8"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "site 0 (8x8 map): size=4" in proc.stdout and "█" in proc.stdout
    proc = subprocess.run([str(exe), "pattern", "show", str(conv_file), "--site", "9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: --site 9 is out of range") and "Traceback" not in proc.stderr


def test_panels_are_labelled_and_never_dropped_at_80_columns(tmp_path: Path) -> None:
    """Issue 23 §5: the panels (channels) had no labels, and at 80 columns a 32 px site
    silently showed 2 of its 4 panels. Now each row of panels has a label line, and the
    panels that do not fit go on the next row."""
    ps = PatternSet(SearchSpace("conv", 1), (ConvPattern(size=3, stride=4),))
    path = save_patternset(ps, tmp_path / "one.json")
    res = runner.invoke(app, ["pattern", "show", str(path), "--shape", "32", "32"],
                        env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    drawn = [ln for ln in lines if ln.startswith(("│", " channel"))]
    assert all(len(ln) <= 80 for ln in drawn), max(map(len, drawn))  # text lines soft-wrap
    labels = [ln for ln in lines if ln.startswith(" channel")]
    assert len(labels) == 2 and "channel 0" in labels[0] and "channel 1" in labels[0]
    assert "channel 2" in labels[1] and "channel 3" in labels[1]
    art = [ln for ln in lines if ln.startswith("│")]
    assert len(art) == 2 * 16 and all(ln.count("│") == 3 for ln in art)  # 2 rows of 2 panels
    assert "panels: channels of one example" in res.output
    wide = runner.invoke(app, ["pattern", "show", str(path), "--shape", "32", "32"],
                         env={"COLUMNS": "200"})
    assert [ln for ln in wide.output.splitlines() if ln.startswith(" channel")] == [
        " " + " ".join(f"channel {k}".ljust(32) for k in range(4))]
    seq = save_patternset(PatternSet(SearchSpace("seq", 1), (SeqPattern(size=2, stride=2),)),
                          tmp_path / "seq.json")
    res = runner.invoke(app, ["pattern", "show", str(seq), "--shape", "16", "4"])
    assert " example 0        example 1" in res.output
    assert "rows: channels D, columns: time steps T" in res.output
    narrow = runner.invoke(app, ["pattern", "show", str(path), "--shape", "4", "4"])
    assert " ch 0 ch 1 ch 2 ch 3" in narrow.output  # short labels on a 4 px map


def test_a_panel_wider_than_the_terminal_is_drawn_and_said(tmp_path: Path) -> None:
    ps = PatternSet(SearchSpace("conv", 1), (ConvPattern(size=3, stride=4),))
    path = save_patternset(ps, tmp_path / "one.json")
    res = runner.invoke(app, ["pattern", "show", str(path), "--shape", "8", "100"],
                        env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "a panel is 102 columns wide, more than this terminal's 80" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith(" channel")]) == 4


def test_sample_takes_short_n() -> None:
    long = runner.invoke(app, ["pattern", "sample", "--space", "conv-2", "--n", "2", "--seed", "1",
                               "--format", "json"])
    short = runner.invoke(app, ["pattern", "sample", "--space", "conv-2", "-n", "2", "--seed", "1",
                                "--format", "json"])
    assert short.exit_code == 0, short.output
    assert short.output == long.output and len(short.output.splitlines()) == 2


def test_pattern_commands_never_import_torch(conv_file: Path, tmp_path: Path) -> None:
    """docs/cli.md: `pattern` never imports torch (it took 4.5 s to start). A real process
    draws, writes a PNG and samples, then reports what it imported."""
    code = (
        "import sys\n"
        "from adsearch.cli.main import main\n"
        f"rc = main(['pattern', 'show', {str(conv_file)!r}, '--png', {str(tmp_path / 'p.png')!r}])\n"
        "rc += main(['pattern', 'show', " + repr(str(conv_file)) + ", '--json'])\n"
        "rc += main(['pattern', 'sample', '--space', 'seq2-2', '-n', '2'])\n"
        "print('RC', rc, 'TORCH', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "RC 0 TORCH False" in proc.stdout, proc.stdout[-500:]
