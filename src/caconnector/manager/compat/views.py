"""Our profiles, organizations and certificates as the commercial manager's API spells them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from caconnector.manager.db.models import Certificate, Profile
from caconnector.manager.services.certificate_search import common_names
from caconnector.manager.services.organizations import Organization
from caconnector.manager.services.states import CertStatus, revocation_in_progress, status_at

# Our statuses in that API's words: "Applied" is its "sent to the CA, waiting"; a failed request is
# "Rejected" there. `status` filters of the list take these words.
STATUS_WORDS: dict[CertStatus, str] = {
    CertStatus.REQUESTED: "Requested",
    CertStatus.PENDING: "Applied",
    CertStatus.ISSUED: "Issued",
    CertStatus.FAILED: "Rejected",
    CertStatus.REVOKED: "Revoked",
    CertStatus.EXPIRED: "Expired",
}
STATUS_OF_WORD = {word.lower(): status for status, word in STATUS_WORDS.items()}


def key_types(profile: Profile) -> dict[str, list[str]]:
    """`{"RSA": ["2048"], "EC": ["P-256"], "EdDSA": ["Ed25519"]}` from our key type names."""
    grouped: dict[str, list[str]] = {}
    for name in profile.key_types:
        algorithm, size = _key_parts(str(name))
        grouped.setdefault(algorithm, []).append(size)
    return grouped


def cert_type(profile: Profile, number: int) -> dict[str, Any]:
    return {
        "id": number,
        "name": profile.name,
        "description": f"{profile.cert_type} certificates through backend {profile.backend.name}",
        "terms": list(profile.terms_days),
        "keyTypes": key_types(profile),
        "useSecondaryOrgName": False,
    }


def organization(org: Organization, number: int, type_numbers: list[int]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": number,
        "name": org.name,
        "certTypes": type_numbers,
        "departments": [],
    }
    if org.status is not None:
        view["validationStatus"] = org.status.upper()
    return view


def status_word(certificate: Certificate, now: dt.datetime) -> str:
    return STATUS_WORDS[status_at(certificate, now)]


def common_name(certificate: Certificate) -> str:
    names = common_names(certificate.subject)
    return names[0] if names else ""


def alt_names(certificate: Certificate) -> list[str]:
    """The SANs without our `DNS:` / `IP:` prefixes, as that API lists them."""
    return [str(san).split(":", 1)[1] if ":" in str(san) else str(san) for san in certificate.sans]


def serial_number(certificate: Certificate) -> str | None:
    """Upper-case hex pairs separated by colons, that API's spelling; None until issued."""
    serial = certificate.serial
    if serial is None:
        return None
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)).upper()


def listed(certificate: Certificate, ssl_id: int) -> dict[str, Any]:
    return {
        "sslId": ssl_id,
        "commonName": common_name(certificate),
        "subjectAlternativeNames": alt_names(certificate),
        "serialNumber": serial_number(certificate),
    }


def details(
    certificate: Certificate,
    ssl_id: int,
    org_id: int | None,
    type_view: dict[str, Any] | None,
    now: dt.datetime,
) -> dict[str, Any]:
    algorithm, size = _key_parts(certificate.key_type)
    view: dict[str, Any] = {
        **listed(certificate, ssl_id),
        "id": ssl_id,
        "renewId": certificate.id,
        "backendCertId": certificate.id,  # our id: GET /api/v1/certificates/{it} shows the same one
        "orgId": org_id,
        "status": status_word(certificate, now),
        "certType": type_view,
        "term": certificate.term_days,
        "subject": certificate.subject,
        "keyAlgorithm": algorithm,
        "keySize": int(size) if size.isdigit() else None,
        "keyType": f"{algorithm} - {size}",
        "orderNumber": certificate.order_ref,
        "requested": _day(certificate.created_at),
        "approved": _day(certificate.issued_at),
        "expires": _day(certificate.not_after),
        "revoked": _day(certificate.revoked_at),
        "revocationInProgress": revocation_in_progress(certificate),
        "comments": "",
    }
    if certificate.renewed_from_id is not None:
        view["renewedFrom"] = certificate.renewed_from_id
    return view


def _day(value: dt.datetime | None) -> str | None:
    return value.date().isoformat() if value is not None else None


def _key_parts(name: str) -> tuple[str, str]:
    family, _, size = name.partition("-")
    if family == "ec":
        return "EC", size.upper().replace("P", "P-")
    if family == "rsa":
        return "RSA", size
    return "EdDSA", "Ed25519" if family == "ed25519" else name
