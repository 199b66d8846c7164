"""The certificate services' errors as problem documents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from caconnector.manager.problems import Problem
from caconnector.manager.services.errors import Conflict, NotFound, ServiceError


@contextmanager
def service_errors() -> Iterator[None]:
    """404 for NotFound, 409 for Conflict, 422 for any other ServiceError; `detail` is the message."""
    try:
        yield
    except NotFound as exc:
        raise Problem(404, "Not found", exc.message, code=exc.code) from None
    except Conflict as exc:
        raise Problem(409, "Conflict", exc.message, code=exc.code) from None
    except ServiceError as exc:
        raise Problem(422, "Invalid request", exc.message, code=exc.code) from None
