"""What connectors report about their backends and CAs, kept as ManagedBackend and ManagedCA rows.

A backend is identified by connector + its local name and appears in the manager by itself. Rows are
never deleted here: a backend the connector stops reporting is marked absent (`present=False`), a CA
the backend stops listing gets state `absent`, because profiles and certificates point at them.
"""

from __future__ import annotations

import datetime as dt
import logging

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from caconnector.manager.db.models import Connector, ManagedBackend, ManagedCA, new_id
from caconnector.manager.services.crls import apply_crl
from caconnector.manager.services.limits import check_length
from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import CertificateFormatError
from caconnector.protocol import messages
from caconnector.protocol.text import clip

log = logging.getLogger(__name__)

CA_ABSENT = "absent"


class UnknownConnector(LookupError):
    """Deleted while its request was on the way."""


def check_inventory(report: messages.InventoryReport) -> None:
    """Raise TooLong if a value would not fit its column."""
    check_length("hostname", report.hostname, Connector.hostname)
    check_length("version", report.version, Connector.version)
    check_length("protocol_version", report.protocol_version, Connector.protocol_version)
    for backend in report.backends:
        check_backend_report(backend)


def check_backend_report(report: messages.BackendReport) -> None:
    """Raise TooLong if a value would not fit its column."""
    where = f"backend {report.name[:40]!r}"
    check_length("backend name", report.name, ManagedBackend.local_name)
    check_length(f"{where}: type", report.type, ManagedBackend.type)
    for ca in report.cas:
        check_length(f"{where}: CA id", ca.id, ManagedCA.ca_ref)
        check_length(f"{where}: CA name", ca.name, ManagedCA.name)
        check_length(f"{where}: CA key_type", ca.key_type, ManagedCA.key_type)
        check_length(f"{where}: CA serial", ca.serial, ManagedCA.serial)
        check_length(f"{where}: CA state", ca.state, ManagedCA.state)


def apply_inventory(
    session: Session, connector_id: str, report: messages.InventoryReport, now: dt.datetime
) -> list[ManagedBackend]:
    """The connector's whole list of backends: upsert those reported, mark the others absent.
    Call `check_inventory` first. Raises UnknownConnector when the connector is gone."""
    # An UPDATE even when nothing changes: it locks the connector row (PostgreSQL) or takes the write
    # lock (SQLite) before the backends are read, so two inventories of one connector run one after
    # the other and the second sees the backends the first inserted.
    updated = session.scalar(
        update(Connector)
        .where(Connector.id == connector_id)
        .values(hostname=report.hostname, version=report.version, protocol_version=report.protocol_version)
        .returning(Connector.id)
    )
    if updated is None:
        raise UnknownConnector(connector_id)
    existing = _backends_of(session, connector_id)
    names = {b.name for b in report.backends}
    for name, backend in existing.items():
        if name not in names:
            backend.present = False
    reported = []
    for each in report.backends:
        # Kept in `existing` at once: a name listed twice updates one row instead of inserting two.
        existing[each.name] = _upsert(session, connector_id, existing.get(each.name), each, now)
        reported.append(existing[each.name])
    return reported


def apply_backend_report(
    session: Session, connector_id: str, report: messages.BackendReport, now: dt.datetime, *, checked: bool
) -> ManagedBackend:
    """One backend's report (a check or inventory job's result): upsert it alone. Call
    `check_backend_report` first."""
    existing = session.scalar(
        select(ManagedBackend)
        .where(ManagedBackend.connector_id == connector_id, ManagedBackend.local_name == report.name)
        .options(selectinload(ManagedBackend.cas))
    )
    backend = _upsert(session, connector_id, existing, report, now)
    if checked:
        backend.checked_at = now
    return backend


def _backends_of(session: Session, connector_id: str) -> dict[str, ManagedBackend]:
    rows = session.scalars(
        select(ManagedBackend)
        .where(ManagedBackend.connector_id == connector_id)
        .options(selectinload(ManagedBackend.cas))
    )
    return {backend.local_name: backend for backend in rows}


def _upsert(
    session: Session,
    connector_id: str,
    backend: ManagedBackend | None,
    report: messages.BackendReport,
    now: dt.datetime,
) -> ManagedBackend:
    if backend is None:
        backend = ManagedBackend(
            id=new_id(), connector_id=connector_id, local_name=report.name, name=report.name, cas=[]
        )
        session.add(backend)
    backend.type = report.type
    backend.reported_status = report.status
    backend.error = report.error
    backend.present = True
    backend.reported_at = now
    # An Offline backend could not reach its CA: its empty lists mean "unknown", not "none", so the
    # last known templates and CAs stay.
    if report.status == "Available":
        backend.templates = list(report.templates)
        backend.products = [product.model_dump(mode="json") for product in report.products]
        backend.organizations = [org.model_dump(mode="json") for org in report.organizations]
        refused = _reconcile_cas(backend, report.cas, now)
        if refused:
            # One line per report, however many CAs it lists: what a connector sends cannot flood the log.
            log.warning(
                "connector %s backend %s: %d CA certificate(s) not stored, first: %s",
                connector_id,
                clip(report.name),
                len(refused),
                refused[0],
            )
    return backend


class NotACACertificate(ValueError):
    pass


def ca_certificate_pem(pem: str) -> str:
    """The one certificate in `pem`, re-encoded, if it is a CA certificate (basic constraints CA=true);
    NotACACertificate otherwise. Served at /cas/{id}/certificate and used to build chains, so what a
    connector reports is checked like any other input rather than trusted."""
    try:
        certificates = load_certificates(pem.encode())
    except CertificateFormatError as exc:
        raise NotACACertificate(str(exc)) from None
    if len(certificates) != 1:
        raise NotACACertificate(f"{len(certificates)} certificates where one CA certificate was expected")
    certificate = certificates[0]
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise NotACACertificate("the certificate has no basic constraints, so it is not a CA's") from None
    except ValueError as exc:  # a malformed extension: cryptography parses extensions lazily
        raise NotACACertificate(f"the certificate's extensions do not parse ({clip(str(exc))})") from None
    if not constraints.ca:
        raise NotACACertificate("the certificate's basic constraints say CA=false")
    return certificate.public_bytes(Encoding.PEM).decode("ascii")


def _reconcile_cas(backend: ManagedBackend, reports: list[messages.CAReport], now: dt.datetime) -> list[str]:
    """Upsert the reported CAs; returns why each refused CA certificate was refused."""
    refused: list[str] = []
    by_ref = {ca.ca_ref: ca for ca in backend.cas}
    for report in reports:
        ca = by_ref.get(report.id)
        if ca is None:
            ca = by_ref[report.id] = ManagedCA(id=new_id(), ca_ref=report.id)
            backend.cas.append(ca)
        ca.name = report.name
        ca.subject = report.subject
        ca.key_type = report.key_type
        ca.serial = report.serial
        ca.not_after = _utc(report.not_after)
        ca.state = report.state
        if report.certificate_pem:
            # A certificate that is not a CA's is left out (the last good one stays), not the whole
            # report: the rest of it is right, and refusing it would only have the connector resend it.
            try:
                ca.certificate_pem = ca_certificate_pem(report.certificate_pem)
            except NotACACertificate as exc:
                refused.append(f"CA {clip(report.id)}: {exc}")
        apply_crl(ca, report.crl_der_b64, now)
    listed = {report.id for report in reports}
    for ref, ca in by_ref.items():
        if ref not in listed:
            ca.state = CA_ABSENT
    return refused


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # The protocol's times are UTC; a connector that leaves the zone out means UTC too.
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value
