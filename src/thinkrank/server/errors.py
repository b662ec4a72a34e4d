"""Every error the server sends has the body ``{"message": ..., "detail"?: ...}``, and bad input
is never a 500: invalid JSON is a 400, a field that fails validation a 422 naming the field."""

from __future__ import annotations

import logging
from typing import Any

from thinkrank.errors import require

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


def error_response(status: int, message: str, headers: dict[str, str] | None = None, detail: Any = None) -> Any:
    body: dict[str, Any] = {"message": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


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
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            first = next(e for e in errors if e.get("type") == "json_invalid")
            return error_response(400, f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})")
        detail = _problems(errors)
        first = detail[0] if detail else {"field": "body", "message": "invalid body"}
        message = f"{first['field']}: {first['message']}"
        if len(detail) > 1:
            message += f" (and {len(detail) - 1} more problem{'s' if len(detail) > 2 else ''}; see detail)"
        return error_response(422, message, detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def crashed(request: Any, exc: Exception) -> Any:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
