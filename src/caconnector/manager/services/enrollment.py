"""Enrolling: a CSR and a profile become a Requested certificate and an `enroll` job, or a clear refusal.

Every check runs before anything is stored, so a refused request leaves no trace but its answer. What
is stored, the certificate row and its job, is stored in one transaction (the caller's): a request is
never lost between the two, and never ordered twice, because the job's `request_id` is the
certificate's id and every retry or redelivery carries the same one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy.orm import Session

from caconnector.manager import audit
from caconnector.manager.db.models import Certificate, ManagedBackend, ManagedCA, Profile, new_id
from caconnector.manager.db.rows import insert_loaded
from caconnector.manager.services import jobs_factory
from caconnector.manager.services.errors import Conflict, Invalid
from caconnector.manager.services.profiles import profile_ca
from caconnector.manager.services.states import CertStatus, Source, target
from caconnector.pki.csr import CSRInfo, describe_csr, load_csr
from caconnector.pki.errors import PKIError
from caconnector.pki.names import alt_name_strings
from caconnector.protocol.messages import EnrollPayload

VALIDATED = "validated"


def enroll(
    session: Session,
    profile: Profile,
    csr_pem: str,
    term_days: int | None,
    *,
    now: dt.datetime,
    actor: str,
    renewed_from: Certificate | None = None,
    certificate_id: str | None = None,
) -> Certificate:
    """A Requested certificate and its enroll job; raise Invalid (422) or Conflict (409) first.
    `certificate_id`: the new certificate's id when the caller chose it (to wait on it first)."""
    csr, info = _load_csr(csr_pem)
    key_type = info.key_type
    if key_type not in profile.key_types:
        raise Invalid(
            f"key type {key_type} is not allowed by profile {profile.name} "
            f"(allowed: {', '.join(profile.key_types)})",
            code="key_type_not_allowed",
        )
    term = _term(profile, term_days)
    backend = profile.backend
    _check_backend(backend)
    _check_organization(profile, backend, now)
    ca = profile_ca(session, profile)
    if ca.state == "absent":
        raise Conflict(
            f"CA {ca.name!r} is no longer listed by backend {backend.name!r}; update profile {profile.name}",
            code="backend_unavailable",
        )

    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    certificate = Certificate(
        id=certificate_id or new_id(),
        profile_id=profile.id,
        backend_id=backend.id,
        ca_id=ca.id,
        status=CertStatus.REQUESTED.value,
        source=Source.ENROLL.value,
        csr_pem=pem,
        subject=info.subject.rfc4514_string(),  # as the subject policy rebuilds it (pki.subject)
        sans=alt_name_strings(csr),
        key_type=key_type,
        term_days=term,
        chain_pem=[],
        attempts=0,
        failures=0,
        renewed_from_id=renewed_from.id if renewed_from is not None else None,
        created_at=now,
        updated_at=now,
    )
    insert_loaded(session, certificate)  # before its job, which refers to it
    job = jobs_factory.enroll(
        session,
        backend,
        _payload(certificate, pem, profile, backend, ca),
        certificate_id=certificate.id,
        now=now,
    )
    details: dict[str, Any] = {"profile": profile.name, "subject": certificate.subject, "job": job.id}
    if renewed_from is not None:
        details["renewed_from"] = renewed_from.id
    action = "certificate.renew" if renewed_from is not None else "certificate.enroll"
    audit.record(session, now, actor, action, target(certificate), **details)
    return certificate


def renew(
    session: Session,
    old: Certificate,
    csr_pem: str | None,
    term_days: int | None,
    *,
    now: dt.datetime,
    actor: str,
) -> Certificate:
    """A new request on the old one's profile, linked to it. Without a CSR the stored one is sent again:
    the same key, which is what "renew" means to most CAs and to the servers that hold the key."""
    if old.profile is None:
        why = "was imported by a scan" if old.source == Source.SCAN.value else "has lost its profile"
        raise Conflict(f"certificate {old.id} {why}; request a new one with POST /certificates and a profile")
    csr = csr_pem or old.csr_pem
    if csr is None:
        raise Conflict(f"certificate {old.id} has no stored CSR; send one in `csr`")
    if term_days is None and old.term_days in old.profile.terms_days:
        term_days = old.term_days
    return enroll(session, old.profile, csr, term_days, now=now, actor=actor, renewed_from=old)


