"""Pages and fragments from the templates, with the headers every UI answer carries and the session
cookie re-sealed (the idle timeout counts from the last request)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from caconnector import __version__
from caconnector.manager.runtime import runtime_of
from caconnector.manager.ui import session as ui_session

PREFIX = "/ui"

# Everything the pages load comes from the manager: no inline script or style, no frames around them.
_HEADERS = {
    "Cache-Control": "no-store",  # pages show installation tokens
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def _when(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


_env = Environment(
    loader=PackageLoader("caconnector.manager.ui", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a misspelt name fails the test that renders it, not silently blank
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = _when


def url(request: Request, path: str) -> str:
    """A UI path as the browser must ask for it (behind a proxy that mounts the manager under a prefix)."""
    root: str = request.scope.get("root_path", "")
    return root + PREFIX + path


def finish(request: Request, response: Response) -> Response:
    response.headers.update(_HEADERS)
    ui_session.write(request, runtime_of(request), response)
    return response


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    runtime = runtime_of(request)
    current = ui_session.current(request, runtime)
    values: dict[str, Any] = {
        "request": request,
        "base": url(request, ""),
        "csrf": current.csrf,
        "me": request.scope.get("state", {}).get("caconnector.ui_user"),
        "version": __version__,
        "error": None,
        "notice": None,
        "dialog": None,
        "error_inline": False,
    }
    values.update(context)
    html = _env.get_template(template).render(values)
    return finish(request, HTMLResponse(html, status_code=status))


def redirect(request: Request, path: str) -> Response:
    """303: after a form post, the browser asks for the page again with GET (reload repeats nothing)."""
    return finish(request, RedirectResponse(url(request, path), status_code=303))
