"""The HTTP app: Cohere/Jina/TEI-compatible rerank routes over :class:`RerankService`.

``create_app(spec, settings)`` builds it; ``thinkrank serve`` runs it with uvicorn. Routes:
``POST /v1/rerank`` (Cohere v1, Jina), ``POST /v2/rerank`` (Cohere v2), ``POST /rerank`` (vLLM/TEI
style), ``GET /v1/models``, ``/healthz``, ``/readyz``, ``/metrics`` and the OpenAPI docs at
``/docs``. Field by field: ``docs/server.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from thinkrank.calibration.selection import conformal_cut, selection_options
from thinkrank.errors import InvalidInputError, require
from thinkrank.rerankers.base import Reranker, RerankRequest
from thinkrank.rerankers.pointwise import Pair
from thinkrank.rerankers.spec import RerankerSpec
from thinkrank.server import request_id
from thinkrank.server.batching import Closed, Job, QueueFull
from thinkrank.server.edge import Edge
from thinkrank.server.errors import ApiError, install_error_handlers
from thinkrank.server.schemas import ErrorBody, Health, ModelCard, ModelList, RerankBody, RerankResponse, TEIResult
from thinkrank.server.responses import Prepared, json_response, ranking_of, response_body, stream
from thinkrank.server.service import RerankService, Variant
from thinkrank.server.settings import ServerSettings
from thinkrank.types import Document, Ranking, as_documents, check_encodable, check_query

fastapi = require("fastapi", "server")
from fastapi import Request  # noqa: E402
from fastapi.responses import JSONResponse, PlainTextResponse  # noqa: E402

log = logging.getLogger("thinkrank.server")

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody, "description": text} for code, text in (
    (400, "The body is not valid JSON, or the document list is empty."),
    (401, "Missing or wrong API key."),
    (404, "The model is not served here."),
    (408, "The body did not arrive in full within the request timeout."),
    (413, "Too many documents, a query, instruction or document too long (in characters, or in tokens for the "
          "model's context), or a body too large."),
    (415, "The body was not sent as JSON (Content-Type)."),
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
    if settings.cors_origins:  # outside the edge: a preflight is answered before any key check
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
                           expose_headers=["X-Request-Id", "Retry-After"], max_age=600)
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
    text = {"maxLength": s.max_document_chars}  # an empty document is allowed: scored 0 without model work
    if s.strict_model_name:
        props["model"]["anyOf"][0]["enum"] = [service.model_name]
    props["query"].update(minLength=1, maxLength=s.max_query_chars, pattern=r"\S")
    props["instruction"]["anyOf"][0]["maxLength"] = s.max_instruction_chars
    for name in ("documents", "texts"):
        array = next(branch for branch in props[name]["anyOf"] if branch.get("type") == "array")
        items = array["items"]
        next(b for b in items.get("anyOf", [items]) if b.get("type") == "string").update(text)
        props[name] = {**array, "minItems": 1, "maxItems": s.max_documents, "description": props[name]["description"]}
    schemas["DocumentIn"]["properties"]["text"].update(text)
    props["truncate"]["anyOf"][0]["enum"] = [True]
    props["truncation_direction"]["anyOf"][0]["pattern"] = "^[Rr][Ii][Gg][Hh][Tt]$"
    body["oneOf"] = [{"required": ["documents"]}, {"required": ["texts"]}]
    if service.pointwise:
        props["think_budget"]["anyOf"][0]["maximum"] = s.max_think_budget
        # A budget needs reasoning on: sent as true, or left to a server whose default is on.
        on = {"const": True} if not service.spec.reasoning else {"enum": [True, None]}
        body["if"] = {"required": ["think_budget"], "properties": {"think_budget": {"type": "integer"}}}
        body["then"] = {"properties": {"reasoning": on}, **({"required": ["reasoning"]} if not service.spec.reasoning else {})}
    else:
        for name in ("think_budget", "raw_scores"):
            props.pop(name)
    _select_schema(props, schemas["SelectIn"], s.calibration)
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


def _select_schema(props: dict[str, Any], select: dict[str, Any], calibration: Any) -> None:
    """``select`` as this server takes it: only null without a calibration; with one, exactly one
    mode (``alpha`` and ``rule`` only with ``recall``), conformal mode only when the calibration
    holds labelled queries, and an explicit ``score`` or ``top-k`` rule when its file is too old
    for the default rule."""
    if calibration is None:
        props["select"] = {"type": "null", "description": props["select"]["description"]
                           + " This server has no calibration, so it takes none."}
        return
    from thinkrank.calibration.file import load_calibration

    try:
        cal = load_calibration(calibration)
    except InvalidInputError:
        return  # the server reports the unreadable file itself
    null = {"type": "null"}
    threshold = {"required": ["probability"], "properties": {"probability": {"type": "number"}, "recall": null,
                                                             "alpha": null, "rule": null}}
    conformal: dict[str, Any] = {"required": ["recall"], "properties": {"recall": {"type": "number"},
                                                                        "probability": null}}
    if any(not q.scores for q in cal.conformal):  # a version 1 file: no recall-probability rule
        conformal = {"required": ["recall", "rule"], "properties": {**conformal["properties"],
                                                                    "rule": {"enum": ["score", "top-k"]}}}
    select["oneOf"] = [conformal, threshold] if cal.conformal else [threshold]


def _add_routes(app: Any, service: RerankService) -> None:
    response_model = RerankResponse | list[TEIResult]

    def rerank_route(path: str, version: str, summary: str) -> None:
        async def rerank(body: RerankBody, request: Request) -> Any:
            return await _rerank(service, body, version, request)

        app.post(path, response_model=response_model, responses=_RERANK_RESPONSES, summary=summary,
                 operation_id=f"rerank_{path.strip('/').replace('/', '_')}")(rerank)

    rerank_route("/v1/rerank", "1", "Rerank (Cohere v1, Jina)")
    rerank_route("/v2/rerank", "2", "Rerank (Cohere v2)")
    rerank_route("/rerank", "2", "Rerank (vLLM / TEI style)")

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> Any:
        return ModelList(data=[ModelCard(id=service.model_name, settings=service.info())])

    async def healthz() -> Any:
        return Health(status="ok")

    async def readyz() -> Any:
        if service.ready:
            return Health(status="ready")
        status = f"failed: {service.load_error}" if service.load_error else "loading"
        return JSONResponse(Health(status=status).model_dump(), status_code=503)

    # Probes may use HEAD (load balancers, uptime checkers): the same status, no body.
    not_ready = {503: {"model": Health, "description": "Not ready."}}
    for method in ("get", "head"):
        route = getattr(app, method)
        route("/healthz", response_model=Health, operation_id=f"healthz_{method}")(healthz)
        route("/readyz", response_model=Health, responses=not_ready, operation_id=f"readyz_{method}")(readyz)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Any:
        body, content_type = service.metrics.render()
        return PlainTextResponse(body, media_type=content_type)


# ---- one rerank request ---------------------------------------------------------------------------
async def _rerank(service: RerankService, body: RerankBody, version: str, request: Any) -> Any:
    started = time.perf_counter()
    rid = request_id.of(request.scope)
    docs: list[Document] = []
    status = 200
    streaming = False
    try:
        prepared = _check(service, body, version, rid)
        docs = prepared.docs
        await _check_with_library(service, prepared)
        prepared.select = await _check_select(service, prepared)
        if not prepared.judged:  # only empty documents: nothing for the model to do
            return json_response(response_body(service, prepared, ranking_of(prepared, None, [])))
        job = _submit(service, prepared)
        if body.stream:
            streaming = True
            return stream(service, prepared, job, lambda outcome: _log(service, body, rid, version, docs, outcome, started))
        ranking = await _wait(service, prepared, job, request)
        return json_response(response_body(service, prepared, ranking))
    except ApiError as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    finally:
        if not streaming:
            _log(service, body, rid, version, docs, status, started)


def _check(service: RerankService, body: RerankBody, version: str, rid: str) -> Prepared:
    """The request's documents, after every check that can refuse it without the tokenizer."""
    s = service.settings
    if s.strict_model_name and body.model is not None and body.model != service.model_name:
        raise ApiError(404, f"model {body.model!r} is not served here; this server serves {service.model_name!r} "
                            "(see GET /v1/models), or leave model out")
    for name in ("documents", "texts"):
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ApiError(422, f"{name}: must be a list, not null; leave it out instead")
    if (body.documents is None) == (body.texts is None):
        raise ApiError(422, "documents: give exactly one of documents (Cohere/Jina shape) or texts (TEI shape)")
    _refuse_lone_surrogates(body.model_dump(exclude_unset=True))
    field, raw = ("documents", body.documents) if body.documents is not None else ("texts", body.texts)
    assert raw is not None
    if not raw:  # as Cohere answers it
        raise ApiError(400, f"{field}: the list is empty; send at least one document")
    if len(raw) > s.max_documents:
        raise ApiError(413, f"{field}: {len(raw)} documents; this server takes at most {s.max_documents} per request "
                            "(split the request, or raise --max-documents)")
    if len(body.query) > s.max_query_chars:
        raise ApiError(413, f"query: {len(body.query)} characters; at most {s.max_query_chars} "
                            "(--max-query-chars)")
    if body.instruction is not None and len(body.instruction) > s.max_instruction_chars:
        raise ApiError(413, f"instruction: {len(body.instruction)} characters; at most {s.max_instruction_chars} "
                            "(--max-instruction-chars)")
    try:
        check_query(body.query)
    except InvalidInputError as exc:
        raise ApiError(422, f"query: {exc}") from None
    variant = _check_options(service, body)
    items = [_document_item(field, i, doc, body.rank_fields, s.max_document_chars) for i, doc in enumerate(raw)]
    judged = [i for i, item in enumerate(items) if item["text"].strip()]
    try:
        as_documents([items[i] for i in judged])  # the library's rules: types, unique ids
    except InvalidInputError as exc:
        raise ApiError(422, f"{field}: {exc}") from None
    docs = [Document(item["id"], item["text"], item["title"]) for item in items]
    if service.load_error:
        raise ApiError(503, f"the reranker failed to load ({service.load_error}); see the server log")
    if not service.ready:
        service.metrics.rejected.labels("not_ready").inc()
        raise ApiError(503, "the model is still loading; retry shortly (GET /readyz says when it is ready)",
                       {"Retry-After": "5"})
    return Prepared(body, version, rid, docs, judged, body.texts is not None, variant, service.pointwise)


