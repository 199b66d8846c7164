"""Who is calling the REST API, and may they: `Authorization: Bearer <api key>`, checked against roles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from caconnector.manager.problems import Problem
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.users import user_for_api_key


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: Role

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def require_roles(*roles: Role) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller's Principal, or 401 (no valid key) / 403 (role not allowed)."""
    allowed = set(roles)

    def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Problem(401, "Unauthorized", "send Authorization: Bearer <api key>", code="unauthenticated")
        runtime = runtime_of(request)
        with runtime.sessions.begin() as session:
            user = user_for_api_key(session, key.strip(), runtime.now())
            if user is None:
                raise Problem(
                    401, "Unauthorized", "the API key is unknown or revoked", code="unauthenticated"
                )
            principal = Principal(user.id, user.username, Role(user.role))
        if principal.role not in allowed:
            raise Problem(
                403,
                "Forbidden",
                f"role {principal.role.value} may not do this (needs {', '.join(sorted(allowed))})",
                code="forbidden",
            )
        return principal

    return dependency


READ = (Role.ADMIN, Role.OPERATOR, Role.AUDITOR)
OPERATE = (Role.ADMIN, Role.OPERATOR)
ADMIN = (Role.ADMIN,)

# Endpoint parameters that authenticate the caller and check the role: `def f(caller: Reader)`.
Reader = Annotated[Principal, Depends(require_roles(*READ))]
Operator = Annotated[Principal, Depends(require_roles(*OPERATE))]
Admin = Annotated[Principal, Depends(require_roles(*ADMIN))]
