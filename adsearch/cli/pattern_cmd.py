"""``adsearch pattern show|sample``: look at dropout patterns.

``show FILE`` draws the masks of a pattern-set file (the JSON that ``adsearch export``
writes) as block art in the terminal and, with ``--png``, as an image: per site, 4 labelled
panels (channels of a conv map, examples of a sequence), in as many rows as the terminal
needs. ``sample --space`` prints random patterns of a search space. Masks are one seeded
draw of the ops' geometry (dark = dropped), made with numpy by
:mod:`adsearch.views.mask_draw`: these commands never import torch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from adsearch.cli.console import make_console
from adsearch.errors import PatternError
from adsearch.patterns import (
    SITE_MAP_SIDES,
    ConvPattern,
    PatternSet,
    SearchSpace,
    SeqPattern,
    load_patternset,
)
from adsearch.patterns.conv2 import RATE_CAP, ConvPattern2
from adsearch.patterns.mapsides import (
    SiteSides,
    default_sides,
    input_size_sides,
    parse_sides,
    provenance_sides,
)
from adsearch.patterns.seq2 import SeqPattern2

if TYPE_CHECKING:  # numpy loads with the drawing, not with every adsearch command
    import numpy as np

pattern_app = typer.Typer(help="Show and sample dropout patterns.", no_args_is_help=True)

#: Channels (conv) or examples (seq) drawn side by side for one site.
PANELS = 4
DEFAULT_CONV_SHAPE = (32, 32)
DEFAULT_SEQ_SHAPE = (64, 32)


def _site_masks(pattern: Any, shape: tuple[int, int], seed: int, kind: str) -> np.ndarray:
    """``(PANELS, rows, cols)`` bool masks of one site of a ``kind`` space, True = kept.

    Conv: ``PANELS`` channels of one example (identical when ``share_c``), rows = H.
    Seq: ``PANELS`` examples, drawn with channels as rows and time as columns.
    """
    from adsearch.views.mask_draw import site_masks

    masks = site_masks(pattern, PANELS, shape, seed)
    return masks if kind == "conv" else masks.transpose(0, 2, 1)


def _panel_label(kind: str, k: int, cols: int) -> str:
    """The label of panel ``k``, as long as fits ``cols`` columns: ``channel 0``, ``ch 0``,
    ``0`` (conv) or ``example 0``, ``ex 0``, ``0`` (seq)."""
    words = ("channel", "ch") if kind == "conv" else ("example", "ex")
    for text in (f"{words[0]} {k}", f"{words[1]} {k}", str(k)):
        if len(text) <= cols:
            return text
    return str(k)[:cols]


def _block_art(masks: np.ndarray, first: int = 0, kind: str = "conv") -> Text:
    """Half-block art: a label line, then two mask rows per line, ``█`` where dropped,
    panels ``first``, ``first + 1``, ... side by side."""
    chars = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    dropped = (~masks).tolist()
    rows, cols = len(dropped[0]), len(dropped[0][0])
    labels = [_panel_label(kind, first + k, cols).ljust(cols) for k in range(len(dropped))]
    lines = [" " + " ".join(labels)]
    for r in range(0, rows, 2):
        parts = []
        for panel in dropped:
            top = panel[r]
            bottom = panel[r + 1] if r + 1 < rows else [False] * len(top)
            parts.append("".join(chars[(a, b)] for a, b in zip(top, bottom, strict=True)))
        lines.append("│" + "│".join(parts) + "│")
    return Text("\n".join(lines), style="bold")


def _dropped(masks: np.ndarray) -> float:
    return 1.0 - float(masks.mean())


def _shape_text(shape: tuple[int, int], kind: str) -> str:
    return f"{shape[0]}x{shape[1]} map" if kind == "conv" else f"T={shape[0]}, D={shape[1]}"


def _describe(site: int, pattern: Any, masks: np.ndarray, shape: tuple[int, int], kind: str) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in pattern.to_dict().items())
    panels = ("channels of one example, the same placement in each (share_c)"
              if getattr(pattern, "share_c", False) else "channels of one example")
    if kind == "seq":
        panels = "examples; rows: channels D, columns: time steps T"
    return (f"site {site} ({_shape_text(shape, kind)}): {fields}  (this draw drops "
            f"{_dropped(masks):.1%}; panels: {panels})")


#: Side in px of one drawn panel in the PNG (every site's map is scaled to it).
PANEL_PX = 160
LABEL_PX = 300


#: Height in px of the panel labels above each row of the PNG.
PANEL_LABEL_PX = 14


def _write_png(path: Path, title: str, sites: list[tuple[str, str, np.ndarray]],
               gap: int = 6) -> None:
    """A title line, then one row per site: its label and drop fraction, then ``PANELS``
    masks scaled to ``PANEL_PX`` (nearest neighbour), each labelled above (``channel k`` or
    ``example k``); white = kept, black = dropped."""
    import numpy as np
    from PIL import Image, ImageDraw

    head = 24
    row = PANEL_LABEL_PX + PANEL_PX + gap
    width = LABEL_PX + PANELS * (PANEL_PX + gap) + gap
    height = head + len(sites) * row + gap
    img = Image.new("RGB", (width, height), (200, 200, 200))
    pen = ImageDraw.Draw(img)
    pen.text((gap, 6), title, fill=(0, 0, 0))
    for s, (label, kind, masks) in enumerate(sites):
        y0 = head + gap + s * row + PANEL_LABEL_PX
        pen.text((gap, y0 + PANEL_PX // 2 - 12), label, fill=(0, 0, 0))
        pen.text((gap, y0 + PANEL_PX // 2 + 4), f"this draw drops {_dropped(masks):.1%}", fill=(60, 60, 60))
        rows, cols = masks.shape[-2:]
        scale = PANEL_PX / max(rows, cols)
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        for k in range(masks.shape[0]):
            x0 = LABEL_PX + gap + k * (PANEL_PX + gap)
            pen.text((x0, y0 - PANEL_LABEL_PX + 1), _panel_label(kind, k, 99), fill=(0, 0, 0))
            tile = Image.fromarray(masks[k].astype(np.uint8) * 255, mode="L")
            img.paste(tile.resize(size, Image.Resampling.NEAREST).convert("RGB"), (x0, y0))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        img.save(path, format="PNG")
    except OSError as exc:
        raise PatternError(f"cannot write PNG {path}: {exc}") from None


def _parse_shape(shape: tuple[int, int] | None, space: SearchSpace,
                 sides: SiteSides | None = None) -> list[tuple[int, int]]:
    """The map shape of each site: ``--shape`` for all, else ``sides`` (recorded for the
    file, or the space's defaults: the site's real map in the built-in network of a conv
    space, :data:`SITE_MAP_SIDES`), else the drawing defaults."""
    kind = space.kind
    if not shape:
        sides = default_sides(space) if sides is None else sides  # "+off" draws the same maps
        fallback = DEFAULT_CONV_SHAPE if kind == "conv" else DEFAULT_SEQ_SHAPE
        return [sides.at(i) or fallback for i in range(space.num_sites)]
    if len(shape) != 2 or any(v < 1 or v > 1024 for v in shape):
        names = "H W" if kind == "conv" else "T D"
        raise PatternError(f"--shape takes two integers {names} in 1..1024, got {shape}")
    return [(int(shape[0]), int(shape[1]))] * space.num_sites


def file_sides(ps: PatternSet, shape: tuple[int, int] | None, sides: str | None,
               input_size: int | None) -> SiteSides:
    """Which maps ``pattern show`` draws a file at, and why: ``--shape`` (every site), else
    ``--sides`` or ``--input-size``, else the file's ``provenance.site_maps`` (``export``
    records the search's), else the space's defaults (saying so)."""
    space = ps.space
    if sum(v is not None for v in (shape, sides, input_size)) > 1:
        raise PatternError("--shape, --sides and --input-size each set the maps: give one")
    if shape:
        one = _parse_shape(shape, space)[0]
        return SiteSides((one,) * space.num_sites, f"--shape {one[0]} {one[1]}", True)
    if (sides is not None or input_size is not None) and space.kind != "conv":
        raise PatternError(f"--sides and --input-size give conv map sides; space {space.name} "
                           "is a sequence space: use --shape T D")
    if sides is not None:
        return parse_sides(sides, space)
    if input_size is not None:
        return input_size_sides(input_size, space)
    return provenance_sides(ps.provenance.site_maps, space) or default_sides(space)


def _maps_text(sides: SiteSides, shapes: list[tuple[int, int]], kind: str) -> str:
    """``maps 24x24, 12x12, 6x6 (source)``: what every site is drawn at, and why."""
    shown = ", ".join(f"{h}x{w}" for h, w in shapes)
    what = "maps" if kind == "conv" else "T x D"
    src = sides.source if any(m is not None for m in sides.maps) else "the drawing defaults"
    return f"{what}: {shown} ({src})"


def _render(
    console: Console, ps: PatternSet, sites: list[int], shapes: list[tuple[int, int]], seed: int,
    png: Path | None, title: str = "",
) -> None:
    drawn = []
    kind = ps.space.kind
    for i in sites:
        masks = _site_masks(ps.patterns[i], shapes[i], seed + i, ps.space.kind)
        drawn.append((f"site {i} ({_shape_text(shapes[i], kind)})", kind, masks))
        console.print(_describe(i, ps.patterns[i], masks, shapes[i], kind), highlight=False, soft_wrap=True)
        # every panel, in rows of as many as fit the terminal (each is its width plus one
        # border column); a panel wider than the terminal is drawn anyway, and said so
        cols = masks.shape[-1]
        fit = max(1, (console.width - 1) // (cols + 1))
        if cols + 2 > console.width:
            console.print(f"(a panel is {cols + 2} columns wide, more than this terminal's "
                          f"{console.width}: its lines wrap; --png draws it at any size)",
                          highlight=False, soft_wrap=True)
        for first in range(0, len(masks), fit):
            console.print(_block_art(masks[first:first + fit], first, kind), soft_wrap=True,
                          highlight=False)
    if png is not None:
        _write_png(png, title or f"space {ps.space.name}, seed {seed}", drawn)
        console.print(f"wrote {png}", highlight=False)


def _json_doc(file: Path, ps: PatternSet, sites: list[int], shapes: list[tuple[int, int]],
              seed: int, sides: SiteSides | None = None) -> dict[str, Any]:
    """``pattern show --json``: the file, space, the maps and where they come from, and per
    site its pattern, map shape, the expected drop there and the dropped share of this
    seeded draw (documented in docs/cli.md)."""
    out = []
    for i in sites:
        masks = _site_masks(ps.patterns[i], shapes[i], seed + i, ps.space.kind)
        out.append({"site": i, "pattern": ps.patterns[i].to_dict(), "shape": list(shapes[i]),
                    "drop_fraction": round(_dropped(masks), 6),
                    **_v1_json(ps.patterns[i], shapes[i]),
                    **_v2_json(ps.patterns[i], shapes[i], seed + i)})
    sides = sides or default_sides(ps.space)
    maps = {"maps": [list(m) for m in shapes], "source": sides.source,
            "recorded": sides.recorded}
    return {"file": str(file), "space": ps.space.name, "seed": seed, "maps": maps,
            "provenance": ps.provenance.to_dict(), "sites": out}


def expected_drop(pattern: Any, shape: tuple[int, int]) -> float:
    """The share of units ``pattern`` drops in expectation on a map of ``shape``. v1 conv:
    the mean over the op's uniform placements on the ``(H, W)`` canvas (it depends on the
    map where the pattern has a finite ``repeat``, and on the pixel grid); v1 seq: the
    exact share; v2: the rate, which every v2 kind realises at every map side."""
    if isinstance(pattern, ConvPattern):
        if pattern.off:
            return 0.0
        from adsearch.views.mask_draw import conv_canvas

        counts = conv_canvas(pattern, shape[0], shape[1])[1]
        return max(0.0, 1.0 - float(counts.mean()) / (shape[0] * shape[1]))
    return float(pattern.drop_fraction())


def _v1_json(pattern: Any, shape: tuple[int, int]) -> dict[str, Any]:
    """``expected_drop`` of a v1 pattern at this map (:func:`expected_drop`)."""
    if isinstance(pattern, (ConvPattern, SeqPattern)):
        return {"expected_drop": round(expected_drop(pattern, shape), 6)}
    return {}


def _v2_json(pattern: Any, shape: tuple[int, int], seed: int) -> dict[str, Any]:
    """v2 keys of ``pattern show --json`` (issue 20): the expected drop at this map side
    (``expected_drop``, the rate: every v2 kind realises it), the cap, the geometry the op
    uses there (conv) or each sub-layer's rate, kind and drawn drop (seq)."""
    if isinstance(pattern, ConvPattern2):
        from adsearch.patterns.conv2 import resolve

        geo = resolve(pattern, shape[0], shape[1])
        return {"expected_drop": pattern.rate, "cap": RATE_CAP,
                "geometry": {"kind": geo.kind, "side_px": geo.side,
                             "period_px": round(geo.period, 6), "seed_prob": round(geo.gamma, 9)}}
    if isinstance(pattern, SeqPattern2):
        from adsearch.views.mask_draw import site_masks

        subs = {}
        for k, name in enumerate(pattern.sites):
            sub = pattern.sub(name)
            drawn = site_masks(sub, PANELS, shape, seed * 16 + k)
            subs[name] = {"rate": sub.rate, "kind": sub.kind,
                          "drop_fraction": round(_dropped(drawn), 6)}
        return {"expected_drop": pattern.drop_fraction(), "cap": RATE_CAP, "sublayers": subs}
    return {}


SidesOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--sides",
        help="Each site's map side in px, comma-separated, e.g. 24,12,6 (conv; overrides the "
        "sides the file records).",
        show_default=False,
    ),
]
InputSizeOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--input-size",
        help="The input side in px of the space's built-in network (conv-3: WRN, conv-4: "
        "ResNet-50); each site's map follows from its strides.",
        show_default=False,
    ),
]

ShapeOpt = Annotated[
    Optional[tuple[int, int]],  # noqa: UP045 (typer reads the annotation at runtime)
    typer.Option(
        "--shape",
        help="Map size for every site: H W (conv; default: each site's real map size in the "
        "built-in network, e.g. conv-3: 32, 16, 8; else 32 32) or T D (seq, default 64 32).",
        show_default=False,
    ),
]


@pattern_app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="Pattern-set JSON file (written by `adsearch export`).")],
    site: Annotated[Optional[int], typer.Option("--site", help="Only this site (0-based).")] = None,  # noqa: UP045
    shape: ShapeOpt = None,
    sides: SidesOpt = None,
    input_size: InputSizeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the drawn placements.")] = 0,
    png: Annotated[Optional[Path], typer.Option("--png", help="Also write the masks to this PNG.")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of drawing (shape: docs/cli.md).")] = False,
) -> None:
    """Draw the masks of a pattern file: one row of 4 channels (conv) or examples (seq) per
    site, each at its map size (the sides the file records, else --sides, else the space's
    defaults; the first line says which)."""
    ps = load_patternset(file)
    n = ps.space.num_sites
    if site is not None and not 0 <= site < n:
        raise PatternError(f"--site {site} is out of range; {file} has sites 0..{n - 1}")
    sites = [site] if site is not None else list(range(n))
    chosen = file_sides(ps, shape, sides, input_size)
    shapes = _parse_shape(None, ps.space, chosen)
    if as_json:
        typer.echo(json.dumps(_json_doc(file, ps, sites, shapes, seed, chosen)))
        return
    console = make_console()
    console.print(f"{file}: space {ps.space.name}, {n} site(s)", highlight=False, soft_wrap=True)
    console.print(_maps_text(chosen, shapes, ps.space.kind), highlight=False, soft_wrap=True)
    prov = ps.provenance
    origin = f", search {prov.search} trial {prov.trial_id}" if prov.search else ""
    _render(console, ps, sites, shapes, seed, png, f"{file.name}: space {ps.space.name}{origin}, seed {seed}")


