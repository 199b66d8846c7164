"""Issuers → CA Backends (Refresh asks the connector to check one again; Scan imports what its CA issued,
with the job's progress and the number imported) and Issuers → CAs (with each CA's certificate)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from caconnector.manager.db.models import Job, ManagedBackend, ManagedCA
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import backends as service
from caconnector.manager.services import cas as cas_service
from caconnector.manager.services.errors import ManagerError
from caconnector.manager.ui.access import OperatorPost, Refused, Viewer
from caconnector.manager.ui.render import finish, page, redirect
from caconnector.pki.formats import OutputFormat, media_type

router = APIRouter()


def _backend_view(runtime: Runtime, backend: ManagedBackend) -> dict[str, Any]:
    return {
        "id": backend.id,
        "name": backend.name,
        "status": service.backend_status(backend, runtime.now(), runtime.settings),
        "cas": len(backend.cas),
        "connector": backend.connector.name,
        "local_backend": backend.local_name,
        "type": backend.type,
        "error": backend.error,
        "organizations": [o for o in backend.organizations if isinstance(o, dict)],
        "products": [p for p in backend.products if isinstance(p, dict)],
        "templates": [str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in backend.templates],
        "disabled": backend.disabled,
        "present": backend.present,
    }


def _backends(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.sessions.begin() as session:
        return [_backend_view(runtime, b) for b in service.list_backends(session).items]


def _backends_page(request: Request, status: int = 200, **context: Any) -> Response:
    return page(request, "backends.html", status, rows=_backends(runtime_of(request)), **context)


@router.get("/backends")
def backends_page(request: Request, _user: Viewer, notice: str | None = None) -> Response:
    return _backends_page(request, notice=notice)


@router.get("/backends/rows")
def backend_rows(request: Request, _user: Viewer) -> Response:
    return page(request, "backend_rows.html", rows=_backends(runtime_of(request)))


@router.post("/backends/{backend_id}/refresh")
def refresh(backend_id: str, request: Request, posted: OperatorPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            backend = service.get_backend(session, backend_id)
            service.request_check(session, backend, runtime.now(), posted.user.actor)
            name = backend.name
    except ManagerError as exc:
        return _backends_page(request, 422, error=exc.message)
    return _backends_page(request, notice=f"Refresh requested: the connector checks {name} again.")


@router.post("/backends/{backend_id}/scan")
def scan(backend_id: str, request: Request, posted: OperatorPost) -> Response:
    runtime = runtime_of(request)
    try:
        with runtime.sessions.begin() as session:
            backend = service.get_backend(session, backend_id)
            job = service.request_scan(session, backend, runtime.now(), posted.user.actor)
            job_id = job.id
    except ManagerError as exc:
        return _backends_page(request, 422, error=exc.message)
    return redirect(request, f"/backends/{backend_id}/scans/{job_id}")


def _scan_view(runtime: Runtime, backend_id: str, job_id: str) -> dict[str, Any]:
    with runtime.sessions.begin() as session:
        job = session.get(Job, job_id)
        backend = session.get(ManagedBackend, backend_id)
        if job is None or backend is None or job.kind != "scan":
            raise Refused(404, f"no scan {job_id!r} of backend {backend_id!r}")
        result = job.result or {}
        return {
            "backend": backend.name,
            "backend_id": backend.id,
            "job_id": job.id,
            "status": job.status,
            "outcome": job.outcome,
            "error": (job.error or {}).get("message"),
            "imported": result.get("imported"),
            "already_known": result.get("already_known"),
            "invalid": result.get("invalid"),
        }


@router.get("/backends/{backend_id}/scans/{job_id}")
def scan_page(backend_id: str, job_id: str, request: Request, _user: Viewer) -> Response:
    return page(request, "scan.html", scan=_scan_view(runtime_of(request), backend_id, job_id))


@router.get("/backends/{backend_id}/scans/{job_id}/progress")
def scan_progress(backend_id: str, job_id: str, request: Request, _user: Viewer) -> Response:
    return page(request, "scan_progress.html", scan=_scan_view(runtime_of(request), backend_id, job_id))


@router.get("/cas")
def cas_page(request: Request, _user: Viewer) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        rows = [
            {
                "id": ca.id,
                "name": ca.name,
                "subject": ca.subject,
                "key_type": ca.key_type,
                "serial": ca.serial,
                "not_after": ca.not_after,
                "state": ca.state,
                "backend": ca.backend.name,
                "has_certificate": ca.certificate_pem is not None,
            }
            for ca in cas_service.list_cas(session).items
        ]
    return page(request, "cas.html", rows=rows)


@router.get("/cas/{ca_id}/certificate")
def ca_certificate(ca_id: str, request: Request, _user: Viewer) -> Response:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        ca = session.get(ManagedCA, ca_id)
        if ca is None or ca.certificate_pem is None:
            raise Refused(404, f"no certificate is known for CA {ca_id!r}")
        pem, name = ca.certificate_pem, ca.name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "ca"
    response = Response(
        pem,
        media_type=media_type(OutputFormat.PEM),
        headers={"Content-Disposition": f'attachment; filename="{safe}.pem"'},
    )
    return finish(request, response)
