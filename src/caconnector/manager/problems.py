"""RFC 9457 problem documents: every 4xx the API and the connector channel answer with."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from caconnector.manager import validation
from caconnector.manager.services.errors import Conflict, ManagerError, NotFound

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("caconnector.manager")


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


def service_problem(exc: ManagerError) -> Problem:
    """The one mapping of the service error tree: 404 for NotFound, 409 for Conflict, 422 for the rest;
    `detail` is the message, `code` the error's."""
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", exc.message, code=exc.code)
    if isinstance(exc, Conflict):
        return Problem(409, "Conflict", exc.message, code=exc.code)
    return Problem(422, "Invalid request", exc.message, code=exc.code)


def problem_response(problem: Problem) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(ManagerError)
    async def _refused(_: Request, exc: ManagerError) -> JSONResponse:
        # Raised inside `sessions.begin()`, which has rolled the transaction back by now.
        return problem_response(service_problem(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name each bad field, and what a missing or unreadable body must hold; never echo the input.
        body = getattr(getattr(request.scope.get("route"), "body_field", None), "field_info", None)
        detail = validation.summary(exc.errors(), getattr(body, "annotation", None))
        return problem_response(Problem(422, "Invalid request", detail, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(exc.status_code, str(exc.detail), str(exc.detail)))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # The safety net: a problem document that says nothing of the exception (its text may hold
        # input or secrets). Starlette raises the exception again after this answer, for the server
        # (uvicorn) to log with its traceback; this line says which request it was.
        log.error("unhandled %s in %s %s", type(exc).__name__, request.method, request.url.path)
        response = problem_response(
            Problem(500, "Internal error", "the manager failed on this request; its log says why", "internal")
        )
        # This answer comes from outside the HTTP guard, which adds these to every other one.
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response
