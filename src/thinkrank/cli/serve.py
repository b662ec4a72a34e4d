"""``thinkrank serve``: run a reasoning reranker as a Cohere/Jina/TEI-compatible HTTP service."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from thinkrank.cli import options
from thinkrank.cli.common import Switch, fail, friendly_errors, reranker_spec

SERVE_HELP = """Serve a reasoning reranker over HTTP, compatible with the Cohere (v1, v2), Jina and TEI rerank APIs.

Routes: POST /v1/rerank, /v2/rerank, /rerank; GET /v1/models, /healthz, /readyz, /metrics; OpenAPI at /docs. Concurrent requests share engine calls; a full queue answers 429 with Retry-After. SIGTERM stops accepting, finishes the requests in flight and exits 0. Examples:

  thinkrank serve --model jhu-clsp/rank1-7b --port 8000

  thinkrank serve --model ./model.gguf --reasoning off --api-key "$KEY" --cache judgments.sqlite

  thinkrank serve --family rank-r1 --port 8000    (any family of thinkrank families: pointwise, listwise or setwise)

Then: cohere.ClientV2(base_url="http://127.0.0.1:8000", api_key="KEY").rerank(model=..., query=..., documents=[...])
"""


# The server's batching and limits, in the order --help lists them.
_SERVER_LIMITS = ("max_batch_size", "max_batch_requests", "max_wait_ms", "max_queue", "max_documents", "max_query_chars",
           "max_document_chars", "max_instruction_chars", "max_body_bytes", "request_timeout", "heartbeat_seconds")


def register(app: typer.Typer) -> None:
    app.command("serve", help=SERVE_HELP)(serve)


@options.command(lambda **opts: _serve(**opts), {
    "host": ("model", "family", "mode"),
    "cors_origin": ("server:served_model_name", "server:strict_model_name"),
    "reasoning": ("server:api_key", "server:cache", "server:calibration"),
    "log_level": ("server:max_think_budget", *options.HEAD[4:], *options.SAMPLING, *options.LISTWISE, *options.SETWISE,
                  *(f"server:{name}" for name in _SERVER_LIMITS), "server:log_text"),
    None: ("engine", "base_url", "engine_api_key", *options.ENGINE[3:]),
})
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port, printed at start).")] = 8000,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="Allow browsers on this origin to call the server (repeat for several; '*' for any). Default: no "
        "CORS.", show_default=False)] = None,
    reasoning: Annotated[Switch, typer.Option(help="Pointwise default: off scores in one forward pass "
                                              "(requests may override).")] = Switch.on,
    think_budget: Annotated[int, typer.Option(help="Pointwise default: most reasoning tokens per document "
                                              "(requests may override).")] = options.default("think_budget"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """The command's own flags (--reasoning and --think-budget are defaults here); the others come from their declarations."""


@friendly_errors
def _serve(**opts: Any) -> None:
    from thinkrank.cli.checks import check_numbers
    from thinkrank.cli.common import given_options
    from thinkrank.errors import require
    from thinkrank.rerankers.spec import build_reranker
    from thinkrank.server.settings import ServerSettings, server_options

    if not 0 <= opts["port"] <= 65535:
        fail(f"--port must be from 0 to 65535, got {opts['port']}")
    if opts["log_level"] not in ("debug", "info", "warning", "error"):
        fail(f"--log-level must be debug, info, warning or error, got {opts['log_level']!r}")
    # The server's --api-key guards this server; the openai engine's key is --engine-api-key.
    engine_opts = {**opts, "api_key": opts["engine_api_key"]}
    check_numbers(engine_opts)
    options.check(engine_opts, given_options(), reasoning_per_request=True)
    spec = reranker_spec(engine_opts)
    settings = ServerSettings(cors_origins=tuple(opts["cors_origin"] or ()),
                              **{name: opts[name] for name in server_options()})
    uvicorn = require("uvicorn", "server")
    from thinkrank.server import create_app

    from thinkrank.server.request_id import RequestIdFilter

    # One handler for every logger, uvicorn's included (log_config=None below), so that every
    # line names the request it was written for.
    logging.basicConfig(level=opts["log_level"].upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    sock = _bind(opts["host"], opts["port"])  # before the model loads: a taken port fails at once
    say = logging.getLogger("thinkrank.server").info
    say("loading %s (%s, %s engine)", spec.model_name, spec.mode, spec.engine_name)
    reranker = build_reranker(spec)
    if opts["calibration"] is not None:
        from thinkrank.calibration.file import calibration_for

        calibration_for(opts["calibration"], reranker.settings, "the server's reranker")  # exit 2 on a mismatch
    if opts["cache"] is not None:
        from thinkrank.cache import JudgmentCache

        JudgmentCache(opts["cache"]).close()  # a bad cache file fails here, with exit 2
    app = create_app(spec, settings, reranker=reranker)
    # An idle kept-alive connection is closed after 5 s (uvicorn's default); a body that does not
    # arrive within --request-timeout is answered 408 and its connection closed (the edge).
    config = uvicorn.Config(app, log_level=opts["log_level"], log_config=None, timeout_keep_alive=5,
                            timeout_graceful_shutdown=int(settings.request_timeout) + 5)
    host, port = sock.getsockname()[:2]
    # Printed whatever the log level: scripts read the address from it (--port 0 picks a free one).
    typer.echo(f"thinkrank serve: serving {app.state.service.model_name!r} on http://{host}:{port} (OpenAPI docs "
               f"at /docs{'; API key required' if settings.api_key else ''})", err=True)
    _run(config, sock)
    say("stopped")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port or --host")
    sock.set_inheritable(True)
    return sock


def _run(config: Any, sock: socket.socket) -> None:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, except that after a graceful stop on SIGTERM/SIGINT the process exits
        0 (uvicorn re-raises the signal afterwards, which kills the process with status 143)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    GracefulServer(config).run(sockets=[sock])
