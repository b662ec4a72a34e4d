"""``thinkrank serve``: reasoning rerankers behind the Cohere, Jina and TEI rerank APIs.

    >>> from thinkrank.rerankers import RerankerSpec
    >>> from thinkrank.server import ServerSettings, create_app
    >>> app = create_app(RerankerSpec(model="jhu-clsp/rank1-7b"), ServerSettings(api_key="secret"))

Needs ``pip install "thinkrank[server]"`` (FastAPI, uvicorn, prometheus-client). See docs/server.md.
"""

from thinkrank.server.app import create_app
from thinkrank.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
