"""The manager's web UI under /ui: server-rendered pages (Jinja2) with a little plain JavaScript
(static/ui.js), over the same services as the REST API. `install(app)` mounts it."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from caconnector.manager.ui import certificates, connectors, issuers, profiles, records, signin
from caconnector.manager.ui.access import Refused, SignInRequired, Viewer
from caconnector.manager.ui.render import PREFIX, page, redirect


def _start(request: Request, _user: Viewer) -> Response:
    return redirect(request, "/connectors")


def install(app: FastAPI) -> None:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    router.add_api_route("", _start, methods=["GET"])
    router.add_api_route("/", _start, methods=["GET"])
    for module in (signin, connectors, issuers, profiles, certificates, records):
        router.include_router(module.router)
    app.include_router(router)
    app.mount(
        f"{PREFIX}/static", StaticFiles(packages=[("caconnector.manager.ui", "static")]), name="ui-static"
    )

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        wanted = request.url.path.removeprefix(request.scope.get("root_path", "")).removeprefix(PREFIX)
        target = "/signin" + (f"?next={quote(wanted)}" if wanted not in ("", "/", "/signin") else "")
        return redirect(request, target)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return page(request, "error.html", exc.status, message=exc.message)
