"""Integrations → CA Connectors: the table (its rows polled so statuses change without a reload), and
the dialogs of the reference document: Add CA Connector (Name, Comments, Next, the token, Save), Edit,
Restore, Delete. Everything through services.connectors, as the REST API does it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from caconnector import __version__
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import connectors as service
from caconnector.manager.services.downloads import package_url
from caconnector.manager.services.errors import ManagerError
from caconnector.manager.ui.access import AdminPost, Refused, Viewer
from caconnector.manager.ui.render import page, redirect

router = APIRouter(prefix="/connectors")

PACKAGE = f"caconnector=={__version__}"


def _rows(runtime: Runtime) -> list[dict[str, Any]]:
    now = runtime.now()
    with runtime.sessions.begin() as session:
        connectors = service.list_connectors(session, now, runtime.settings).items
        return [
            service.connector_view(c, now, runtime.settings, runtime.box, with_token=False)
            for c in connectors
        ]


def _one(runtime: Runtime, connector_id: str, *, with_token: bool) -> dict[str, Any]:
    now = runtime.now()
    with runtime.sessions.begin() as session:
        try:
            connector = service.get_connector(session, connector_id)
        except ManagerError as exc:
            raise Refused(404, exc.message) from None
        view = service.connector_view(connector, now, runtime.settings, runtime.box, with_token=with_token)
    # The view leaves the token out once it is used or expired; the dialogs then say so.
    return {"token": None, "install_command": None, **view}


def _page(request: Request, status: int = 200, **context: Any) -> Response:
    runtime = runtime_of(request)
    return page(
        request,
        "connectors.html",
        status,
        rows=_rows(runtime),
        package=PACKAGE,
        package_url=package_url(runtime.settings),
        **context,
    )


def _admin_only(user: Viewer) -> None:
    if not user.is_admin:
        raise Refused(403, f"Your role ({user.role.value}) may not change connectors.")


@router.get("")
def connectors_page(request: Request, _user: Viewer) -> Response:
    return _page(request)


@router.get("/rows")
def connector_rows(request: Request, _user: Viewer) -> Response:
    """The table's body alone: what the page polls."""
    return page(request, "connector_rows.html", rows=_rows(runtime_of(request)))


@router.get("/add")
def add_dialog(request: Request, user: Viewer) -> Response:
    _admin_only(user)
    return _page(request, dialog="add", values={"name": "", "comments": ""})


@router.post("/add")
def add(request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    values = {"name": posted.text("name").strip(), "comments": posted.text("comments")}
    try:
        with runtime.sessions.begin() as session:
            connector, _token = service.add_connector(
                session,
                values["name"],
                values["comments"],
                now=runtime.now(),
                settings=runtime.settings,
                box=runtime.box,
                actor=posted.user.actor,
            )
            connector_id = connector.id
    except ManagerError as exc:
        return _page(request, 422, dialog="add", values=values, error=exc.message)
    return redirect(request, f"/connectors/{connector_id}/token")


@router.get("/{connector_id}/token")
def token_dialog(connector_id: str, request: Request, user: Viewer) -> Response:
    """Add CA Connector, after Next: the token, the install command, where the package comes from."""
    _admin_only(user)
    connector = _one(runtime_of(request), connector_id, with_token=True)
    return _page(request, dialog="token", connector=connector)


@router.get("/{connector_id}/edit")
def edit_dialog(connector_id: str, request: Request, user: Viewer) -> Response:
    _admin_only(user)
    connector = _one(runtime_of(request), connector_id, with_token=True)
    return _page(request, dialog="edit", connector=connector, values=connector)


@router.post("/{connector_id}/edit")
def edit(connector_id: str, request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    values = {"name": posted.text("name").strip(), "comments": posted.text("comments")}
    try:
        with runtime.sessions.begin() as session:
            connector = service.get_connector(session, connector_id)
            service.update_connector(
                session, connector, name=values["name"], comments=values["comments"],
                now=runtime.now(), actor=posted.user.actor,
            )  # fmt: skip
    except ManagerError as exc:
        current = _one(runtime, connector_id, with_token=True)
        return _page(request, 422, dialog="edit", connector=current, values=values, error=exc.message)
    return redirect(request, "/connectors")


@router.post("/{connector_id}/restore")
def restore(connector_id: str, request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            connector = service.get_connector(session, connector_id)
            service.restore_connector(
                session, connector, now=runtime.now(), settings=runtime.settings, box=runtime.box,
                actor=posted.user.actor,
            )  # fmt: skip
    except ManagerError as exc:
        return _page(request, 422, error=exc.message)
    return redirect(request, f"/connectors/{connector_id}/restored")


@router.get("/{connector_id}/restored")
def restored_dialog(connector_id: str, request: Request, user: Viewer) -> Response:
    _admin_only(user)
    connector = _one(runtime_of(request), connector_id, with_token=True)
    return _page(request, dialog="restored", connector=connector)


@router.get("/{connector_id}/delete")
def delete_dialog(connector_id: str, request: Request, user: Viewer) -> Response:
    _admin_only(user)
    connector = _one(runtime_of(request), connector_id, with_token=False)
    return _page(request, dialog="delete", connector=connector)


@router.post("/{connector_id}/delete")
def delete(connector_id: str, request: Request, posted: AdminPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            connector = service.get_connector(session, connector_id)
            service.delete_connector(session, connector, now=runtime.now(), actor=posted.user.actor)
    except ManagerError as exc:
        return _page(request, 422, error=exc.message)
    return redirect(request, "/connectors")
