"""``thinkrank cache check|repair FILE``: look into a judgment cache and salvage a damaged one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import fail, friendly_errors

cache_app = typer.Typer(
    name="cache",
    help="Check a judgment cache, or salvage every readable judgment of a damaged one.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app)


@cache_app.command("check", help="Read every row of a judgment cache (changing nothing); list damaged rows. "
                                 "Exit 0 when sound, 1 when damaged.")
def check(file: Annotated[Path, typer.Argument(help="The cache file (e.g. runs/X/judgments.sqlite).")]) -> None:
    _check(file)


@friendly_errors
def _check(file: Path) -> None:
    from thinkrank.cache import check_cache

    report = check_cache(file)
    _print(report)
    if not report.ok:
        typer.echo(f"run `thinkrank cache repair {file}` to keep the {report.readable} readable judgments", err=True)
        raise typer.Exit(1)


@cache_app.command("repair", help="Copy every readable judgment into a fresh cache. Without --output the damaged "
                                  "file is kept as FILE.damaged-TIME and the repaired one takes its name.")
def repair(
    file: Annotated[Path, typer.Argument(help="The cache file.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the repaired cache here instead.")] = None,
) -> None:
    _repair(file, output)


@friendly_errors
def _repair(file: Path, output: Path | None) -> None:
    from thinkrank.cache import repair_cache

    report = repair_cache(file, output)
    _print(report)
    typer.echo(f"repaired cache: {output or file} ({report.written} judgments)"
               + (f"; the damaged file is kept as {report.backup}" if report.backup else ""), err=True)
    if report.written == 0 and not report.ok:
        fail("no judgment could be read back", code=1)


def _print(report: Any) -> None:
    typer.echo(f"{report.path}: {report.readable} readable judgments, {len(report.bad)} damaged rows")
    for problem in report.problems:
        typer.echo(f"  problem: {problem}")
    for key, reason in report.bad[:20]:
        typer.echo(f"  bad row {key[:16]}: {reason}")
    if len(report.bad) > 20:
        typer.echo(f"  … and {len(report.bad) - 20} more")
