"""The answers: results in the Cohere/Jina or TEI shape, the whole response, and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from thinkrank.server.batching import Job
from thinkrank.server.schemas import RerankBody
from thinkrank.server.service import RerankService
from thinkrank.types import Document, Judgment, Ranking

log = logging.getLogger("thinkrank.server")


def ranking_of(body: RerankBody, job: Job, results: list[Any]) -> Ranking:
    """The request's ranking: one unit per document (its judgment), or the whole request as one unit."""
    return results[0] if job.key.per_query else Ranking(body.query, results)


def _result(body: RerankBody, j: Judgment, doc: Document, tei: bool, with_id: bool) -> dict[str, Any]:
    if tei:
        out: dict[str, Any] = {"index": j.index, "score": j.score}
        if body.return_text:
            out["text"] = doc.text
    else:
        out = {"index": j.index, "relevance_score": j.score}
        if body.return_documents:
            out["document"] = {"text": doc.text}
        if with_id:
            out["id"] = doc.id
    if j.probability is not None:  # the server has a calibration for this request's setting
        out["probability"] = j.probability
    if body.return_reasoning:
        out.update(reasoning=j.reasoning, answer=j.answer, forced=j.forced, truncated=j.truncated)
        if j.reasoned is not None:  # pointwise
            out["reasoned"] = j.reasoned
    return out


def _has_ids(body: RerankBody) -> bool:
    return any(not isinstance(d, str) and d.id is not None for d in body.documents or ())


def response_body(service: RerankService, body: RerankBody, request_id: str, version: str, docs: list[Document],
              ranking: Ranking, tei: bool) -> Any:
    with_id = _has_ids(body)
    top = ranking.truncate(body.top_n)
    results = [_result(body, j, docs[j.index], tei, with_id) for j in top]
    if tei:
        return results
    if ranking.windows:
        prompt = sum(w.prompt_tokens for w in ranking.windows)
        completion = sum(w.completion_tokens for w in ranking.windows)
    else:
        prompt = sum(j.prompt_tokens for j in ranking)
        completion = sum(j.reasoning_tokens for j in ranking)
    return {
        "id": request_id, "model": service.model_name, "results": results,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        # Cohere bills one search unit per query and 100 documents.
        "meta": {"api_version": {"version": version}, "billed_units": {"search_units": max(1, math.ceil(len(docs) / 100))}},
    }


def stream(service: RerankService, body: RerankBody, request_id: str, version: str, docs: list[Document],
            tei: bool, job: Job) -> Any:
    """Server-Sent Events: ``result`` for each document as its engine call finishes, then ``ranking``
    (the whole response); ``error`` with a status instead when the request fails or times out."""
    assert service.batcher is not None
    batcher = service.batcher
    events: asyncio.Queue[list[tuple[int, Any]] | None] = asyncio.Queue()
    job.on_results = events.put_nowait
    job.future.add_done_callback(lambda _: events.put_nowait(None))
    with_id = _has_ids(body)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + service.settings.request_timeout

    async def produce() -> AsyncIterator[str]:
        try:
            while (batch := await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))) is not None:
                for _, result in batch:
                    for j in (result if isinstance(result, Ranking) else [result]):
                        yield _sse("result", _result(body, j, docs[j.index], tei, with_id))
            ranking = ranking_of(body, job, job.future.result())
            yield _sse("ranking", response_body(service, body, request_id, version, docs, ranking, tei))
        except TimeoutError:
            service.metrics.rejected.labels("timeout").inc()
            yield _sse("error", {"status": 504, "message": f"the request took longer than "
                                 f"{service.settings.request_timeout:g}s (--request-timeout)"})
        except Exception as exc:  # the engine failed after the stream began: say so in the stream
            log.exception("rerank %s failed while streaming", request_id)
            yield _sse("error", {"status": 500, "message": f"{type(exc).__name__}: {exc}"})
        finally:
            if not job.future.done():
                batcher.cancel(job)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Request-Id": request_id}
    return StreamingResponse(produce(), media_type="text/event-stream", headers=headers)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
