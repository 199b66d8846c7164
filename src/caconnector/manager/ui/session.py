"""The web UI's browser session: one cookie, sealed (AES-256-GCM, so signed and unreadable) with the
manager's own key, which every manager process sharing the database shares too; no session table.

It holds the signed-in user's id (none before sign-in), the CSRF token every form must send back, and
when it was last used: a session idle for longer than `ui_session_idle_seconds` is over. Each answer
re-seals it with the new time, so the timeout counts from the last request. The cookie is HttpOnly,
SameSite=Strict, Secure on HTTPS, and scoped to the UI's path.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from dataclasses import dataclass, replace

from starlette.requests import Request
from starlette.responses import Response

from caconnector.manager.runtime import Runtime
from caconnector.pki.secretbox import SecretBoxError

COOKIE = "ca_manager_session"
_ENTRY = "ui/session"  # the sealed value is bound to this use: another sealed secret does not open as one
_STATE = "caconnector.ui_session"
POLL_HEADER = "x-ui-poll"  # sent by static/ui.js when it refreshes a table


@dataclass(frozen=True)
class UiSession:
    user_id: str | None
    csrf: str
    last_used: float  # POSIX seconds

    def signed_in_as(self, user_id: str | None) -> UiSession:
        # A new CSRF token at every sign-in and sign-out: one seen before cannot be replayed after.
        return UiSession(user_id, secrets.token_urlsafe(32), self.last_used)

    def csrf_matches(self, sent: str) -> bool:
        return bool(sent) and hmac.compare_digest(sent.encode(), self.csrf.encode())


def _fresh(now: float) -> UiSession:
    return UiSession(None, secrets.token_urlsafe(32), now)


def _decode(runtime: Runtime, value: str) -> UiSession | None:
    try:
        sealed = json.loads(base64.urlsafe_b64decode(value.encode("ascii")))
        document = json.loads(runtime.box.open(_ENTRY, sealed))
        user_id, csrf, last_used = document["u"], document["c"], float(document["t"])
    except (SecretBoxError, ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
        return None  # not ours, altered, or from another key: as if there were none
    if not isinstance(csrf, str) or not (user_id is None or isinstance(user_id, str)):
        return None
    return UiSession(user_id, csrf, last_used)


def _encode(runtime: Runtime, session: UiSession) -> str:
    document = json.dumps({"u": session.user_id, "c": session.csrf, "t": session.last_used})
    sealed = json.dumps(runtime.box.seal(_ENTRY, document)).encode()
    return base64.urlsafe_b64encode(sealed).decode("ascii")


def current(request: Request, runtime: Runtime) -> UiSession:
    """The request's session: the cookie's while it is valid and not idle too long, else a new one
    (signed out). Read once per request."""
    cached = request.scope.get("state", {}).get(_STATE)
    if isinstance(cached, UiSession):
        return cached
    now = runtime.now().timestamp()
    found = _decode(runtime, request.cookies.get(COOKIE, ""))
    idle = runtime.settings.ui_session_idle_seconds
    if found is None or now - found.last_used > idle or found.last_used > now + 60:
        session = _fresh(now)
    elif request.headers.get(POLL_HEADER):
        session = found  # a page's status polling is not use: it must not keep an idle session alive
    else:
        session = replace(found, last_used=now)
    remember(request, session)
    return session


def remember(request: Request, session: UiSession) -> None:
    """Make `session` what this request's answer sets (after a sign-in or sign-out)."""
    request.scope.setdefault("state", {})[_STATE] = session


def write(request: Request, runtime: Runtime, response: Response) -> None:
    """Set the request's session cookie on its answer."""
    session = current(request, runtime)
    response.set_cookie(
        COOKIE,
        _encode(runtime, session),
        path=request.scope.get("root_path", "") + "/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
