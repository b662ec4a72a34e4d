"""``--ray [ADDRESS] --workers N``: run ``thinkrank rerank`` or ``evaluate`` on a Ray cluster.

The commands declare these options with the annotations below and, when ``--ray`` is given,
swap their in-process reranker for :class:`~thinkrank.integrations.ray.RayReranker`, which
builds the same reranker (with the command's own builder) once per Ray actor.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from thinkrank.cli.common import fail
from thinkrank.families.base import Kind

RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray", metavar="[ADDRESS]",
        help="Run on Ray: --ray alone starts a local Ray; --ray auto joins the running cluster; --ray "
        "ray://HOST:10001 a remote one. Needs thinkrank\\[ray].",
    ),
]
Workers = Annotated[int | None, typer.Option(help="With --ray: actors, one model copy each.  \\[default: 2]")]
GpusPerWorker = Annotated[
    float | None, typer.Option(help="With --ray: GPUs per actor.  \\[default: 1 with --engine vllm, else 0]")
]


def bare_ray_flag(argv: list[str]) -> list[str]:
    """``argv`` with a bare ``--ray`` (last, or before another option) spelled ``--ray=local``:
    typer has no options whose value may be left out, and an address never starts with ``-``."""
    return [
        "--ray=local" if arg == "--ray" and (i + 1 == len(argv) or argv[i + 1].startswith("-")) else arg
        for i, arg in enumerate(argv)
    ]


def check(opts: dict[str, Any]) -> None:
    """Fail on Ray options given without ``--ray`` or with bad values, before anything loads."""
    if opts["ray"] is None:
        for flag in ("workers", "gpus_per_worker"):
            if opts[flag] is not None:
                fail(f"--{flag.replace('_', '-')} needs --ray")
        return
    if opts["workers"] is not None and opts["workers"] < 1:
        fail(f"--workers must be >= 1, got {opts['workers']}")
    if opts["gpus_per_worker"] is not None and opts["gpus_per_worker"] < 0:
        fail(f"--gpus-per-worker must be >= 0, got {opts['gpus_per_worker']}")


def ray_reranker(opts: dict[str, Any], build: Callable[[dict[str, Any]], Any], *, judges: Kind,
                 cache: Path | None = None, chunk_size: int | None = None, progress: Any = None) -> Any:
    """A RayReranker whose actors each run ``build(opts)``; ``opts`` are the command's options."""
    import logging

    from thinkrank.integrations.ray import RayReranker

    # Ray Data logs each execution at INFO on stderr; the command has its own progress bar.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    gpus = opts["gpus_per_worker"]
    if gpus is None:
        gpus = 1.0 if opts.get("engine") == "vllm" else 0.0
    # Only plain values travel to the actors (the progress bar stays here).
    plain = {k: v for k, v in opts.items() if k != "progress"}
    return RayReranker(partial(build, plain), cache=cache, workers=opts["workers"] or 2, address=opts["ray"],
                       num_gpus=gpus, judges=judges, chunk_size=chunk_size, progress=progress)


def close(reranker: Any) -> None:
    """Shut down the Ray this command started (nothing for an in-process reranker)."""
    shutdown = getattr(reranker, "close", None)
    if reranker is not None and type(reranker).__name__ == "RayReranker" and callable(shutdown):
        shutdown()
