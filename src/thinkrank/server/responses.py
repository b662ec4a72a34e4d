"""The answers: results in the Cohere/Jina or TEI shape, the whole response, and the SSE stream."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from fastapi.responses import StreamingResponse

from thinkrank.errors import InvalidInputError
from thinkrank.server.batching import Job
from thinkrank.server.schemas import RerankBody
from thinkrank.server.service import RerankService, Variant
from thinkrank.types import Document, Judgment, Ranking

log = logging.getLogger("thinkrank.server")


@dataclass
class Prepared:
    """A request after every check: its documents in input order (the empty ones included, which
    the model never sees) and the input positions of those the model judges."""

    body: RerankBody
    version: str
    request_id: str
    docs: list[Document]
    judged: list[int]
    tei: bool
    variant: Variant
    pointwise: bool
    select: dict[str, Any] | None = None  # checked ``select`` keywords (the server has a calibration)

    @property
    def model_docs(self) -> list[Document]:
        return [self.docs[i] for i in self.judged]


def _placed(p: Prepared, j: Judgment) -> Judgment:
    """A judgment of the model's documents, at its document's input position."""
    return dataclasses.replace(j, index=p.judged[j.index])


def _empty_judgments(p: Prepared) -> list[Judgment]:
    """Empty documents are not sent to the model: score 0, after every judged document."""
    judged = set(p.judged)
    return [Judgment(doc_id=d.id, index=i, score=0.0, reasoned=False if p.pointwise else None)
            for i, d in enumerate(p.docs) if i not in judged]


def ranking_of(p: Prepared, job: Job | None, results: list[Any]) -> Ranking:
    """The request's ranking: one unit per judged document, or the whole request as one unit."""
    if job is not None and cast(Variant, job.key).per_query:
        model = results[0]
        return Ranking(p.body.query, [_placed(p, j) for j in model] + _empty_judgments(p), windows=model.windows,
                       comparisons=model.comparisons)
    return Ranking(p.body.query, [_placed(p, j) for j in results] + _empty_judgments(p))


def _raw_score(j: Judgment) -> float:
    """TEI's raw score: the log-odds whose sigmoid is ``score``, from the answer probabilities."""
    if j.p_true is None or j.p_false is None:  # an empty document
        return -math.inf if j.score == 0 else math.log(j.score) - math.log1p(-j.score)
    return math.log(max(j.p_true, 1e-300)) - math.log(max(j.p_false, 1e-300))


def _result(p: Prepared, j: Judgment, with_id: bool) -> dict[str, Any]:
    body, doc = p.body, p.docs[j.index]
    if p.tei:
        score = _raw_score(j) if body.raw_scores else j.score
        out: dict[str, Any] = {"index": j.index, "score": max(score, -1e300)}  # JSON has no -inf
        if body.return_text:
            out["text"] = doc.text
    else:
        out = {"index": j.index, "relevance_score": j.score}
        if body.return_documents:
            out["document"] = _document_out(p, j.index)
        if with_id:
            out["id"] = doc.id
    if j.probability is not None:  # the server has a calibration for this request's setting
        out["probability"] = j.probability
    if body.return_reasoning:
        out.update(reasoning=j.reasoning, answer=j.answer, forced=j.forced, truncated=j.truncated)
        if j.reasoned is not None:  # pointwise
            out["reasoned"] = j.reasoned
    return out


def _document_out(p: Prepared, index: int) -> dict[str, Any]:
    """v2 (Cohere v2) returns the text; v1 (Cohere v1, Jina) the document as given, title and
    every other field included, as Cohere v1 does."""
    given = (p.body.documents or [])[index]
    if isinstance(given, str) or p.version != "1":
        return {"text": given if isinstance(given, str) else given.text}
    return given.model_dump(exclude_none=True)


def _has_ids(body: RerankBody) -> bool:
    return any(not isinstance(d, str) and d.id is not None for d in body.documents or ())


def _selected(service: RerankService, p: Prepared, ranking: Ranking) -> tuple[Ranking, dict[str, Any] | None]:
    """The ranking of the documents ``select`` keeps, and what it kept (the ranking as it is without)."""
    if p.select is None:
        return ranking, None
    chosen = ranking.select(service.calibration, **p.select)
    summary = chosen.to_dict()
    del summary["doc_ids"]  # the results are the kept documents
    return Ranking(ranking.query, chosen.kept, ranking.query_id, ranking.windows, ranking.comparisons), summary


