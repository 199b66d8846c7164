"""Hostile input on the REST API and the connector channel: malformed text, forged claims, foreign
protocol versions, certificates that are not CAs', floods of results. Each is a 4xx problem naming what is
wrong (or is handled), never a 5xx; run on SQLite and PostgreSQL (which refuses NUL and lone surrogates
that SQLite would store)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from tests.manager.conftest import Caller
from tests.manager.connector_support import (
    FakeConnector,
    add_connector,
    add_job,
    assert_problem,
    backend_report,
    ca_report,
    registered,
)

from caconnector.manager.db.models import Job
from caconnector.manager.runtime import Runtime
from caconnector.protocol import messages
from caconnector.protocol.signing import ALGORITHM

API = "/api/v1"
SURROGATE = "\ud800"


def post_raw(
    client: TestClient, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    """JSON with \\u escapes, as a hostile client sends it: httpx's own encoder cannot encode a surrogate."""
    response: httpx.Response = client.post(
        path, content=json.dumps(body), headers={"content-type": "application/json", **(headers or {})}
    )
    return response


def signed_post(client: TestClient, connector: FakeConnector, path: str, body: Any) -> httpx.Response:
    return post_raw(client, path, body, connector.auth("POST", path))


# ---- malformed text ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [SURROGATE, "\x00"])
def test_register_token_with_bad_text_is_422_naming_it(
    client: TestClient, runtime: Runtime, bad: str
) -> None:
    connector = FakeConnector(runtime.clock)
    add_connector(runtime)
    body = {"token": f"cat_{bad}", "public_key": "x", "hostname": "h", "version": "1"}
    assert_problem(post_raw(client, messages.REGISTER_PATH, body), 422, "invalid_request", "token")
    assert connector.connector_id == ""


@pytest.mark.parametrize("bad", [SURROGATE, "nul\x00"])
def test_api_bodies_with_bad_text_are_422_naming_the_field(
    client: TestClient, admin: Caller, bad: str
) -> None:
    answer = post_raw(client, f"{API}/connectors", {"name": "dc1", "comments": bad}, admin.headers)
    assert_problem(answer, 422, "invalid_request", "comments")
    profile = {
        "name": "p",
        "backend": "b",
        "product": bad,
        "organization": bad,
        "terms_days": [1],
        "key_types": ["ec-p256"],
    }
    answer = post_raw(client, f"{API}/profiles", profile, admin.headers)
    assert_problem(answer, 422, "invalid_request", "product", "organization")
    # An unknown field whose name is the bad text: named, escaped, in a document that can be encoded.
    answer = post_raw(client, f"{API}/connectors", {"name": "dc1", bad: 1}, admin.headers)
    assert_problem(answer, 422, "invalid_request")
    assert client.get(f"{API}/connectors", headers=admin.headers).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        f"{API}/connectors/a%00b",
        f"{API}/profiles/a%00b",
        f"{API}/certificates/{'x' * 300}",
        f"{API}/connectors?name=a%00b",
        f"{API}/certificates?serial=%00",
        f"{API}/audit?actor=%1b[31m",
        f"{API}/connectors?cursor=not%20base64",
    ],
)
def test_bad_text_in_paths_and_queries_is_422(client: TestClient, admin: Caller, url: str) -> None:
    assert_problem(client.get(url, headers=admin.headers), 422, "invalid_request")


def test_channel_bodies_with_bad_text_are_422_naming_the_field(client: TestClient, runtime: Runtime) -> None:
    connector = registered(runtime, client)
    inventory = {"hostname": "h", "version": "1", "backends": [backend_report(SURROGATE)]}
    answer = signed_post(client, connector, messages.INVENTORY_PATH, inventory)
    assert_problem(answer, 422, "invalid_request", "backends[0].name")
    inventory = {
        "hostname": "h",
        "version": "1",
        "backends": [backend_report("b", cas=[ca_report("r", name="a\x00")])],
    }
    answer = signed_post(client, connector, messages.INVENTORY_PATH, inventory)
    assert_problem(answer, 422, "invalid_request", "backends[0].cas[0].name")
    for poll, field in [
        ({"results": [{"job_id": SURROGATE, "outcome": "ok"}]}, "results[0].job_id"),
        ({"running": ["\x00"]}, "running[0]"),
        (
            {"results": [{"job_id": "j", "outcome": "ok", "result": {"k": f"v{SURROGATE}"}}]},
            "results[0].result",
        ),
        ({"results": [{"job_id": "j", "outcome": "ok", "result": {"k\x00": 1}}]}, "results[0].result"),
        ({"protocol_version": SURROGATE}, "protocol_version"),
    ]:
        assert_problem(
            signed_post(client, connector, messages.POLL_PATH, poll), 422, "invalid_request", field
        )


# ---- results with wrong types or huge values -----------------------------------------------------------


