"""The ``thinkrank`` command line. Each sub-command lives in its own module here and is
registered below; heavy imports happen inside the commands so ``--help`` stays fast."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="thinkrank",
    help="Reasoning rerankers: rerank, retrieve, evaluate, distill and train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Reasoning rerankers: rerank, retrieve, evaluate, distill and train."""


def _register() -> None:
    # Each module defines `register(app)`; the order is the order in --help.
    from thinkrank.cli import distill, evaluate, quantize, rerank, retrieve, train

    for module in (rerank, retrieve, evaluate, distill, train, quantize):
        module.register(app)


def main() -> None:
    _register()
    app()
