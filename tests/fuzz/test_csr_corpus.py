"""5,000 malformed and hostile CSRs (tests/fuzz/mutations.py, fixed seed) posted to enroll and renew.

The manager runs in-process on SQLite (as in tests/manager), its connector answered by the lab: the real
local CA behind the job runner's steps. Every answer must be a 4xx problem document or an acceptance;
a refused request must leave no row behind; every certificate the CA issues must be pkilint-clean.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from caconnector.manager.db.models import Certificate, Job
from caconnector.manager.runtime import Runtime
from tests.fuzz.mutations import Forge, Mutant, corpus, host_request, name
from tests.integration.test_local_pkilint import assert_clean, lint_certificate, lint_issuer_and_subject
from tests.manager import conftest as manager
from tests.manager.conftest import Caller
from tests.manager.lifecycle_support import API, Lab, certificate, count, create_profile, enroll, make_lab

# About 17 ms of CPU per request and a second or two per issued certificate's lint: some two minutes on
# a core of its own; the timeout leaves room for a machine shared with other jobs.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = 8  # issue 8
COUNT = 5000
RENEW_EVERY = 10  # every tenth mutant is also sent as the new CSR of a renewal


# The manager's fixtures (tests/manager/conftest.py), on the one database this module overrides below.
settings, runtime, app, client, clock = (
    manager.settings,
    manager.runtime,
    manager.app,
    manager.client,
    manager.clock,
)
admin, operator = manager.admin, manager.operator


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # One database is enough here: what is under test is the CSR path, not the SQL dialect.
    return f"sqlite:///{tmp_path / 'manager.db'}"


def _accepted_or_problem(response: httpx.Response, mutant: Mutant, what: str) -> str | None:
    """The new certificate's id when accepted; None after checking the answer is a 4xx problem."""
    context = f"{what} of a {mutant.kind} mutant answered {response.status_code}: {response.text[:300]}"
    if response.status_code in {201, 202}:
        certificate_id: str = response.json()["id"]
        return certificate_id
    assert 400 <= response.status_code < 500, context
    assert response.headers["content-type"] == "application/problem+json", context
    problem = response.json()
    assert problem["status"] == response.status_code, context
    assert isinstance(problem.get("detail"), str), context
    assert problem["detail"], context
    return None


def _work_until_idle(client: TestClient, lab: Lab) -> None:
    while lab.work(client):
        pass


def _issued_certificate(client: TestClient, caller: Caller, certificate_id: str) -> x509.Certificate | None:
    view = certificate(client, caller, certificate_id)
    assert view["status"] in {"Issued", "Failed"}, view
    if view["status"] == "Failed":
        assert view["error"], view  # the CA said why; a refusal is fine, a silent one is not
        return None
    download = client.get(f"{API}/certificates/{certificate_id}/download", headers=caller.headers)
    assert download.status_code == 200, download.text
    return x509.load_pem_x509_certificate(download.content)


def test_malformed_csrs_get_problems_store_nothing_and_issue_only_clean_certificates(
    client: TestClient, runtime: Runtime, admin: Caller, operator: Caller, tmp_path: Path
) -> None:
    lab = make_lab(runtime, client, tmp_path)
    create_profile(client, admin, lab)
    forge = Forge()
    first = enroll(client, operator, host_request(forge, name()))
    assert first.status_code == 202, first.text
    _work_until_idle(client, lab)
    renewed_from = first.json()["id"]
    assert certificate(client, operator, renewed_from)["status"] == "Issued"

    accepted: list[tuple[str, str]] = []
    outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
    for index, mutant in enumerate(corpus(SEED, COUNT, forge)):
        posts: list[tuple[str, httpx.Response]] = [("enroll", enroll(client, operator, mutant.csr))]
        if index % RENEW_EVERY == 0:
            body: dict[str, Any] = {"csr": mutant.csr}
            url = f"{API}/certificates/{renewed_from}/renew"
            posts.append(("renew", client.post(url, json=body, headers=operator.headers)))
        for what, response in posts:
            certificate_id = _accepted_or_problem(response, mutant, what)
            outcomes[mutant.kind, "accepted" if certificate_id else str(response.status_code)] += 1
            if certificate_id is not None:
                accepted.append((mutant.kind, certificate_id))
    print(sorted(outcomes.items()))

    # Nothing but the first certificate and the accepted requests is stored: no row for a refusal.
    assert count(runtime, Certificate) == 1 + len(accepted)
    assert count(runtime, Job) == 1 + len(accepted)
    refused = sum(n for (_, outcome), n in outcomes.items() if outcome != "accepted")
    assert refused > COUNT * 0.9, outcomes  # the corpus must mostly be refusals, or it tests little

    _work_until_idle(client, lab)
    issued = 0
    for kind, certificate_id in accepted:
        leaf = _issued_certificate(client, operator, certificate_id)
        if leaf is None:
            continue
        issued += 1
        assert_clean(f"certificate from a {kind} mutant", lint_certificate(leaf))
        assert_clean(f"{kind} certificate with its issuer", lint_issuer_and_subject(lab.ca.certificate, leaf))
    assert issued > 0, "no mutant reached the CA, so its subject policy went untested"
