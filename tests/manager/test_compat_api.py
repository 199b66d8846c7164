"""The commercial manager's REST API (manager/compat/) through its real Python client, `cert_manager`
from PyPI, against a live manager whose connector answers jobs with the local CA (the Lab's JobRunner)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cert_manager import SSL, Client, Organization, PendingError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi import FastAPI
from tests.manager.conftest import Caller
from tests.manager.lifecycle_support import Lab, certificate, create_profile, make_csr, make_lab, pending
from tests.manager.live import live_server

from caconnector.manager.runtime import Runtime

CUSTOMER_URI = "ca-manager"  # Settings.compat_customer_uri's default


def _client(url: str, caller: Caller, *, password: str | None = None, login_uri: str = CUSTOMER_URI) -> Any:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between the test and 127.0.0.1
    return Client(
        base_url=f"{url}/api",
        login_uri=login_uri,
        username=caller.username,
        password=caller.password if password is None else password,
        session=session,
    )


def _parse(text: str, fmt: str) -> list[x509.Certificate]:
    if fmt == "base64":
        return list(pkcs7.load_pem_pkcs7_certificates(text.encode()))
    if fmt == "bin":
        return list(pkcs7.load_der_pkcs7_certificates(text.encode("latin-1")))
    return x509.load_pem_x509_certificates(text.encode())


def _collected(ssl: Any, ssl_id: int) -> dict[str, list[x509.Certificate]]:
    return {fmt: _parse(ssl.collect(ssl_id, fmt), fmt) for fmt in ssl.valid_formats}


@dataclass
class Served:
    url: str
    http: httpx.Client  # the Lab connector's, and our own REST API's
    lab: Lab


@pytest.fixture
def served(runtime: Runtime, app: FastAPI, tmp_path: Path, admin: Caller) -> Iterator[Served]:
    """A live manager, the Lab connector registered with its local CA, and profile `web` on it."""
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        lab = make_lab(runtime, http, tmp_path)
        create_profile(http, admin, lab)
        yield Served(url, http, lab)


def test_the_client_enrolls_collects_renews_replaces_and_revokes(served: Served, operator: Caller) -> None:
    url, http, lab = served.url, served.http, served.lab
    cm = _client(url, operator)

    organizations = Organization(cm).all()
    assert [o["name"] for o in organizations] == ["Default Organization"]
    ssl = SSL(cm)
    assert set(ssl.types) == {"web"}
    assert ssl.types["web"]["terms"] == [30, 90]
    assert organizations[0]["certTypes"] == [ssl.types["web"]["id"]]
    assert ssl.custom_fields == []

    csr, key = make_csr(dns=("app.example.test", "www.example.test"), common_name="app.example.test")
    enrolled = ssl.enroll(
        cert_type_name="web",
        csr=csr,
        term=90,
        org_id=organizations[0]["id"],
        subject_alt_names=["app.example.test", "www.example.test"],
        external_requester="ops@example.test",
    )
    ssl_id, renew_id = enrolled["sslId"], enrolled["renewId"]
    assert isinstance(ssl_id, int)
    # Not yet taken by the connector: the client's PendingError, from the -183 answer.
    with pytest.raises(PendingError):
        ssl.collect(ssl_id, "x509CO")
    assert ssl.get(ssl_id)["status"] == "Requested"
    assert [job["kind"] for job in lab.work(http)] == ["enroll"]

    formats = _collected(ssl, ssl_id)
    leaf = formats["x509CO"][0]
    assert leaf.public_key() == key.public_key()
    leaf.verify_directly_issued_by(lab.ca.certificate)
    chain = [lab.ca.certificate]
    assert formats["x509"] == formats["pemia"] == [leaf, *chain]
    assert formats["x509CO"] == formats["pemco"] == [leaf]
    assert formats["x509IO"] == list(reversed(chain)) and formats["x509IOR"] == chain
    assert formats["pem"] == [*reversed(chain), leaf]
    assert set(formats["base64"]) == set(formats["bin"]) == {leaf, *chain}

    # The details, and our own API showing the same certificate under the renewId.
    details = ssl.get(ssl_id)
    assert (details["sslId"], details["status"], details["commonName"]) == (
        ssl_id,
        "Issued",
        "app.example.test",
    )
    assert details["subjectAlternativeNames"] == ["app.example.test", "www.example.test"]
    assert details["certType"]["id"] == ssl.types["web"]["id"]
    assert details["orgId"] == organizations[0]["id"]
    ours = certificate(http, operator, renew_id)
    assert ours["serial"] == format(leaf.serial_number, "x")
    assert details["serialNumber"].replace(":", "").lower().lstrip("0") == ours["serial"].lstrip("0")

    # Renew: a new certificate on the same key and term.
    renewed = ssl.renew(ssl_id)["sslId"]
    assert renewed != ssl_id
    lab.work(http)
    renewed_leaf = _parse(ssl.collect(renewed, "pemco"), "pemco")[0]
    assert renewed_leaf.public_key() == key.public_key() and renewed_leaf != leaf

    # Replace: a new key; the sslId now collects the new certificate.
    new_csr, new_key = make_csr(dns=("app.example.test",), common_name="app.example.test")
    assert ssl.replace(
        cert_id=renewed, csr=new_csr, common_name="app.example.test", reason="rekey",
        subject_alt_names=["app.example.test"],
    ) == {}  # fmt: skip
    lab.work(http)
    replaced_leaf = _parse(ssl.collect(renewed, "x509CO"), "x509CO")[0]
    assert replaced_leaf.public_key() == new_key.public_key()

    # List and count, with the client's paging and filters.
    listed = list(ssl.list())
    assert [item["sslId"] for item in listed][:1] == [ssl_id]
    assert len(listed) == ssl.count() == 3  # the first, the renewed (listed again) and the replacement
    assert ssl.count(status="Issued") == 3
    assert [i["commonName"] for i in ssl.list(commonName="app.example.test", size=1)] == [
        "app.example.test"
    ] * 3
    assert ssl.count(subjectAlternativeName="www.example.test") == 2
    assert ssl.count(sslTypeId=ssl.types["web"]["id"], orgId=organizations[0]["id"]) == 3

    # Revoke: the CA revokes it; collecting it now says so (-192; the client calls any refusal pending).
    assert ssl.revoke(ssl_id, reason="keyCompromise") == {}
    assert [job["kind"] for job in lab.work(http)] == ["revoke"]
    assert ssl.get(ssl_id)["status"] == "Revoked"
    assert certificate(http, operator, renew_id)["revocation_reason"] == "keyCompromise"
    refused = cm.session.get(f"{url}/api/ssl/v1/collect/{ssl_id}/x509CO")
    assert (refused.status_code, refused.json()["code"]) == (400, -192)
    assert ssl.count(status="Revoked") == 1


def test_pending_at_the_ca_is_pending_to_the_client(served: Served, operator: Caller) -> None:
    url, http, lab = served.url, served.http, served.lab
    ssl = SSL(_client(url, operator))
    org_id = Organization(ssl._client).all()[0]["id"]
    csr, _ = make_csr()
    ssl_id = ssl.enroll(cert_type_name="web", csr=csr, term=30, org_id=org_id)["sslId"]
    lab.work(http, lambda job: pending(job["id"], "order-7", "waiting for approval at the CA"))
    assert ssl.get(ssl_id)["status"] == "Applied"
    with pytest.raises(PendingError):
        ssl.collect(ssl_id, "pem")
    answer = ssl._client.session.get(f"{url}/api/ssl/v1/collect/{ssl_id}/pem")
    assert answer.status_code == 400
    assert answer.json() == {
        "code": -183,
        "description": f"certificate {ssl_id} is not issued yet: waiting for approval at the CA",
    }


def test_wrong_credentials_and_bad_input_are_refused_in_that_apis_shape(
    served: Served, admin: Caller, operator: Caller, auditor: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="caconnector")
    url, http = served.url, served.http
    for client in (
        _client(url, operator, password="not-the-password"),
        _client(url, operator, login_uri="x"),
    ):
        with pytest.raises(requests.HTTPError) as refused:
            Organization(client)
        response = refused.value.response
        assert response is not None
        assert response.status_code == 401
        assert response.json()["code"] == -16
        assert "not-the-password" not in response.text
    stranger = {"login": "nobody", "password": "x", "customerUri": CUSTOMER_URI}
    unknown = _client(url, operator).session.get(f"{url}/api/ssl/v1/types", headers=stranger)
    assert (unknown.status_code, unknown.json()["code"]) == (401, -16)

    # An auditor reads but does not enroll.
    reader = SSL(_client(url, auditor))
    assert set(reader.types) == {"web"}
    org_id = Organization(reader._client).all()[0]["id"]
    csr, _ = make_csr()
    with pytest.raises(requests.HTTPError) as forbidden:
        reader.enroll(cert_type_name="web", csr=csr, term=30, org_id=org_id)
    assert forbidden.value.response is not None
    assert forbidden.value.response.status_code == 403

    # Bad input: 4xx {code, description}, nothing stored.
    session = _client(url, operator).session
    base = f"{url}/api/ssl/v1"
    type_id = reader.types["web"]["id"]
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "enroll",
            {"orgId": org_id, "csr": "not a CSR", "certType": type_id, "term": 30},
            400,
            "request",
        ),
        ("enroll", {"orgId": org_id, "csr": csr, "certType": 999999, "term": 30}, 400, "certType"),
        ("enroll", {"orgId": org_id, "csr": csr, "certType": type_id, "term": 31}, 400, "term"),
        ("enroll", {"orgId": org_id + 1000, "csr": csr, "certType": type_id, "term": 30}, 400, "orgId"),
        (
            "enroll",
            {"orgId": org_id, "csr": csr, "certType": type_id, "subjAltNames": "evil.example"},
            400,
            "evil.example",
        ),
        ("enroll", {"csr": csr}, 400, "orgId"),
        ("revoke/424242", {"reason": "superseded"}, 404, "424242"),
    ]
    for path, body, status, named in cases:
        answer = session.post(f"{base}/{path}", json=body)
        assert answer.status_code == status, (path, body, answer.text)
        assert set(answer.json()) == {"code", "description"} and answer.json()["code"] < 0
        assert named in answer.json()["description"], answer.text
    assert session.get(f"{base}", params={"bogus": "1"}).status_code == 400
    assert session.get(f"{base}/collect/1/der").status_code == 400
    assert int(session.head(base).headers["X-Total-Count"]) == 0
    assert http.get("/api/v1/certificates", headers=admin.headers).json()["items"] == []
    # The refusals were logged, without the passwords tried or used.
    assert "failed compatible API authentication" in caplog.text
    assert "not-the-password" not in caplog.text and operator.password not in caplog.text


def test_organizations_are_the_backends_plus_the_default(
    runtime: Runtime, app: FastAPI, tmp_path: Path, admin: Caller, operator: Caller
) -> None:
    organizations = [
        {"id": "o-1", "name": "Example Corp", "status": "validated"},
        {"id": "o-2", "name": "Waiting Corp", "status": "pending"},
    ]
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        lab = make_lab(runtime, http, tmp_path, organizations=organizations)
        create_profile(http, admin, lab)
        create_profile(http, admin, lab, name="corp", organization="o-1")
        create_profile(http, admin, lab, name="waiting", organization="Waiting Corp")
        cm = _client(url, operator)
        ssl = SSL(cm)
        found = {o["name"]: o for o in Organization(cm).all()}
        assert list(found) == ["Default Organization", "Example Corp", "Waiting Corp"]
        assert found["Default Organization"]["certTypes"] == [ssl.types["web"]["id"]]
        assert found["Example Corp"]["certTypes"] == [ssl.types["corp"]["id"]]
        assert found["Example Corp"]["validationStatus"] == "VALIDATED"
        assert found["Waiting Corp"]["validationStatus"] == "PENDING"
        # The ids are stable: asked again, the same numbers.
        assert {o["name"]: o["id"] for o in Organization(cm).all()} == {n: o["id"] for n, o in found.items()}
        only_corp = cm.get(f"{url}/api/ssl/v1/types", params={"organizationId": found["Example Corp"]["id"]})
        assert [t["name"] for t in only_corp.json()] == ["corp"]

        csr, _ = make_csr()
        ssl_id = ssl.enroll(cert_type_name="corp", csr=csr, term=30, org_id=found["Example Corp"]["id"])[
            "sslId"
        ]
        lab.work(http)
        assert ssl.get(ssl_id)["orgId"] == found["Example Corp"]["id"]
        assert ssl.count(orgId=found["Example Corp"]["id"]) == 1
        assert ssl.count(orgId=found["Default Organization"]["id"]) == 0
        for org, kind, named in (
            ("Default Organization", "corp", "orgId"),
            ("Waiting Corp", "waiting", "validated"),
        ):
            with pytest.raises(requests.HTTPError) as refused:
                ssl.enroll(cert_type_name=kind, csr=csr, term=30, org_id=found[org]["id"])
            assert refused.value.response is not None
            assert refused.value.response.status_code == 400
            assert named in refused.value.response.json()["description"]


def test_failed_logins_are_throttled_like_the_rest_api(served: Served, operator: Caller) -> None:
    session = _client(served.url, operator).session
    stranger = {"login": "nobody", "password": "guess", "customerUri": CUSTOMER_URI}
    answers = [session.get(f"{served.url}/api/ssl/v1", headers=stranger).status_code for _ in range(11)]
    assert answers == [401] * 10 + [429]
    # The address is throttled: even the right password waits.
    assert session.get(f"{served.url}/api/ssl/v1").status_code == 429
