"""The ``thinkrank`` command line. Each sub-command lives in its own module here and is
registered below; heavy imports happen inside the commands so ``--help`` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="thinkrank",
    help="Reasoning rerankers: rerank, retrieve, evaluate, distill, train and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Reasoning rerankers: rerank, retrieve, evaluate, distill, train and serve."""


def _register() -> None:
    # Each module defines `register(app)`; the order is the order in --help.
    from thinkrank.cli import cache, calibrate, distill, evaluate, quantize, rerank, retrieve, serve, train

    for module in (rerank, retrieve, evaluate, calibrate, distill, train, quantize, serve, cache):
        module.register(app)


def main() -> None:
    import sys

    from thinkrank.cli.ray_options import bare_ray_flag

    _register()
    app(args=bare_ray_flag(sys.argv[1:]))
