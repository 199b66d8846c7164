"""RFC 9457 problem documents: every 4xx the API and the connector channel answer with."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from caconnector.protocol.text import clip

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from anywhere in a request: becomes `{type, title, status, detail, code}`."""

    def __init__(self, status: int, title: str, detail: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": f"about:blank#{self.code}" if self.code else "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.code:
            document["code"] = self.code
        document.update(self.extra)
        return document


def not_found(what: str, ident: str) -> Problem:
    return Problem(404, "Not found", f"no {what} {ident!r}", code="not_found")


def problem_response(problem: Problem) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Name each bad field; never echo the input (it may hold a CSR or a token).
        # A location can be a key the caller sent: clipped, so it is printable and short.
        problems = [
            f"{'.'.join(clip(str(p), 32) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        ]
        return problem_response(Problem(422, "Invalid request", "; ".join(problems), code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(exc.status_code, str(exc.detail), str(exc.detail)))
