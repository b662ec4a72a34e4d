"""``thinkrank families``: every reranker family, its kind, released source and defaults."""

from __future__ import annotations

import json
from typing import Annotated

import typer

HELP = "List the reranker families: kind, released source (repository @ commit), default model and defaults."


def register(app: typer.Typer) -> None:
    app.command("families", help=HELP)(families)


def families(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per family, one per line.")] = False,
) -> None:
    from thinkrank.families import FAMILIES

    if as_json:
        for entry in FAMILIES.values():
            typer.echo(json.dumps(entry.to_dict(), ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="thinkrank families")
    for column in ("family", "kind", "reranker", "source", "default model", "released defaults"):
        table.add_column(column, overflow="fold")
    for entry in FAMILIES.values():
        shown = ", ".join(f"{k}={_short(v)}" for k, v in entry.defaults.items())
        defaults = shown or ("-" if entry.unavailable else "the reranker's")
        source = f"{entry.source.repository} @ {entry.source.commit[:12]}"
        name = entry.name if entry.unavailable is None else f"{entry.name} (unavailable)"
        table.add_row(name, entry.kind, entry.reranker.split(":")[1], source, entry.default_model or "-", defaults)
    Console().print(table)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "...'"
