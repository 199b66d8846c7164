"""Sign in with a manager user's password (the users `ca-manager admin create` makes), and sign out.

Failed sign-ins are throttled per address like failed API keys; the form carries the CSRF token of the
signed-out session, so another site cannot sign a browser in as someone else.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from caconnector.manager import audit
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services.users import find_user, verify_password
from caconnector.manager.throttle import FailureThrottle
from caconnector.manager.ui import session as ui_session
from caconnector.manager.ui.access import CSRF_FIELD, ReaderPost, Refused, signed_in
from caconnector.manager.ui.render import page, redirect

router = APIRouter()

_THROTTLE_STATE = "caconnector_ui_signin_throttle"


def _throttle(request: Request) -> FailureThrottle:
    state = request.app.state
    throttle = getattr(state, _THROTTLE_STATE, None)
    if not isinstance(throttle, FailureThrottle):
        settings = runtime_of(request).settings
        throttle = FailureThrottle(settings.auth_failure_burst, settings.auth_failure_refill_seconds)
        setattr(state, _THROTTLE_STATE, throttle)
    return throttle


def _safe_next(target: str) -> str:
    # Only a path inside the UI: never an address elsewhere (an open redirect).
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/connectors"


@router.get("/signin")
def signin_page(request: Request, next: str = "/connectors") -> Response:
    if signed_in(request) is not None:
        return redirect(request, _safe_next(next))
    return page(request, "signin.html", next=_safe_next(next), username="")


def _check_password(runtime: Runtime, username: str, password: str) -> str | None:
    with runtime.sessions.begin() as session:
        user = find_user(session, username)
        if user is None or user.disabled or not verify_password(user, password):
            return None
        audit.record(session, runtime.now(), f"user:{user.username}", "user.signin", f"user:{user.username}")
        return user.id


@router.post("/signin")
async def signin(request: Request) -> Response:
    runtime = runtime_of(request)
    form = await request.form()
    values = {name: value if isinstance(value, str) else "" for name, value in form.items()}
    current = ui_session.current(request, runtime)
    if not current.csrf_matches(values.get(CSRF_FIELD, "")):
        raise Refused(403, "This form is missing its security token or it is out of date. Reload the page.")
    source = f"ui {request.client.host if request.client else '?'}"
    throttle = _throttle(request)
    next_path = _safe_next(values.get("next", ""))
    username = values.get("username", "")
    if wait := throttle.retry_after(source):
        error = f"Too many failed sign-ins from this address. Try again in {wait} seconds."
        return page(request, "signin.html", 429, error=error, next=next_path, username=username)
    user_id = await run_in_threadpool(_check_password, runtime, username, values.get("password", ""))
    if user_id is None:
        throttle.failed(source)
        error = "The username or password is not right."
        return page(request, "signin.html", 401, error=error, next=next_path, username=username)
    ui_session.remember(request, current.signed_in_as(user_id))
    return redirect(request, next_path)


@router.post("/signout")
def signout(request: Request, _posted: ReaderPost) -> Response:
    runtime = runtime_of(request)
    ui_session.remember(request, ui_session.current(request, runtime).signed_in_as(None))
    request.scope.setdefault("state", {}).pop("caconnector.ui_user", None)
    return redirect(request, "/signin")
