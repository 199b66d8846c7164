"""Certificates over the REST API, on SQLite and PostgreSQL: enroll through a connector to the real local
CA, refusals that store nothing, downloads in every format, revoke (with the CRL), renew, roles, and
the derived Expired status. Waiting answers (`wait`) are in test_lifecycle.py, against a real server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.manager.conftest import Caller, FakeClock
from tests.manager.connector_support import assert_problem
from tests.manager.lifecycle_support import (
    API,
    Lab,
    certificate,
    count,
    create_profile,
    enroll,
    jobs_of,
    make_csr,
    make_lab,
)

from caconnector.manager.db.models import AuditEvent, Certificate, Job
from caconnector.manager.runtime import Runtime
from caconnector.pki.keys import public_keys_equal
from caconnector.pki.serial import canonical_serial
from caconnector.protocol.messages import EnrollPayload


@pytest.fixture
def lab(runtime: Runtime, client: TestClient, tmp_path: Path) -> Lab:
    return make_lab(runtime, client, tmp_path)


@pytest.fixture
def profile(client: TestClient, admin: Caller, lab: Lab) -> dict[str, Any]:
    return create_profile(client, admin, lab)


def issue(
    client: TestClient, caller: Caller, lab: Lab, csr: str | None = None, **extra: Any
) -> dict[str, Any]:
    """Enroll and let the connector answer: the Issued certificate's view."""
    response = enroll(client, caller, csr or make_csr()[0], **extra)
    assert response.status_code == 202, response.text
    lab.work(client)
    view = certificate(client, caller, response.json()["id"])
    assert view["status"] == "Issued", view
    return view


# ---- enroll ------------------------------------------------------------------------------------------


def test_enroll_through_the_connector_to_the_local_ca(
    client: TestClient, runtime: Runtime, operator: Caller, lab: Lab, profile: dict[str, Any]
) -> None:
    csr, key = make_csr(dns=("app.example.test", "www.example.test"))
    response = enroll(client, operator, csr, term_days=30)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "Requested"
    assert accepted["reason"] == "waiting for connector dc1 to take the request"
    [job] = lab.take(client)
    assert job["kind"] == "enroll"
    assert job["backend"] == "lab"
    payload = EnrollPayload.model_validate(job["payload"])
    assert payload.request_id == accepted["id"]  # the idempotency source of every retry
    assert (payload.ca, payload.template, payload.validity_days) == (lab.ca.id, "server", 30)

    lab.send(client, lab.answer(job))
    view = certificate(client, operator, accepted["id"])
    assert view["status"] == "Issued"
    assert (view["profile"], view["backend"], view["ca"]) == (profile["id"], lab.backend_id, lab.ca_id)
    assert view["sans"] == ["DNS:app.example.test", "DNS:www.example.test"]
    assert view["key_type"] == "ec-p256"
    assert view["term_days"] == 30
    assert view["attempts"] == 1
    assert view["error"] is None
    issued = x509.load_pem_x509_certificate(
        client.get(f"{API}/certificates/{accepted['id']}/download", headers=operator.headers).content
    )
    assert view["serial"] == canonical_serial(issued.serial_number)
    assert public_keys_equal(issued.public_key(), key.public_key())
    with runtime.sessions.begin() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("certificate.%"))
        ).all()
        assert actions == ["certificate.enroll", "certificate.issued"]


def test_the_profile_may_be_named_and_its_first_term_is_the_default(
    client: TestClient, operator: Caller, lab: Lab, profile: dict[str, Any]
) -> None:
    response = enroll(client, operator, make_csr()[0], profile=profile["id"])
    assert response.status_code == 202, response.text
    [job] = lab.take(client)
    assert job["payload"]["validity_days"] == 30


def assert_nothing_stored(runtime: Runtime) -> None:
    assert count(runtime, Certificate) == 0
    assert count(runtime, Job) == 0


@pytest.mark.parametrize(
    ("csr", "detail"),
    [
        ("not a CSR at all", "input is not a PEM or DER certificate request"),
        (
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIBIjAN\n",
            "CSR PEM is truncated (no END CERTIFICATE REQUEST line); send the complete request",
        ),
        ("", "CSR is empty; send a PEM or DER certificate request"),
    ],
)
@pytest.mark.usefixtures("profile")
def test_a_malformed_csr_is_refused_with_the_reason_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, operator: Caller, csr: str, detail: str
) -> None:
    response = enroll(client, operator, csr)
    assert_problem(response, 422, "invalid_csr")
    assert response.json()["detail"] == detail
    assert_nothing_stored(runtime)


