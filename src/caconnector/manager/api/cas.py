"""`/api/v1/cas`: the private CAs behind all backends, as their connectors last reported them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from caconnector.manager.api.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
)
from caconnector.manager.api.params import PathKey, line_query
from caconnector.manager.auth import Reader
from caconnector.manager.db.models import ManagedCA
from caconnector.manager.problems import Problem, not_found
from caconnector.manager.runtime import runtime_of
from caconnector.manager.services import cas
from caconnector.pki.formats import OutputFormat, media_type

PKIX_CRL = "application/pkix-crl"  # RFC 2585

router = APIRouter(prefix="/cas", tags=["cas"])


class CAOut(BaseModel):
    id: str
    backend: str = Field(description="the backend's id")
    ref: str = Field(description="the backend's own id for the CA (an ARN, a pool/CA path, a CA name)")
    name: str
    subject: str
    key_type: str
    serial: str
    not_after: dt.datetime | None
    state: str = Field(description="as the backend reports it; `absent` once the backend stops listing it")
    crl_updated_at: dt.datetime | None = Field(description="when its latest CRL arrived; null: none known")

    @classmethod
    def of(cls, ca: ManagedCA) -> CAOut:
        return cls(
            id=ca.id,
            backend=ca.backend_id,
            ref=ca.ca_ref,
            name=ca.name,
            subject=ca.subject,
            key_type=ca.key_type,
            serial=ca.serial,
            not_after=ca.not_after,
            state=ca.state,
            crl_updated_at=ca.crl_updated_at,
        )


@router.get("", response_model=Page[CAOut])
def list_cas(
    request: Request,
    _caller: Reader,
    *,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    backend: Annotated[str | None, line_query(32, "only this backend's (id)")] = None,
) -> Page[CAOut]:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        page = cas.list_cas(session, backend_id=backend, limit=limit, cursor=cursor)
        return Page[CAOut](items=[CAOut.of(row) for row in page.items], next_cursor=page.next_cursor)


def _ca(request: Request, ca_id: str) -> ManagedCA:
    runtime = runtime_of(request)
    with runtime.sessions.begin() as session:
        ca = session.get(ManagedCA, ca_id)
        if ca is None:
            raise not_found("CA", ca_id)
        return ca


@router.get("/{ca_id}", response_model=CAOut)
def get_ca(ca_id: PathKey, request: Request, _caller: Reader) -> CAOut:
    return CAOut.of(_ca(request, ca_id))


@router.get(
    "/{ca_id}/certificate",
    response_class=Response,
    responses={200: {"content": {media_type(OutputFormat.PEM): {}}}},
)
def get_ca_certificate(ca_id: PathKey, request: Request, _caller: Reader) -> Response:
    """The CA's certificate, PEM."""
    ca = _ca(request, ca_id)
    if ca.certificate_pem is None:
        detail = f"backend {ca.backend_id} did not report the certificate of CA {ca.name!r}"
        raise Problem(404, "Not found", detail, code="no_certificate")
    return Response(ca.certificate_pem, media_type=media_type(OutputFormat.PEM))


@router.get("/{ca_id}/crl", response_class=Response, responses={200: {"content": {PKIX_CRL: {}}}})
def get_ca_crl(ca_id: PathKey, request: Request, _caller: Reader) -> Response:
    """The CA's latest CRL (DER), where its backend publishes one."""
    ca = _ca(request, ca_id)
    if ca.crl_der is None:
        detail = f"no CRL is known for CA {ca.name!r}: its backend publishes none, or has not sent it yet"
        raise Problem(404, "Not found", detail, code="no_crl")
    return Response(ca.crl_der, media_type=PKIX_CRL)