@pattern_app.command("sample")
def sample(
    space: Annotated[str, typer.Option("--space", help="Search space name, e.g. conv-3 or seq-2.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=100, help="Number of pattern sets to draw.")] = 3,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed (random when omitted).")] = None,  # noqa: UP045
    fmt: Annotated[
        str, typer.Option("--format", help="art (JSON and masks) or json (one JSON object per line).")
    ] = "art",
    shape: ShapeOpt = None,
) -> None:
    """Print random pattern sets of a search space (the random-search baseline's draws)."""
    if fmt not in ("art", "json"):
        raise PatternError(f"--format {fmt!r} is not known; allowed values are art, json")
    sp = SearchSpace.from_name(space)
    rng = random.Random(seed)
    console = make_console()
    for k in range(n):
        ps = PatternSet(sp, tuple(sp.sample(rng)))
        if fmt == "json":
            typer.echo(json.dumps(ps.to_dict(), sort_keys=True))
            continue
        console.print(f"# sample {k}: tokens {sp.encode(ps.patterns)}", highlight=False)
        console.print(ps.to_json(), highlight=False, soft_wrap=True)
        _render(console, ps, list(range(sp.num_sites)), _parse_shape(shape, sp), k, None)


@pattern_app.command("baseline")
def baseline(
    kind: Annotated[str, typer.Argument(help="dropout, spatial, dropblock (conv) or dropout, "
                                        "variational (seq).")],
    rate: Annotated[float, typer.Option("--rate", help="Drop rate, on the v2 grid "
                                        "(0.05 .. 0.5).")],
    space: Annotated[str, typer.Option("--space", help="A v2 space, e.g. conv2-3 or seq2-2.")],
    out: Annotated[Path, typer.Option("-o", "--output", help="Pattern file to write.")],
    block: Annotated[Optional[int], typer.Option("--block", help="DropBlock's block side in px.")] = None,  # noqa: UP045
    sides: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--sides", help="Each site's map side in px, comma-separated (dropblock; default: the "
        "built-in network's at its standard input, e.g. conv2-3: 32,16,8).")] = None,
) -> None:
    """Write a hand-designed baseline as a pattern file of a v2 space: the same masks as the
    baseline module (Dropout, SpatialDropout, variational) or the same law up to the rate
    grid (DropBlock); docs/cli.md."""
    from adsearch.patterns import save_patternset
    from adsearch.patterns.baselines2 import baseline_patterns

    sp = SearchSpace.from_name(space)
    per_site: tuple[int, ...] | None = None
    if sides is not None:
        try:
            per_site = tuple(int(v) for v in sides.split(","))
        except ValueError:
            raise PatternError(f"--sides {sides!r}: expected integers separated by commas, "
                               "e.g. 16,8,4") from None
    elif sp.kind == "conv":
        per_site = SITE_MAP_SIDES.get(f"conv-{sp.num_sites}")
    pats = baseline_patterns(kind, rate, sp, block, per_site)
    from adsearch.patterns import Provenance

    maps = ({"maps": [[v, v] for v in per_site], "source": f"pattern baseline --sides {sides}"}
            if sides is not None and per_site is not None and sp.kind == "conv" else None)
    ps = PatternSet(sp, tuple(pats), Provenance(search=f"baseline {kind} {rate}"
                                                + (f" b{block}" if block else ""),
                                                site_maps=maps))
    save_patternset(ps, out)
    typer.echo(f"wrote {out}: {kind} at rate {rate} as space {sp.name}")


def register(app: typer.Typer) -> None:
    """Add the ``pattern`` command group to ``app``."""
    app.add_typer(pattern_app, name="pattern")
