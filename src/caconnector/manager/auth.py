"""Who is calling the REST API, and may they: `Authorization: Bearer <api key>`, checked against roles."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from caconnector.manager.problems import Problem
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services.users import key_holder
from caconnector.manager.tokens import API_KEY_PREFIX, api_key_lookup


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: Role

    @property
    def actor(self) -> str:
        return f"user:{self.username}"


# Where the HTTP guard (manager/http_guard.py) leaves the principal it authenticated before the body
# was read, so the endpoint's dependency does not look the key up a second time.
PRINCIPAL_STATE = "caconnector.principal"


def bearer_credential(authorization: str) -> str | None:
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def describe_api_key(authorization: str) -> str:
    """What a log line may say about the key presented: its lookup prefix (stored in clear anyway),
    never the key."""
    key = bearer_credential(authorization)
    if key is None:
        return "no bearer key"
    lookup = api_key_lookup(key)
    if lookup is None or len(lookup) > 16 or not lookup.isalnum():
        return f"a malformed key of {len(key)} characters"
    return f"key {API_KEY_PREFIX}{lookup}..."


def authenticate(runtime: Runtime, authorization: str) -> Principal:
    """The principal an `Authorization` header's API key stands for, or a 401 Problem."""
    key = bearer_credential(authorization)
    if key is None:
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <api key>", code="unauthenticated")
    holder = key_holder(runtime.engine, key, runtime.now())
    if holder is None:
        raise Problem(401, "Unauthorized", "the API key is unknown or revoked", code="unauthenticated")
    return Principal(holder.user_id, holder.username, holder.role)


def require_roles(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's Principal, or 401 (no valid key) / 403 (role not allowed)."""
    allowed = set(roles)

    # Async: a request with a body was authenticated by the HTTP guard already, and a sync dependency
    # would cost it a hand-over to the thread pool and back only to read that; the others look the key
    # up in the pool.
    async def dependency(request: Request) -> Principal:
        found = request.scope.get("state", {}).get(PRINCIPAL_STATE)
        if isinstance(found, Principal):
            principal = found
        else:
            authorization = request.headers.get("authorization", "")
            principal = await run_in_threadpool(authenticate, runtime_of(request), authorization)
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
