"""What some CAs answer beyond a certificate, carried from the connector to the REST API: products
(DigiCert, Entrust) reported apart from templates, a revocation the CA only took as a request (DigiCert
answers 201), a suggested renewal window (ACME Renewal Information), and the product and organization
a profile names reaching the enroll job."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.manager.conftest import Caller
from tests.manager.lifecycle_support import (
    API,
    Lab,
    certificate,
    create_profile,
    enroll,
    make_csr,
    make_lab,
    ok,
)

from caconnector.manager.runtime import Runtime
from caconnector.protocol.messages import EnrollPayload


@pytest.fixture
def lab(runtime: Runtime, client: TestClient, tmp_path: Path) -> Lab:
    return make_lab(runtime, client, tmp_path)


def _issue(client: TestClient, caller: Caller, lab: Lab, answer: Any = None) -> dict[str, Any]:
    response = enroll(client, caller, make_csr()[0])
    assert response.status_code == 202, response.text
    lab.work(client, answer)
    view = certificate(client, caller, response.json()["id"])
    assert view["status"] == "Issued", view
    return view


def test_products_are_reported_apart_from_templates(client: TestClient, admin: Caller, lab: Lab) -> None:
    products = [{"id": "ssl_plus", "name": "Standard SSL", "type": "ssl_certificate", "ca_ids": []}]
    lab.report(client, products=products)
    view = client.get(f"{API}/backends/{lab.backend_id}", headers=admin.headers).json()
    assert view["products"] == products
    assert view["templates"] == ["server", "client"]


def test_a_profiles_product_and_organization_reach_the_enroll_job(
    client: TestClient, admin: Caller, operator: Caller, lab: Lab
) -> None:
    lab.report(client, organizations=[{"id": "112233", "name": "Example Corp", "status": "validated"}])
    create_profile(client, admin, lab, product="ssl_plus", organization="Example Corp")
    assert enroll(client, operator, make_csr()[0]).status_code == 202
    [job] = lab.take(client)
    payload = EnrollPayload.model_validate(job["payload"])
    assert (payload.product, payload.organization, payload.template) == ("ssl_plus", "Example Corp", None)


def test_a_revocation_the_ca_holds_as_a_request_leaves_the_certificate_issued(
    client: TestClient, admin: Caller, operator: Caller, lab: Lab
) -> None:
    create_profile(client, admin, lab)
    issued = _issue(client, operator, lab)
    url = f"{API}/certificates/{issued['id']}/revoke"
    assert client.post(url, json={"reason": "superseded"}, headers=operator.headers).status_code == 202
    lab.work(client, lambda job: ok(job["id"], {"requested": "the revocation request awaits approval"}))

    view = certificate(client, operator, issued["id"])
    assert view["status"] == "Issued"
    assert view["revoked_at"] is None
    assert view["error"]["code"] == "revocation_requested"
    assert "awaits approval" in view["error"]["message"]
    # Not stuck: the revocation can be asked for again, and a CA that then revokes is believed.
    assert client.post(url, json={"reason": "superseded"}, headers=operator.headers).status_code == 202
    lab.work(client)
    assert certificate(client, operator, issued["id"])["status"] == "Revoked"


def test_the_cas_suggested_renewal_window_is_shown_with_the_certificate(
    client: TestClient, admin: Caller, operator: Caller, lab: Lab
) -> None:
    create_profile(client, admin, lab)
    start = dt.datetime(2027, 1, 10, tzinfo=dt.UTC)
    window = {
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + dt.timedelta(days=2)).isoformat().replace("+00:00", "Z"),
        "explanation_url": "https://ca.example.test/why",
    }

    def with_window(job: dict[str, Any]) -> dict[str, Any]:
        answer = lab.answer(job)
        answer["result"]["renewal_window"] = window
        return answer

    view = _issue(client, operator, lab, with_window)
    assert view["renewal_window"] == window