def _refuse_lone_surrogates(value: Any, path: str = "") -> None:
    """Refuse text that is not valid Unicode anywhere in the body (a JSON "\\ud800" escape):
    no tokenizer, log or response could carry it."""
    if isinstance(value, str):
        try:
            check_encodable(value, path or "body")
        except InvalidInputError as exc:
            raise ApiError(422, str(exc)) from None  # the message starts with the field's path
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(str(key), f"{path}.{key}" if path else "field name")
            _refuse_lone_surrogates(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{path}[{i}]")


def _document_item(field: str, i: int, doc: Any, rank_fields: list[str] | None, max_chars: int) -> dict[str, Any]:
    """One document as the library takes it: its id (given, or its input position), and the
    text the model reads (``rank_fields``' values in order, or text with title)."""
    if isinstance(doc, str):
        item: dict[str, Any] = {"text": doc, "title": None, "id": str(i)}
    elif rank_fields:
        values = {"text": doc.text, "title": doc.title, **(doc.model_extra or {})}
        # A value that is not a string (a number, a list) is read as its JSON text.
        text = " ".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                        for v in (values.get(name) for name in rank_fields) if v not in (None, ""))
        item = {"text": text, "title": None, "id": doc.id if doc.id is not None else str(i)}
    else:
        item = {"text": doc.text, "title": doc.title, "id": doc.id if doc.id is not None else str(i)}
    size = len(item["text"]) + len(item["title"] or "")
    if size > max_chars:
        raise ApiError(413, f"{field}[{i}]: {size} characters; at most {max_chars} per document "
                            "(--max-document-chars)")
    return item