def test_a_key_type_the_profile_does_not_allow_is_refused(
    client: TestClient, runtime: Runtime, operator: Caller, profile: dict[str, Any]
) -> None:
    response = enroll(client, operator, make_csr("rsa-3072")[0])
    assert_problem(response, 422, "key_type_not_allowed")
    detail = response.json()["detail"]
    assert detail == "key type rsa-3072 is not allowed by profile web (allowed: ec-p256, rsa-2048)"
    assert_nothing_stored(runtime)


@pytest.mark.usefixtures("profile")
def test_a_term_the_profile_does_not_allow_is_refused(
    client: TestClient, runtime: Runtime, operator: Caller
) -> None:
    response = enroll(client, operator, make_csr()[0], term_days=365)
    assert_problem(response, 422, "term_not_allowed", "365 days", "(allowed: 30, 90)")
    assert_nothing_stored(runtime)


def test_an_unknown_profile_is_refused(
    client: TestClient, runtime: Runtime, operator: Caller, lab: Lab
) -> None:
    assert_problem(enroll(client, operator, make_csr()[0], profile="nope"), 422, "unknown_profile", "'nope'")
    assert_nothing_stored(runtime)


@pytest.mark.usefixtures("profile")
def test_a_disabled_backend_takes_no_requests(
    client: TestClient, runtime: Runtime, admin: Caller, operator: Caller, lab: Lab
) -> None:
    disabled = client.patch(
        f"{API}/backends/{lab.backend_id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200
    assert_problem(enroll(client, operator, make_csr()[0]), 409, "backend_unavailable", "disabled")
    assert_nothing_stored(runtime)


def organizations(status: str) -> list[dict[str, Any]]:
    return [
        {"id": "org-1", "name": "Example Corp", "status": status, "validated_until": "2099-01-01T00:00:00Z"},
        {"id": "org-2", "name": "Other Corp", "status": "validated"},
    ]


def test_an_organization_the_ca_has_not_validated_is_refused(
    client: TestClient, runtime: Runtime, admin: Caller, operator: Caller, lab: Lab
) -> None:
    lab.report(client, organizations=organizations("pending"))
    create_profile(client, admin, lab, organization="Example Corp")

    response = enroll(client, operator, make_csr()[0])
    assert_problem(response, 422, "organization_not_validated")
    assert (
        response.json()["detail"] == "organization Example Corp is not validated at the CA (status: pending)"
    )
    assert_nothing_stored(runtime)

    lab.report(client, organizations=organizations("validated"))
    assert enroll(client, operator, make_csr()[0]).status_code == 202


# ---- download ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_download_in_every_format(client: TestClient, operator: Caller, lab: Lab) -> None:
    view = issue(client, operator, lab)
    url = f"{API}/certificates/{view['id']}/download"

    def get(fmt: str, media_type: str) -> bytes:
        response = client.get(url, params={"format": fmt}, headers=operator.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        assert response.headers["content-disposition"].startswith(f'attachment; filename="{view["serial"]}')
        content: bytes = response.content
        return content

    leaf = x509.load_pem_x509_certificate(get("pem", "application/pem-certificate-chain"))
    assert canonical_serial(leaf.serial_number) == view["serial"]
    full = x509.load_pem_x509_certificates(get("pem-chain", "application/pem-certificate-chain"))
    assert full == [leaf, lab.ca.certificate]  # leaf first, then its issuer
    assert x509.load_pem_x509_certificates(get("chain", "application/pem-certificate-chain")) == [
        lab.ca.certificate
    ]
    assert x509.load_der_x509_certificate(get("der", "application/pkix-cert")) == leaf
    bundle = pkcs7.load_der_pkcs7_certificates(get("pkcs7", "application/pkcs7-mime"))
    assert set(bundle) == {leaf, lab.ca.certificate}
    assert client.get(url, headers=operator.headers).content == get(
        "pem", "application/pem-certificate-chain"
    )
    assert_problem(
        client.get(url, params={"format": "pfx"}, headers=operator.headers), 422, "invalid_request"
    )


@pytest.mark.usefixtures("profile")
def test_nothing_to_download_before_issue(client: TestClient, operator: Caller) -> None:
    requested = enroll(client, operator, make_csr()[0]).json()
    response = client.get(f"{API}/certificates/{requested['id']}/download", headers=operator.headers)
    assert_problem(response, 409, "not_issued", "Requested")
    assert_problem(
        client.get(f"{API}/certificates/nope/download", headers=operator.headers), 404, "not_found"
    )


# ---- revoke ------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_revoke_through_the_connector_and_the_crl_follows(
    client: TestClient, runtime: Runtime, operator: Caller, lab: Lab
) -> None:
    view = issue(client, operator, lab)
    assert_problem(client.get(f"{API}/cas/{lab.ca_id}/crl", headers=operator.headers), 404, "no_crl")

    response = client.post(
        f"{API}/certificates/{view['id']}/revoke", json={"reason": "key-compromise"}, headers=operator.headers
    )
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["certificate"]["reason"] == "being revoked (keyCompromise)"
    assert started["job"]["kind"] == "revoke"
    again = client.post(f"{API}/certificates/{view['id']}/revoke", json={}, headers=operator.headers)
    assert_problem(again, 409, "conflict", "already being revoked")

    [job] = lab.work(client)
    assert job["payload"] == {"serial": view["serial"], "reason": "keyCompromise", "ca": lab.ca.id}
    revoked = certificate(client, operator, view["id"])
    assert (revoked["status"], revoked["revocation_reason"]) == ("Revoked", "keyCompromise")
    assert revoked["revoked_at"] is not None

    crl_response = client.get(f"{API}/cas/{lab.ca_id}/crl", headers=operator.headers)
    assert crl_response.status_code == 200
    assert crl_response.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(crl_response.content)
    entry = crl.get_revoked_certificate_by_serial_number(int(view["serial"], 16))
    assert entry is not None
    assert client.get(f"{API}/cas/{lab.ca_id}", headers=operator.headers).json()["crl_updated_at"] is not None
    assert_problem(
        client.post(f"{API}/certificates/{view['id']}/revoke", json={}, headers=operator.headers),
        409,
        "conflict",
        "is Revoked",
    )
    assert [j.kind for j in jobs_of(runtime, view["id"])] == ["enroll", "revoke"]


@pytest.mark.usefixtures("profile")
def test_an_unknown_revocation_reason_is_refused(client: TestClient, operator: Caller, lab: Lab) -> None:
    view = issue(client, operator, lab)
    response = client.post(
        f"{API}/certificates/{view['id']}/revoke", json={"reason": "bored"}, headers=operator.headers
    )
    assert_problem(response, 422, "invalid_reason", "'bored'", "keyCompromise")
    assert certificate(client, operator, view["id"])["revocation_reason"] is None


@pytest.mark.usefixtures("profile")
def test_only_issued_certificates_can_be_revoked(client: TestClient, operator: Caller, lab: Lab) -> None:
    requested = enroll(client, operator, make_csr()[0]).json()
    response = client.post(f"{API}/certificates/{requested['id']}/revoke", json={}, headers=operator.headers)
    assert_problem(response, 409, "conflict", "is Requested")


@pytest.mark.usefixtures("profile")
def test_a_crl_in_the_inventory_is_kept_and_served(client: TestClient, operator: Caller, lab: Lab) -> None:
    der = lab.ca.crl().public_bytes(serialization.Encoding.DER)
    lab.connector.inventory(
        client,
        [
            {
                "name": "lab",
                "type": "local",
                "status": "Available",
                "cas": [lab.ca_report(crl_der_b64=base64.b64encode(der).decode())],
            }
        ],
    )
    response = client.get(f"{API}/cas/{lab.ca_id}/crl", headers=operator.headers)
    assert response.status_code == 200
    assert response.content == der
    pem = client.get(f"{API}/cas/{lab.ca_id}/certificate", headers=operator.headers)
    assert x509.load_pem_x509_certificate(pem.content) == lab.ca.certificate


# ---- renew, list, roles, expiry ----------------------------------------------------------------------


@pytest.mark.usefixtures("profile")
def test_renew_reuses_the_stored_csr_and_links_the_new_request(
    client: TestClient, operator: Caller, lab: Lab
) -> None:
    old = issue(client, operator, lab, term_days=90)
    response = client.post(f"{API}/certificates/{old['id']}/renew", json={}, headers=operator.headers)
    assert response.status_code == 202, response.text
    [job] = lab.work(client)
    assert job["payload"]["validity_days"] == 90  # the old term

    new = certificate(client, operator, response.json()["id"])
    assert new["status"] == "Issued"
    assert new["renewed_from"] == old["id"]
    assert new["serial"] != old["serial"]
    leaves = [
        x509.load_pem_x509_certificate(
            client.get(f"{API}/certificates/{c['id']}/download", headers=operator.headers).content
        )
        for c in (old, new)
    ]
    assert public_keys_equal(leaves[0].public_key(), leaves[1].public_key())  # the same key


@pytest.mark.usefixtures("profile")
def test_renew_with_a_new_csr(client: TestClient, operator: Caller, lab: Lab) -> None:
    old = issue(client, operator, lab)
    csr, _ = make_csr("rsa-2048")
    response = client.post(
        f"{API}/certificates/{old['id']}/renew", json={"csr": csr}, headers=operator.headers
    )
    assert response.status_code == 202, response.text
    lab.work(client)
    new = certificate(client, operator, response.json()["id"])
    assert (new["key_type"], new["renewed_from"]) == ("rsa-2048", old["id"])


def test_lists_filter_by_status_profile_backend_and_serial(
    client: TestClient, operator: Caller, auditor: Caller, lab: Lab, profile: dict[str, Any]
) -> None:
    issued = [issue(client, operator, lab) for _ in range(3)]
    requested = enroll(client, operator, make_csr()[0]).json()

    def ids(**params: Any) -> list[str]:
        response = client.get(f"{API}/certificates", params=params, headers=auditor.headers)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    newest_first = [requested["id"], *[c["id"] for c in reversed(issued)]]
    assert ids() == newest_first
    assert ids(status="Requested") == [requested["id"]]
    assert ids(status="Issued", profile=profile["id"], backend=lab.backend_id) == newest_first[1:]
    spelled = ":".join(issued[1]["serial"][i : i + 2] for i in range(0, len(issued[1]["serial"]), 2)).upper()
    assert ids(serial=spelled) == [issued[1]["id"]]
    assert ids(backend="other") == []

    pages, cursor = [], None
    while True:
        page = client.get(
            f"{API}/certificates",
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
            headers=auditor.headers,
        ).json()
        pages.append([c["id"] for c in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for page in pages for i in page] == newest_first
    bad = client.get(f"{API}/certificates", params={"serial": "xyz"}, headers=auditor.headers)
    assert_problem(bad, 422, "invalid_request", "serial")


@pytest.mark.usefixtures("profile")
def test_auditors_read_but_cannot_enroll_revoke_renew_or_scan(
    client: TestClient, operator: Caller, auditor: Caller, lab: Lab
) -> None:
    view = issue(client, operator, lab)
    assert_problem(enroll(client, auditor, make_csr()[0]), 403, "forbidden")
    for action in ("revoke", "renew"):
        response = client.post(f"{API}/certificates/{view['id']}/{action}", json={}, headers=auditor.headers)
        assert_problem(response, 403, "forbidden")
    assert_problem(
        client.post(f"{API}/backends/{lab.backend_id}/scan", headers=auditor.headers), 403, "forbidden"
    )
    assert client.get(f"{API}/certificates/{view['id']}", headers=auditor.headers).status_code == 200
    download = client.get(f"{API}/certificates/{view['id']}/download", headers=auditor.headers)
    assert download.status_code == 200


@pytest.mark.usefixtures("profile")
def test_expired_is_derived_from_not_after(
    client: TestClient, clock: FakeClock, operator: Caller, lab: Lab
) -> None:
    view = issue(client, operator, lab, term_days=30)
    clock.advance(days=31)
    assert certificate(client, operator, view["id"])["status"] == "Expired"
    expired = client.get(f"{API}/certificates", params={"status": "Expired"}, headers=operator.headers).json()
    assert [c["id"] for c in expired["items"]] == [view["id"]]
    issued = client.get(f"{API}/certificates", params={"status": "Issued"}, headers=operator.headers).json()
    assert issued["items"] == []
    response = client.post(f"{API}/certificates/{view['id']}/revoke", json={}, headers=operator.headers)
    assert_problem(response, 409, "conflict", "is Expired")
