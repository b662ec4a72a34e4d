"""Every error the server sends has the body ``{"message": ..., "detail"?: ..., "request_id": ...}``,
and bad input is never a 500: invalid JSON is a 400, a body that is not sent as JSON a 415 naming
the content type, a field that fails validation a 422 naming the field. Each refusal is logged."""

from __future__ import annotations

import json
import logging
from typing import Any

from thinkrank.errors import require
from thinkrank.server import request_id

require("fastapi", "server")
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

log = logging.getLogger("thinkrank.server")


class ApiError(Exception):
    """An error answer: HTTP ``status``, a ``message`` naming the field and the fix, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None, detail: Any = None,
                   rid: str | None = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if detail is not None:
        body["detail"] = detail
    body["request_id"] = rid or request_id.current.get()
    return JSONResponse(body, status_code=status, headers=headers)


def log_refusal(request: Any, status: int, message: str) -> None:
    """One log line for a request refused before the route ran (the route logs the others)."""
    log.info("refused %s", json.dumps({"id": request_id.of(request.scope), "method": request.method,
                                       "path": request.url.path, "status": status, "error": message},
                                      ensure_ascii=False))


_JSON_TYPES = ("application/json", "application/problem+json")


def _not_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return bool(media) and media not in _JSON_TYPES and not media.endswith("+json")


# pydantic names the member of a union it tried inside the location ("documents", 0, "str");
# the member's name means nothing to a client.
_UNION_MEMBERS = frozenset({"str", "DocumentIn"})


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "documents", 2, "DocumentIn", "text")`` -> ``"documents[2].text"``."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if part in _UNION_MEMBERS:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _problems(errors: list[Any]) -> list[dict[str, str]]:
    """One problem per field: for a document given as an object, the object's problem, not that it
    is not a string."""
    problems = [{"field": field_path(e.get("loc", ())), "message": e.get("msg", ""),
                 "string_member": "str" in e.get("loc", ())} for e in errors]
    objects = {p["field"] for p in problems if not p["string_member"]}
    kept = [p for p in problems if not (p["string_member"] and _under(p["field"], objects))]
    return [{"field": p["field"], "message": p["message"]} for p in kept]


def _under(field: str, others: set[str]) -> bool:
    return any(o == field or o.startswith(field + ".") for o in others)


def install_error_handlers(app: Any) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Any, exc: ApiError) -> Any:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> Any:
        status, message, detail = _validation_answer(request, list(exc.errors()))
        log_refusal(request, status, message)
        return error_response(status, message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def crashed(request: Any, exc: Exception) -> Any:
        # Runs outside the edge middleware (Starlette calls it last): the id comes from the scope.
        rid = request_id.of(request.scope)
        log.exception("unexpected error on %s %s (request %s)", request.method, request.url.path, rid)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log (request id {rid})",
                              {"X-Request-Id": rid}, rid=rid)


def _validation_answer(request: Any, errors: list[Any]) -> tuple[int, str, Any]:
    content_type = request.headers.get("content-type", "")
    if _not_json(content_type):
        return (415, f"Content-Type: the body was sent as {content_type.split(';')[0].strip()!r}; send JSON with "
                     "the header 'Content-Type: application/json' (curl: -H 'Content-Type: application/json')", None)
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        return 400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})", None
    detail = _problems(errors)
    first = detail[0] if detail else {"field": "body", "message": "invalid body"}
    message = f"{first['field']}: {first['message']}"
    if len(detail) > 1:
        message += f" (and {len(detail) - 1} more problem{'s' if len(detail) > 2 else ''}; see detail)"
    return 422, message, detail