def _check_options(service: RerankService, body: RerankBody) -> Variant:
    if body.truncate is False:
        raise ApiError(422, "truncate: this server always cuts documents too long for the model to fit (flagged "
                            "`truncated` with return_reasoning); send truncate: true or leave it out")
    if body.truncation_direction is not None and body.truncation_direction.lower() != "right":
        raise ApiError(422, f"truncation_direction: {body.truncation_direction!r}; this server keeps the start of a "
                            "long document (right), so only 'right' is accepted")
    if not service.pointwise:
        for name in ("think_budget", "reasoning", "raw_scores"):
            value = getattr(body, name)
            if value is not None and (name != "reasoning" or value is False) and (name != "raw_scores" or value):
                raise ApiError(422, f"{name}: this server runs a {service.spec.mode} reranker (one chain per "
                                    f"{'window' if service.spec.mode == 'listwise' else 'comparison'}); "
                                    "think_budget, reasoning=false and raw_scores apply to pointwise servers only")
    elif body.think_budget is not None:
        reasoning = service.spec.reasoning if body.reasoning is None else body.reasoning
        if not reasoning:
            raise ApiError(422, "think_budget: has no effect with reasoning off (no chain is generated); drop "
                                "think_budget or send reasoning: true")
        if body.think_budget > service.settings.max_think_budget:
            raise ApiError(422, f"think_budget: {body.think_budget} is above this server's limit of "
                                f"{service.settings.max_think_budget} tokens (--max-think-budget)")
    return service.variant(body.reasoning, body.think_budget, body.max_tokens_per_doc)


