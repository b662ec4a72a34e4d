"""``thinkrank serve``: reasoning rerankers behind the Cohere, Jina and TEI rerank APIs.

    >>> from thinkrank.rerankers import RerankerSpec
    >>> from thinkrank.server import ServerSettings, create_app
    >>> app = create_app(RerankerSpec(model="jhu-clsp/rank1-7b"), ServerSettings(api_key="secret"))

Needs ``pip install "thinkrank[server]"`` (FastAPI, uvicorn, prometheus-client). See docs/server.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy: the CLI reads ServerSettings' declared options for `--help` without importing FastAPI.
    if name == "create_app":
        from thinkrank.server.app import create_app

        return create_app
    if name == "ServerSettings":
        from thinkrank.server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
