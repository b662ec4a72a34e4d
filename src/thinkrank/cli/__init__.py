"""The ``thinkrank`` command line. Each sub-command lives in its own module here and is
registered below; heavy imports happen inside the commands so ``--help`` stays fast."""

from __future__ import annotations

from typing import Annotated

import typer

HELP = ("Reasoning rerankers: rerank, retrieve, evaluate, compare, distill, train, quantize and serve, "
        "and check a judgment cache.")

app = typer.Typer(
    name="thinkrank",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from thinkrank import __version__

        typer.echo(f"thinkrank {__version__}")
        raise typer.Exit()


@app.callback(help=HELP)
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def _register() -> None:
    # Each module defines `register(app)`; the order is the order in --help.
    from thinkrank.cli import cache, calibrate, compare, distill, evaluate, quantize, recipe, rerank, retrieve, serve, train

    for module in (rerank, retrieve, evaluate, calibrate, distill, train, recipe, quantize, compare, serve, cache):
        module.register(app)
    from thinkrank.cli import families, prompt  # the family commands, after the others in --help

    for module in (prompt, families):
        module.register(app)


def main() -> None:
    import sys

    from thinkrank.cli.ray_options import bare_ray_flag

    _register()
    app(args=bare_ray_flag(sys.argv[1:]))