def _load_csr(csr_pem: str) -> tuple[x509.CertificateSigningRequest, CSRInfo]:
    # load_csr applies the subject policy and reads the extension request: whatever a CA would refuse
    # in the CSR is refused here, before anything is stored.
    try:
        data = csr_pem.encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") survives JSON decoding, not encoding
        raise Invalid("CSR text is not valid Unicode; send the PEM request", code="invalid_csr") from None
    try:
        csr = load_csr(data)
        return csr, describe_csr(csr)
    except PKIError as exc:
        raise Invalid(str(exc), code="invalid_csr") from None


def _term(profile: Profile, term_days: int | None) -> int:
    if term_days is None:
        return int(profile.terms_days[0])
    if term_days not in profile.terms_days:
        allowed = ", ".join(str(t) for t in profile.terms_days)
        raise Invalid(
            f"a term of {term_days} days is not allowed by profile {profile.name} (allowed: {allowed})",
            code="term_not_allowed",
        )
    return term_days


def _check_backend(backend: ManagedBackend) -> None:
    # An Offline backend (its connector away) is fine: the job waits, queued, until the connector polls.
    if not backend.present:
        raise Conflict(
            f"backend {backend.name!r} is no longer reported by its connector {backend.connector.name!r}",
            code="backend_unavailable",
        )
    if backend.disabled:
        raise Conflict(
            f"backend {backend.name!r} is disabled; an administrator can enable it (PATCH /backends/"
            f"{backend.id})",
            code="backend_unavailable",
        )


def _check_organization(profile: Profile, backend: ManagedBackend, now: dt.datetime) -> None:
    """Where the CA validates organizations, a request for one it has not validated would only sit
    pending, or be rejected after days: refuse it now, saying why."""
    if profile.organization is None or not backend.organizations:
        return
    wanted = profile.organization
    organization = next(
        (o for o in backend.organizations if isinstance(o, dict) and wanted in (o.get("id"), o.get("name"))),
        None,
    )
    if organization is None:
        known = ", ".join(str(o.get("name")) for o in backend.organizations if isinstance(o, dict))
        raise Invalid(
            f"organization {wanted} is not known at the CA of backend {backend.name!r} (it knows: {known})",
            code="organization_not_validated",
        )
    status = str(organization.get("status", "unknown"))
    if status.lower() != VALIDATED:
        raise Invalid(
            f"organization {wanted} is not validated at the CA (status: {status})",
            code="organization_not_validated",
        )
    until = _datetime(organization.get("validated_until"))
    if until is not None and until <= now:
        raise Invalid(
            f"organization {wanted}'s validation at the CA expired on {until:%Y-%m-%d}",
            code="organization_not_validated",
        )


def _datetime(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def _payload(
    certificate: Certificate, csr_pem: str, profile: Profile, backend: ManagedBackend, ca: ManagedCA
) -> EnrollPayload:
    # A template (AD CS, the local CA) and a product (DigiCert, Entrust) travel as separate fields; the
    # backend reads the one its CA has. Without a template, the certificate type is sent when the
    # backend offers a template of that name, as the local CA does (server, client); otherwise the
    # backend's default applies.
    template = profile.template
    if template is None and profile.product is None and profile.cert_type in backend.templates:
        template = profile.cert_type
    return EnrollPayload(
        csr_pem=csr_pem,
        request_id=certificate.id,
        ca=ca.ca_ref,
        template=template,
        product=profile.product,
        organization=profile.organization,
        validity_days=certificate.term_days,
    )
