"""Who is using the UI and may they: the signed-in user for every page, and for every form post the
session's CSRF token and the role the action needs (roles.py, as the REST API's auth.py checks them).

A page asked for without a session redirects to Sign in; a post without one, without its CSRF token, or
by a role that may not do it is refused with 403 and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from caconnector.manager.auth import ADMIN, OPERATE, READ
from caconnector.manager.db.models import User
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.ui import session as ui_session

USER_STATE = "caconnector.ui_user"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class UiUser:
    id: str
    username: str
    role: Role

    @property
    def actor(self) -> str:
        return f"user:{self.username}"  # what the audit log names, as for the REST API

    @property
    def can_operate(self) -> bool:
        return self.role in OPERATE

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN


class SignInRequired(Exception):
    """A page asked for without a valid session: answered with a redirect to Sign in."""


class Refused(Exception):
    """Answered with the error page and this status: a 403 for a missing token or role, a 404."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _load_user(runtime: Runtime, user_id: str) -> UiUser | None:
    with runtime.sessions.begin() as session:
        user = session.get(User, user_id)
        if user is None or user.disabled:
            return None
        return UiUser(user.id, user.username, Role(user.role))


def signed_in(request: Request) -> UiUser | None:
    """The session's user, looked up on every request so a disabled user or a changed role counts at
    once."""
    state = request.scope.setdefault("state", {})
    cached = state.get(USER_STATE)
    if isinstance(cached, UiUser):
        return cached
    runtime = runtime_of(request)
    current = ui_session.current(request, runtime)
    user = _load_user(runtime, current.user_id) if current.user_id else None
    state[USER_STATE] = user
    return user


def viewer(request: Request) -> UiUser:
    """A FastAPI dependency for pages: the signed-in user (every role may look)."""
    user = signed_in(request)
    if user is None:
        raise SignInRequired
    return user


@dataclass(frozen=True)
class Posted:
    user: UiUser
    form: FormData

    def text(self, name: str) -> str:
        value = self.form.get(name)
        return value if isinstance(value, str) else ""

    def texts(self, name: str) -> list[str]:
        return [value for value in self.form.getlist(name) if isinstance(value, str)]

    def upload(self, name: str, limit: int) -> bytes | None:
        value = self.form.get(name)
        if not isinstance(value, UploadFile) or not value.filename:
            return None
        return value.file.read(limit + 1)


def _poster(roles: tuple[Role, ...]) -> Callable[[Request], Awaitable[Posted]]:
    async def dependency(request: Request) -> Posted:
        form = await request.form()
        user = await run_in_threadpool(signed_in, request)
        sent = form.get(CSRF_FIELD)
        current = ui_session.current(request, runtime_of(request))
        if user is None:
            raise Refused(403, "Your session has ended. Sign in again, then repeat what you were doing.")
        if not isinstance(sent, str) or not current.csrf_matches(sent):
            raise Refused(403, "This form is missing its security token or it is out of date. Reload the "
                          "page and try again.")  # fmt: skip
        if user.role not in roles:
            raise Refused(403, f"Your role ({user.role.value}) may not do this.")
        return Posted(user, form)

    return dependency


# Endpoint parameters: `def page(user: Viewer)`, `def post(posted: OperatorPost)`.
Viewer = Annotated[UiUser, Depends(viewer)]
ReaderPost = Annotated[Posted, Depends(_poster(READ))]
OperatorPost = Annotated[Posted, Depends(_poster(OPERATE))]
AdminPost = Annotated[Posted, Depends(_poster(ADMIN))]
