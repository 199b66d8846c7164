"""Errors in the commercial manager's shape, `{"code": -N, "description": "..."}`, with a 4xx status.

`CompatRoute` is the route class of every compatible endpoint: it answers the service error tree,
request validation errors and `CompatError` in that shape, so this face never answers with our own
problem documents (its clients read `code` and `description`)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from caconnector.manager import validation
from caconnector.manager.services.errors import Conflict, ManagerError, NotFound


class Code(enum.IntEnum):
    """The codes this face answers with (the README lists them)."""

    UNKNOWN = -1
    INVALID = -2  # a field is missing or wrong
    NOT_FOUND = -3  # no such certificate, type or organization
    CONFLICT = -4  # the certificate's state forbids it (not issued, already revoked)
    UNAUTHENTICATED = -16  # unknown user, wrong password or customer URI
    FORBIDDEN = -17  # the user's role may not do this
    NOT_COLLECTABLE = -183  # still being processed: what the cert_manager client reads as pending
    REVOKED = -192  # revoked: there is nothing to collect
    FAILED = -100  # the CA refused or the request failed


class CompatError(Exception):
    def __init__(self, status: int, code: Code, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def error_response(error: CompatError) -> JSONResponse:
    return JSONResponse({"code": int(error.code), "description": error.description}, status_code=error.status)


def from_service(exc: ManagerError) -> CompatError:
    if isinstance(exc, NotFound):
        return CompatError(404, Code.NOT_FOUND, exc.message)
    if isinstance(exc, Conflict):
        return CompatError(400, Code.CONFLICT, exc.message)
    return CompatError(400, Code.INVALID, exc.message)


class CompatRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except CompatError as exc:
                return error_response(exc)
            except ManagerError as exc:  # raised inside sessions.begin(), rolled back by now
                return error_response(from_service(exc))
            except RequestValidationError as exc:
                # Names each bad field, never echoes the input (the same summary our API gives).
                body = getattr(self.body_field, "field_info", None)
                detail = validation.summary(exc.errors(), getattr(body, "annotation", None))
                return error_response(CompatError(400, Code.INVALID, detail))

        return handle
