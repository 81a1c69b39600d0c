"""``adsearch sites MODEL_SPEC --input 1,3,32,32``: the dropout-site table of a model.

MODEL_SPEC is ``torchvision:NAME`` (built with ``weights=None``) or ``package.module:function``
(a function returning an ``nn.Module``). The model runs once on a zero tensor of the
``--input`` shape; see :func:`adsearch.sites.find_sites` and docs/sites.md. torch is
imported inside the command.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _channels(chans: list[int]) -> str:
    if len(chans) <= 3:
        return ",".join(map(str, chans))
    return f"{min(chans)}..{max(chans)} ({len(chans)} widths)"


def _modules(mods: list[str]) -> str:
    if len(mods) == 1:
        return mods[0]
    return f"{len(mods)}: {mods[0]}, ..."


def _table(doc: dict[str, Any]) -> Table:
    t = Table(
        title=f"{doc['model']}: space {doc['space']} (input {'x'.join(map(str, doc['input']))})"
    )
    for col in ("site", "name", "shape", "map", "channels", "modules", "shortcuts"):
        t.add_column(col, justify="right" if col in ("site", "channels") else "left")
    for s in doc["sites"]:
        t.add_row(
            str(s["index"]),
            s["name"],
            "x".join(map(str, s["shape"])) or "-",
            "x".join(map(str, s.get("map_shape") or ())) or "-",  # drawn at (H W, or T D)
            _channels(s["channels"]) or "-",
            _modules(s["modules"]),
            str(len(s["shortcuts"])) if s["kind"] == "conv" else "-",
        )
    return t


def register(app: typer.Typer) -> None:
    """Add ``sites`` to ``app``."""

    @app.command("sites")
    def sites(
        model: Annotated[str, typer.Argument(help="torchvision:NAME or package.module:function")],
        input_shape: Annotated[
            str,
            typer.Option(
                "--input", help="example input shape, e.g. 1,3,32,32 (N,C,H,W) or 1,16 (N,T)"
            ),
        ] = "1,3,224,224",
        dtype: Annotated[
            str, typer.Option("--dtype", help="float32, or int64 for token ids")
        ] = "float32",
        as_json: Annotated[bool, typer.Option("--json", help="print the table as JSON")] = False,
    ) -> None:
        """Print the dropout sites of a model: stages of batch norms or Transformer sub-layers."""
        from adsearch.sites import find_sites, space_for
        from adsearch.sites.spec import build_model, example_tensor, parse_shape

        shape = parse_shape(input_shape)
        x = example_tensor(shape, dtype)
        rows = find_sites(build_model(model), x)
        doc = {
            "model": model,
            "input": list(shape),
            "space": space_for(rows).name,
            "sites": [r.to_dict() for r in rows],
            "notes": list(rows.notes),
        }
        if as_json:
            typer.echo(json.dumps(doc, indent=2))
        else:
            console = Console()
            console.print(_table(doc))
            for note in doc["notes"]:
                console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
