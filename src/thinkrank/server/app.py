"""The HTTP app: Cohere/Jina/TEI-compatible rerank routes over :class:`RerankService`.

``create_app(spec, settings)`` builds it; ``thinkrank serve`` runs it with uvicorn. Routes:
``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2), ``POST /rerank`` (vLLM/TEI
style), ``GET /v1/models``, ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI docs at
``/docs``. Field by field: ``docs/server.md``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from thinkrank.errors import InvalidInputError, require
from thinkrank.rerankers.base import Reranker, RerankRequest
from thinkrank.rerankers.pointwise import Pair
from thinkrank.rerankers.spec import RerankerSpec
from thinkrank.server.batching import Closed, Job, QueueFull
from thinkrank.server.edge import Edge
from thinkrank.server.errors import ApiError, install_error_handlers
from thinkrank.server.schemas import ErrorBody, Health, ModelCard, ModelList, RerankBody, RerankResponse, TEIResult
from thinkrank.server.responses import ranking_of, response_body, stream
from thinkrank.server.service import RerankService
from thinkrank.server.settings import ServerSettings
from thinkrank.types import Document, Ranking, as_documents, check_query

fastapi = require("fastapi", "server")
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402

log = logging.getLogger("thinkrank.server")

_ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in (
    (400, "The body is not valid JSON."),
    (401, "Missing or wrong API key."),
    (404, "The model is not served here."),
    (413, "Too many documents, a query or document too long, or a body too large."),
    (422, "A field is missing or invalid; the message names it."),
    (429, "The queue is full; retry after Retry-After seconds."),
    (503, "The model is loading, failed to load, or the server is shutting down."),
    (504, "The request took longer than the server's request timeout."),
)}
_RERANK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The ranking (Cohere/Jina shape; TEI's bare list when the body has `texts`), or with "
          "`stream: true` Server-Sent Events: `result` per judged document, then `ranking`.",
          "content": {"text/event-stream": {"schema": {
              "type": "object", "required": ["event", "data"],
              "description": "One event: `result` (data: one result, as in `results`), `ranking` (data: the whole "
                             "response) or `error` (data: {status, message}).",
              "properties": {"event": {"type": "string", "enum": ["result", "ranking", "error"]},
                             "data": {"type": "string", "contentMediaType": "application/json"}}}}}},
    **_ERRORS,
}


def create_app(spec: RerankerSpec, settings: ServerSettings | None = None, *,
               reranker: Reranker | None = None) -> Any:
    """A FastAPI app serving the reranker ``spec`` describes under ``settings``.

    The model loads in the background when the app starts (``/readyz`` says when it is done);
    pass an already built ``reranker`` (from ``build_reranker(spec)``) to skip that.

    Raises:
        MissingExtraError: ``thinkrank[server]`` is not installed.
    """
    require("prometheus_client", "server")
    settings = settings or ServerSettings()
    service = RerankService(spec, settings, reranker)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    from thinkrank import __version__

    app = fastapi.FastAPI(
        title="thinkrank", version=__version__, lifespan=lifespan,
        description="Reasoning rerankers (Rank1, Rank-K) behind the Cohere, Jina and TEI rerank APIs.",
    )
    app.state.service = service
    app.add_middleware(Edge, settings=settings, metrics=service.metrics)
    install_error_handlers(app)
    _add_routes(app, service)
    app.openapi = lambda: _openapi(app, service)
    return app


def _openapi(app: Any, service: RerankService) -> dict[str, Any]:
    """FastAPI's schema with this server's own limits and model name written into the request body,
    so /docs and schema-driven clients (and fuzzers) know them."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    s, schemas = service.settings, schema["components"]["schemas"]
    body, props = schemas["RerankBody"], schemas["RerankBody"]["properties"]
    text = {"maxLength": s.max_document_chars, "pattern": r"\S"}  # \S: not blank
    props["model"]["anyOf"][0]["enum"] = [service.model_name]
    props["query"].update(minLength=1, maxLength=s.max_query_chars, pattern=r"\S")
    for name in ("documents", "texts"):
        array = next(branch for branch in props[name]["anyOf"] if branch.get("type") == "array")
        items = array["items"]
        next(b for b in items.get("anyOf", [items]) if b.get("type") == "string").update(text)
        props[name] = {**array, "maxItems": s.max_documents, "description": props[name]["description"]}
    schemas["DocumentIn"]["properties"]["text"].update(text)
    body["oneOf"] = [{"required": ["documents"]}, {"required": ["texts"]}]
    if service.pointwise:
        props["think_budget"]["anyOf"][0]["maximum"] = s.max_think_budget
    else:
        props.pop("think_budget")
    if s.api_key:
        from thinkrank.server.edge import OPEN_PATHS

        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                if path not in OPEN_PATHS:
                    operation["security"] = [{"bearer": []}]
                    operation["responses"].setdefault("401", {
                        "description": "Missing or wrong API key.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    app.openapi_schema = schema
    return schema


def _add_routes(app: Any, service: RerankService) -> None:
    response_model = RerankResponse | list[TEIResult]

    def rerank_route(path: str, version: str, summary: str) -> None:
        async def rerank(body: RerankBody) -> Any:
            return await _rerank(service, body, version)

        app.post(path, response_model=response_model, responses=_RERANK_RESPONSES, summary=summary,
                 operation_id=f"rerank_{path.strip('/').replace('/', '_')}")(rerank)

    rerank_route("/v1/rerank", "1", "Rerank (Cohere v1, Jina)")
    rerank_route("/v2/rerank", "2", "Rerank (Cohere v2)")
    rerank_route("/rerank", "2", "Rerank (vLLM / TEI style)")

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> Any:
        return ModelList(data=[ModelCard(id=service.model_name, settings=service.info())])

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Any:
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "Not ready."}})
    async def readyz() -> Any:
        if service.ready:
            return Health(status="ready")
        status = f"failed: {service.load_error}" if service.load_error else "loading"
        return JSONResponse(Health(status=status).model_dump(), status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Any:
        body, content_type = service.metrics.render()
        return PlainTextResponse(body, media_type=content_type)


# ---- one rerank request ---------------------------------------------------------------------------
async def _rerank(service: RerankService, body: RerankBody, version: str) -> Any:
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    docs: list[Document] = []
    status = 200
    try:
        docs, tei = _check(service, body)
        if not docs:
            return JSONResponse(response_body(service, body, request_id, version, docs, Ranking(body.query, []), tei))
        job = _submit(service, body, docs)
        if body.stream:
            return stream(service, body, request_id, version, docs, tei, job)
        ranking = await _wait(service, body, docs, job)
        return JSONResponse(response_body(service, body, request_id, version, docs, ranking, tei))
    except ApiError as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        _log(service, body, request_id, version, docs, status, started)


def _check(service: RerankService, body: RerankBody) -> tuple[list[Document], bool]:
    """The request's documents, after every check that can refuse it (before any work)."""
    s = service.settings
    if body.model is not None and body.model != service.model_name:
        raise ApiError(404, f"model {body.model!r} is not served here; this server serves {service.model_name!r} "
                            "(see GET /v1/models), or leave model out")
    for name in ("documents", "texts"):
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ApiError(422, f"{name}: must be a list, not null; leave it out instead")
    if (body.documents is None) == (body.texts is None):
        raise ApiError(422, "documents: give exactly one of documents (Cohere/Jina shape) or texts (TEI shape)")
    field, raw = ("documents", body.documents) if body.documents is not None else ("texts", body.texts)
    assert raw is not None
    if len(raw) > s.max_documents:
        raise ApiError(413, f"{field}: {len(raw)} documents; this server takes at most {s.max_documents} per request "
                            "(split the request, or raise --max-documents)")
    if len(body.query) > s.max_query_chars:
        raise ApiError(413, f"query: {len(body.query)} characters; at most {s.max_query_chars} "
                            "(--max-query-chars)")
    items: list[Any] = []
    for i, doc in enumerate(raw):
        item = doc if isinstance(doc, str) else {"text": doc.text, "title": doc.title, "id": doc.id}
        size = len(item) if isinstance(item, str) else len(item["text"]) + len(item["title"] or "")
        if size > s.max_document_chars:
            raise ApiError(413, f"{field}[{i}]: {size} characters; at most {s.max_document_chars} per document "
                                "(--max-document-chars)")
        items.append(item)
    try:
        check_query(body.query)
    except InvalidInputError as exc:
        raise ApiError(422, f"query: {exc}") from None
    try:
        docs = as_documents(items)
    except InvalidInputError as exc:
        raise ApiError(422, f"{field}: {exc}") from None
    _check_options(service, body)
    if service.load_error:
        raise ApiError(503, f"the reranker failed to load ({service.load_error}); see the server log")
    if not service.ready:
        service.metrics.rejected.labels("not_ready").inc()
        raise ApiError(503, "the model is still loading; retry shortly (GET /readyz says when it is ready)",
                       {"Retry-After": "5"})
    return docs, body.texts is not None


def _check_options(service: RerankService, body: RerankBody) -> None:
    if not service.pointwise:
        if body.think_budget is not None or body.reasoning is False:
            field = "think_budget" if body.think_budget is not None else "reasoning"
            raise ApiError(422, f"{field}: this server runs a listwise reranker (one chain per window); "
                                "think_budget and reasoning=false apply to pointwise servers only")
        return
    if body.think_budget is not None and body.think_budget > service.settings.max_think_budget:
        raise ApiError(422, f"think_budget: {body.think_budget} is above this server's limit of "
                            f"{service.settings.max_think_budget} tokens (--max-think-budget)")


def _submit(service: RerankService, body: RerankBody, docs: list[Document]) -> Job:
    key = service.variant(body.reasoning, body.think_budget, body.max_tokens_per_doc)
    if key.per_query:
        job = Job(key, [RerankRequest(body.query, docs, None, body.instruction)], [len(docs)])
    else:
        job = Job(key, [Pair(body.query, d, i, body.instruction) for i, d in enumerate(docs)], [1] * len(docs))
    assert service.batcher is not None
    try:
        service.batcher.submit(job)
    except QueueFull as exc:
        service.metrics.rejected.labels("queue_full").inc()
        raise ApiError(429, f"the server is busy ({service.batcher.pending} documents queued); retry after "
                            f"{exc.retry_after}s", {"Retry-After": str(exc.retry_after)}) from None
    except Closed:
        service.metrics.rejected.labels("shutting_down").inc()
        raise ApiError(503, "the server is shutting down; retry on another instance", {"Retry-After": "1"}) from None
    return job


async def _wait(service: RerankService, body: RerankBody, docs: list[Document], job: Job) -> Ranking:
    assert service.batcher is not None
    try:
        results = await asyncio.wait_for(asyncio.shield(job.future), service.settings.request_timeout)
    except TimeoutError:
        service.batcher.cancel(job)
        service.metrics.rejected.labels("timeout").inc()
        raise ApiError(504, f"the request took longer than {service.settings.request_timeout:g}s "
                            "(--request-timeout); send fewer documents or a smaller think_budget") from None
    except asyncio.CancelledError:
        service.batcher.cancel(job)
        raise
    return ranking_of(body, job, results)


def _log(service: RerankService, body: RerankBody, request_id: str, version: str, docs: list[Document],
         status: int, started: float) -> None:
    fields: dict[str, Any] = {
        "id": request_id, "api": version, "status": status, "documents": len(docs), "query_chars": len(body.query),
        "top_n": body.top_n, "reasoning": body.reasoning, "think_budget": body.think_budget, "stream": body.stream,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if service.settings.log_text:  # off by default: queries and documents may be private
        fields.update(query=body.query, texts=[d.text for d in docs])
    log.info("rerank %s", json.dumps(fields, ensure_ascii=False))