def test_results_with_wrong_types_or_huge_values_are_refused_or_bounded(
    client: TestClient, runtime: Runtime
) -> None:
    connector = registered(runtime, client)
    for poll, field in [
        ({"results": [{"job_id": 5, "outcome": "ok"}]}, "results[0].job_id"),
        ({"results": [{"job_id": "j" * 10_000, "outcome": "ok"}]}, "results[0].job_id"),
        ({"results": [{"job_id": "j", "outcome": "ok", "result": [1]}]}, "results[0].result"),
        ({"results": [{"job_id": "j", "outcome": "error", "error": {"code": "c", "message": 5}}]}, "message"),
        (
            {
                "results": [
                    {
                        "job_id": "j",
                        "outcome": "error",
                        "error": {"code": "c", "message": "m", "retry_after": 1e300},
                    }
                ]
            },
            "retry_after",
        ),
        ({"results": [{"job_id": "j", "outcome": "ok"}] * 2000}, "results"),
    ]:
        assert_problem(
            signed_post(client, connector, messages.POLL_PATH, poll), 422, "invalid_request", field
        )
    nested: Any = "deep"
    for _ in range(100):
        nested = {"k": nested}
    deep = {"results": [{"job_id": "j", "outcome": "ok", "result": nested}]}
    assert_problem(signed_post(client, connector, messages.POLL_PATH, deep), 422, "invalid_request", "nested")
    not_json = client.post(
        messages.POLL_PATH,
        content=b'{"wait_seconds": NaN}',
        headers={"content-type": "application/json", **connector.auth("POST", messages.POLL_PATH)},
    )
    assert_problem(not_json, 422, "invalid_request", "wait_seconds")

    # A long error message from a real job is kept, clipped: the result is not stuck on its wording.
    job_id = add_job(runtime, connector)
    assert [j["id"] for j in connector.poll(client).json()["jobs"]] == [job_id]
    error = {"code": "rejected", "message": "x" * 100_000 + "\x07", "retryable": False}
    answer = signed_post(
        client,
        connector,
        messages.POLL_PATH,
        {"results": [{"job_id": job_id, "outcome": "error", "error": error}]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["acknowledged"] == [job_id]
    with runtime.sessions.begin() as session:
        stored = session.get(Job, job_id)
        assert stored is not None and stored.error is not None
        assert stored.error["message"] == "x" * 4096


# ---- log flooding ------------------------------------------------------------------------------------


def test_results_for_unknown_jobs_log_one_bounded_line_per_poll(
    client: TestClient, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    connector = registered(runtime, client)
    results = [{"job_id": f"{i:04d}" + "u" * 60, "outcome": "ok"} for i in range(1000)]
    with caplog.at_level(logging.WARNING, logger="caconnector.manager.services.dispatch"):
        answer = connector.poll(client, results=results)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["acknowledged"]) == 1000
    lines = [r.getMessage() for r in caplog.records if r.name == "caconnector.manager.services.dispatch"]
    assert len(lines) == 1, lines
    assert "1000 result(s) for unknown jobs" in lines[0]
    assert len(lines[0]) < 200


# ---- forged claims and foreign versions --------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": "yesterday"},
        {"exp": float("nan")},
        {"iat": 1e20},
        {"exp": -1e20},
        {"htu": ["a"]},
        {"iat": True},
    ],
)
def test_signed_requests_with_malformed_claims_are_401(
    client: TestClient, runtime: Runtime, claims: dict[str, Any]
) -> None:
    connector = registered(runtime, client)
    now = int(runtime.now().timestamp())
    payload = {
        "iss": connector.connector_id,
        "htm": "GET",
        "htu": messages.HELLO_PATH,
        "iat": now,
        "exp": now + 60,
        "jti": "j1",
        **claims,
    }
    token = jwt.encode(payload, connector.key, algorithm=ALGORITHM, headers={"kid": connector.connector_id})
    answer = client.get(messages.HELLO_PATH, headers={"Authorization": f"Bearer {token}"})
    assert_problem(answer, 401, "signature_invalid", next(iter(claims)))


def test_poll_and_inventory_of_another_major_version_are_refused(
    client: TestClient, runtime: Runtime
) -> None:
    connector = registered(runtime, client)
    answer = signed_post(client, connector, messages.POLL_PATH, {"protocol_version": "2.0"})
    assert_problem(answer, 400, "protocol_version", "2.0", "major")
    inventory = {"hostname": "h", "version": "1", "protocol_version": "9.1", "backends": []}
    answer = signed_post(client, connector, messages.INVENTORY_PATH, inventory)
    assert_problem(answer, 400, "protocol_version", "9.1")
    answer = signed_post(
        client, connector, messages.POLL_PATH, {"protocol_version": "1.7", "wait_seconds": 0}
    )
    assert answer.status_code == 200, answer.text  # minors may differ


# ---- CA certificates a connector reports ------------------------------------------------------------


def _certificate(*, ca: bool | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostile CA")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_reported_ca_certificates_must_be_ca_certificates(
    client: TestClient, runtime: Runtime, admin: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    connector = registered(runtime, client)
    good = _certificate(ca=True)
    cas = [
        ca_report("good", certificate_pem="junk before\n" + good),
        ca_report("leaf", certificate_pem=_certificate(ca=False)),
        ca_report("none", certificate_pem=_certificate(ca=None)),
        ca_report(
            "garbage", certificate_pem="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        ),
        ca_report("two", certificate_pem=good + good),
    ]
    with caplog.at_level(logging.WARNING, logger="caconnector.manager.services.inventory"):
        assert connector.inventory(client, [backend_report("LocalCA", cas=cas)]).status_code == 204
    lines = [r.getMessage() for r in caplog.records if r.name == "caconnector.manager.services.inventory"]
    assert len(lines) == 1 and "4 CA certificate(s) not stored" in lines[0], lines

    listed = client.get(f"{API}/cas", headers=admin.headers).json()["items"]
    by_ref = {ca["ref"]: ca["id"] for ca in listed}
    assert set(by_ref) == {"good", "leaf", "none", "garbage", "two"}  # the CAs are kept, without certificates
    served = client.get(f"{API}/cas/{by_ref['good']}/certificate", headers=admin.headers)
    assert served.status_code == 200
    assert served.text == good  # re-encoded: only the certificate, not what came around it
    for ref in ("leaf", "none", "garbage", "two"):
        answer = client.get(f"{API}/cas/{by_ref[ref]}/certificate", headers=admin.headers)
        assert_problem(answer, 404, "no_certificate")