def response_body(service: RerankService, p: Prepared, ranking: Ranking) -> Any:
    """The answer's body; with ``select``, TEI's bare list is a :class:`TEIList` (the summary goes
    in a header)."""
    with_id = _has_ids(p.body)
    kept, selection = _selected(service, p, ranking)
    top = kept.truncate(p.body.top_n)
    results = [_result(p, j, with_id) for j in top]
    if p.tei:
        return results if selection is None else TEIList(results, selection)
    if ranking.calls:  # listwise windows or setwise comparisons
        prompt = sum(c.prompt_tokens for c in ranking.calls)
        completion = sum(c.completion_tokens for c in ranking.calls)
    else:
        prompt = sum(j.prompt_tokens for j in ranking)
        completion = sum(j.reasoning_tokens for j in ranking)
    return {
        "id": p.request_id, "model": service.model_name, "results": results,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        # Cohere bills one search unit per query and 100 documents.
        "meta": {"api_version": {"version": p.version},
                 "billed_units": {"search_units": max(1, math.ceil(len(p.docs) / 100))}},
        **({"selection": selection} if selection is not None else {}),
    }


class TEIList(list):  # type: ignore[type-arg]
    """TEI's bare list of results, with the selection summary that goes in the
    ``X-Thinkrank-Selection`` header (the body has no room for it)."""

    def __init__(self, results: list[dict[str, Any]], selection: dict[str, Any]) -> None:
        super().__init__(results)
        self.selection = selection


def json_response(body: Any) -> Any:
    """The JSON answer of ``response_body``'s result (TEI with ``select``: the summary as a header)."""
    from fastapi.responses import JSONResponse

    if isinstance(body, TEIList):
        return JSONResponse(list(body), headers={"X-Thinkrank-Selection": json.dumps(body.selection)})
    return JSONResponse(body)


def stream(service: RerankService, p: Prepared, job: Job, on_end: Callable[[int], None]) -> Any:
    """Server-Sent Events: a ``: ping`` comment at once and after every ``heartbeat_seconds``
    without news, ``result`` for each document as its engine call finishes, then ``ranking``
    (the whole response); ``error`` with a status instead when the request fails or times out.
    ``on_end(status)`` is called once the stream is over, with its real outcome (499: the client
    left first)."""
    assert service.batcher is not None
    batcher = service.batcher
    events: asyncio.Queue[list[tuple[int, Any]] | None] = asyncio.Queue()
    job.on_results = events.put_nowait
    job.future.add_done_callback(lambda _: events.put_nowait(None))
    with_id = _has_ids(p.body)
    loop = asyncio.get_running_loop()
    settings = service.settings
    deadline = loop.time() + settings.request_timeout

    async def produce() -> AsyncIterator[bytes]:
        status = 499  # until the stream ends otherwise: the client left
        try:
            yield b": ping\n\n"
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                try:
                    batch = await asyncio.wait_for(events.get(), min(left, settings.heartbeat_seconds))
                except TimeoutError:
                    if loop.time() >= deadline:
                        raise
                    yield b": ping\n\n"
                    continue
                if batch is None:
                    break
                for _, result in batch:
                    for j in (result if isinstance(result, Ranking) else [result]):
                        yield _sse("result", _result(p, _placed(p, j), with_id))
            for j in _empty_judgments(p):
                yield _sse("result", _result(p, j, with_id))
            ranking = ranking_of(p, job, job.future.result())
            body = response_body(service, p, ranking)
            if isinstance(body, TEIList):  # a stream's headers are gone: TEI's summary is an event of its own
                yield _sse("selection", body.selection)
                body = list(body)
            yield _sse("ranking", body)
            status = 200
        except TimeoutError:
            service.metrics.rejected.labels("timeout").inc()
            status = 504
            yield _sse("error", {"status": 504, "message": f"the request took longer than "
                                 f"{settings.request_timeout:g}s (--request-timeout)", "request_id": p.request_id})
        except InvalidInputError as exc:  # a check the library makes only while working
            status = 422
            yield _sse("error", {"status": 422, "message": str(exc), "request_id": p.request_id})
        except Exception as exc:  # the engine failed after the stream began: say so in the stream
            log.exception("rerank %s failed while streaming", p.request_id)
            status = 500
            yield _sse("error", {"status": 500, "message": f"internal error ({type(exc).__name__}); see the server "
                                 f"log (request id {p.request_id})", "request_id": p.request_id})
        finally:
            if not job.future.done():
                batcher.cancel(job)
            on_end(status)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(produce(), media_type="text/event-stream", headers=headers)


def _sse(event: str, data: Any) -> bytes:
    # Encoded here, inside the stream's error handling: text that cannot be encoded becomes an
    # ``error`` event, not a dropped connection.
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