async def _check_with_library(service: RerankService, p: Prepared) -> None:
    """The reranker's own checks, token counts against the context included, before the request
    joins a batch: a request that cannot run is refused here and never shares an engine call."""
    if not p.judged:
        return
    request = RerankRequest(p.body.query, p.model_docs, None, p.body.instruction)
    try:
        await service.check(p.variant, request)
    except InvalidInputError as exc:
        if service.pointwise and p.variant.think_budget and await _fits_without_budget(service, p, request):
            raise ApiError(422, f"think_budget: {exc}") from None
        field = "query" if service.pointwise else "documents"
        if p.body.instruction and service.pointwise:
            field = "query and instruction"
        raise ApiError(413, f"{field}: {exc}") from None


async def _check_select(service: RerankService, p: Prepared) -> dict[str, Any] | None:
    """``select``'s keywords, once the server is known to have a calibration for the request's
    setting (a selection of uncalibrated scores would have no meaning)."""
    if p.body.select is None:
        return None
    sel = p.body.select
    try:
        options = selection_options(sel.recall, sel.alpha, sel.probability, sel.rule, where="select")
    except InvalidInputError as exc:
        raise ApiError(422, f"{exc} (as {{\"recall\": 0.9, \"alpha\": 0.1}} or {{\"probability\": 0.5}})") from None
    cal = service.calibration
    if cal is None:
        raise ApiError(422, "select: this server has no calibration; start it with --calibration FILE (a file "
                            "written by `thinkrank calibrate`, see docs/calibration.md), or leave select out")
    loop = asyncio.get_running_loop()
    settings = await loop.run_in_executor(service.checker, lambda: service._reranker(p.variant).settings)
    try:
        cal.check_settings(settings, "this request's setting")
    except InvalidInputError as exc:
        raise ApiError(422, f"select: the server's calibration does not apply: {exc}. Leave out the fields that "
                            "change the setting (reasoning, think_budget, max_tokens_per_doc), or leave select out") from None
    if "recall" in options and not cal.conformal:
        raise ApiError(422, "select: the server's calibration holds no labelled query with a relevant candidate, "
                            "so conformal mode (recall) cannot run; use {\"probability\": P}")
    if "recall" in options:  # the cut is computed once per rule, target and alpha, then kept on the calibration
        try:
            await loop.run_in_executor(service.checker, lambda: conformal_cut(
                cal, options["recall"], options["alpha"], options["rule"]))
        except InvalidInputError as exc:
            raise ApiError(422, f"select: {exc}") from None
    return options


async def _fits_without_budget(service: RerankService, p: Prepared, request: RerankRequest) -> bool:
    try:
        await service.check(dataclasses.replace(p.variant, reasoning=False, think_budget=0, per_query=False), request)
    except InvalidInputError:
        return False
    return True


def _submit(service: RerankService, p: Prepared) -> Job:
    key = p.variant
    docs = p.model_docs
    if key.per_query:
        job = Job(key, [RerankRequest(p.body.query, docs, None, p.body.instruction)], [len(docs)])
    else:
        job = Job(key, [Pair(p.body.query, d, i, p.body.instruction) for i, d in enumerate(docs)], [1] * len(docs))
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


async def _wait(service: RerankService, p: Prepared, job: Job, request: Any) -> Ranking:
    """The job's ranking; a client that leaves (checked as the job waits) has its documents
    dropped from the queue so that the others go on."""
    assert service.batcher is not None
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        waited: set[asyncio.Future[Any]] = {job.future, gone}
        done, _ = await asyncio.wait(waited, timeout=service.settings.request_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        service.batcher.cancel(job)
        raise
    finally:
        gone.cancel()
    if job.future not in done:
        service.batcher.cancel(job)
        if gone in done:
            service.metrics.rejected.labels("client_gone").inc()
            raise ApiError(499, "the client closed the connection; its documents were dropped")
        service.metrics.rejected.labels("timeout").inc()
        raise ApiError(504, f"the request took longer than {service.settings.request_timeout:g}s "
                            "(--request-timeout); send fewer documents or a smaller think_budget")
    try:
        results = job.future.result()
    except InvalidInputError as exc:  # a check the library makes only while working
        raise ApiError(422, str(exc)) from None
    return ranking_of(p, job, results)


async def _disconnected(request: Any) -> None:
    """Returns when the client has gone (the body is already read: what comes next is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _log(service: RerankService, body: RerankBody, rid: str, version: str, docs: list[Document],
         status: int, started: float) -> None:
    fields: dict[str, Any] = {
        "id": rid, "api": version, "status": status, "documents": len(docs), "query_chars": len(body.query),
        "top_n": body.top_n, "reasoning": body.reasoning, "think_budget": body.think_budget, "stream": body.stream,
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    if service.settings.log_text:  # off by default: queries and documents may be private
        fields.update(query=body.query, texts=[d.text for d in docs])
    log.info("rerank %s", json.dumps(fields, ensure_ascii=False))
