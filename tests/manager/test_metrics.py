"""/metrics: the Prometheus text format, read back with prometheus_client's own parser. Requests are
counted by route template (never the raw path), a scrape needs a key that can read, the database's
figures (jobs, queue depth, connectors, certificates) and the parked long polls are what the tables and
the wake-ups hold."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from tests.manager.conftest import Caller, FakeClock
from tests.manager.connector_support import (
    PollInBackground,
    add_connector,
    add_job,
    assert_problem,
    registered,
    status_of,
    wait_until_parked,
)
from tests.manager.live import live_server

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.db.models import Certificate, Job
from caconnector.manager.metrics.exposition import CONTENT_TYPE, Family, render
from caconnector.manager.metrics.middleware import MetricsMiddleware
from caconnector.manager.metrics.requests import UNMATCHED, RequestMetrics
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.settings import Settings

CERTIFICATE_ROUTE = "/api/v1/certificates/{certificate_id}"
LONG_WAIT = 10.0


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """conftest's, with a poll wait long enough for a poll to be seen parked."""
    return Settings(
        datadir=tmp_path / "manager-data",
        database_url=database_url,
        poll_wait_seconds=30.0,
        scheduler_interval_seconds=0.0,
    )


def scrape(client: httpx.Client, caller: Caller | None = None) -> dict[str, Metric]:
    response = client.get("/metrics", headers=caller.headers if caller else {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, Metric], family: str, sample: str | None = None, **labels: str) -> float:
    """The one sample of `family` named `sample` (default the family's name) with exactly `labels`."""
    wanted = sample or family
    found = [s.value for s in families[family].samples if s.name == wanted and s.labels == labels]
    assert len(found) == 1, (wanted, labels, families[family].samples)
    return float(found[0])


def requests(families: dict[str, Metric], route: str, method: str, status: str) -> float:
    # The parser names a counter's family without its `_total`.
    total = "ca_manager_http_requests_total"
    return value(families, "ca_manager_http_requests", total, route=route, method=method, status=status)


def test_requests_are_counted_by_route_template_method_and_status(
    client: TestClient, auditor: Caller
) -> None:
    assert client.get("/api/v1/connectors", headers=auditor.headers).status_code == 200
    for certificate_id in ("no-such-certificate", "nor-this-one"):
        assert (
            client.get(f"/api/v1/certificates/{certificate_id}", headers=auditor.headers).status_code == 404
        )
    assert client.get("/no/such/path/s3cr3t-in-path").status_code == 404
    # Refused by the HTTP guard before the router is reached: still counted under its route.
    assert client.post("/api/v1/connectors", json={"name": "x"}).status_code == 401

    families = scrape(client, auditor)

    assert requests(families, route="/api/v1/connectors", method="GET", status="200") == 1
    assert requests(families, route=CERTIFICATE_ROUTE, method="GET", status="404") == 2
    assert requests(families, route=UNMATCHED, method="GET", status="404") == 1
    assert requests(families, route="/api/v1/connectors", method="POST", status="401") == 1
    latency = "ca_manager_http_request_duration_seconds"
    assert families[latency].type == "histogram"
    count = value(families, latency, f"{latency}_count", route=CERTIFICATE_ROUTE, method="GET")
    assert count == 2
    assert (
        value(families, latency, f"{latency}_bucket", route=CERTIFICATE_ROUTE, method="GET", le="+Inf") == 2
    )
    assert value(families, latency, f"{latency}_sum", route=CERTIFICATE_ROUTE, method="GET") > 0
    # The second scrape counts the first.
    again = scrape(client, auditor)
    assert requests(again, route="/metrics", method="GET", status="200") == 1

    text = client.get("/metrics", headers=auditor.headers).text
    for raw in ("no-such-certificate", "nor-this-one", "s3cr3t-in-path", "/no/such/path"):
        assert raw not in text


def test_a_scrape_needs_a_key_that_can_read(client: TestClient, auditor: Caller) -> None:
    anonymous = client.get("/metrics")
    assert_problem(anonymous, 401, "unauthenticated", "Authorization: Bearer")
    assert anonymous.headers["cache-control"] == "no-store"
    unknown = client.get("/metrics", headers={"Authorization": "Bearer cak_000000000000_nope"})
    assert_problem(unknown, 401, "unauthenticated", "unknown or revoked")
    assert "ca_manager_http_requests" in scrape(client, auditor)  # an auditor reads: enough


def test_failed_scrapes_are_throttled_like_the_api(client: TestClient, settings: Settings) -> None:
    for _ in range(settings.auth_failure_burst):
        assert client.get("/metrics").status_code == 401
    assert_problem(client.get("/metrics"), 429, "throttled")


def test_the_api_key_never_appears_in_the_output(client: TestClient, admin: Caller) -> None:
    client.get("/api/v1/connectors", headers=admin.headers)
    client.get(f"/api/v1/certificates/{admin.api_key}", headers=admin.headers)
    client.get(f"/api/v1/connectors?key={admin.api_key}", headers=admin.headers)
    client.get(f"/{admin.api_key}")
    text = client.get("/metrics", headers=admin.headers).text
    assert "ca_manager_http_requests_total" in text
    assert admin.api_key not in text
    secret = admin.api_key.removeprefix("cak_").partition("_")[2]
    assert secret
    assert secret not in text  # not even its secret half


def _add_certificate(runtime: Runtime, status: str, not_after: dt.datetime | None = None) -> None:
    now = runtime.now()
    with runtime.sessions.begin() as session:
        session.add(
            Certificate(
                status=status,
                source="enroll",
                subject="CN=www.example.test",
                key_type="ec-p256",
                not_after=not_after,
                created_at=now,
                updated_at=now,
            )
        )


def test_jobs_queue_connectors_and_certificates_are_counted(
    client: TestClient, runtime: Runtime, auditor: Caller
) -> None:
    connector = registered(runtime, client)
    add_connector(runtime, "dc2")  # Pending: never registered
    done = add_job(runtime, connector)
    add_job(runtime, connector)
    with runtime.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == done).values(status="done", outcome="error"))
    now = runtime.now()
    _add_certificate(runtime, "Issued", now + dt.timedelta(days=30))
    _add_certificate(runtime, "Issued", now - dt.timedelta(days=1))  # Expired, as the API shows it
    _add_certificate(runtime, "Failed")

    families = scrape(client, auditor)

    assert value(families, "ca_manager_database_up") == 1
    assert value(families, "ca_manager_jobs", kind="check", status="queued", outcome="none") == 1
    assert value(families, "ca_manager_jobs", kind="check", status="done", outcome="error") == 1
    assert value(families, "ca_manager_job_queue_depth", kind="check") == 1
    assert value(families, "ca_manager_job_queue_depth", kind="enroll") == 0
    registered_status = status_of(runtime, connector.connector_id).value
    assert value(families, "ca_manager_connectors", status=registered_status) == 1
    assert value(families, "ca_manager_connectors", status="Pending") == 1
    assert sum(s.value for s in families["ca_manager_connectors"].samples) == 2
    for status, count in {"Issued": 1, "Expired": 1, "Failed": 1, "Requested": 0, "Revoked": 0}.items():
        assert value(families, "ca_manager_certificates", status=status) == count
    # The process's own figures, from /proc on this (Linux) machine.
    assert value(families, "process_resident_memory_bytes") > 0
    assert value(families, "process_open_fds") > 0
    assert value(families, "process_cpu_seconds", "process_cpu_seconds_total") > 0
    start = value(families, "process_start_time_seconds")
    assert dt.datetime.now(dt.UTC).timestamp() - 7 * 86400 < start <= dt.datetime.now(dt.UTC).timestamp()


def test_metrics_public_serves_without_a_key(settings: Settings, clock: FakeClock) -> None:
    public = settings.model_copy(update={"metrics_public": True})
    runtime = build_runtime(public, clock)
    upgrade(runtime.engine)
    try:
        with TestClient(create_app(public, runtime=runtime)) as client:
            assert "ca_manager_connectors" in scrape(client)
    finally:
        runtime.engine.dispose()


def test_an_unreadable_database_still_gives_the_other_figures(tmp_path: Path) -> None:
    # A database never migrated: its tables are missing, so the database's figures cannot be read.
    broken = Settings(
        datadir=tmp_path / "broken",
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        scheduler_interval_seconds=0.0,
        metrics_public=True,
    )
    runtime = build_runtime(broken)
    try:
        with TestClient(create_app(broken, runtime=runtime)) as client:
            families = scrape(client)
    finally:
        runtime.engine.dispose()
    assert value(families, "ca_manager_database_up") == 0
    assert "ca_manager_jobs" not in families
    assert "process_cpu_seconds" in families
    assert "ca_manager_parked_long_polls" in families


def test_metrics_public_is_read_from_the_environment() -> None:
    assert Settings.from_env({"CA_MANAGER_METRICS_PUBLIC": "true"}).metrics_public is True
    assert Settings.from_env({}).metrics_public is False


def test_a_parked_long_poll_is_counted(app: FastAPI, runtime: Runtime, auditor: Caller) -> None:
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as server:
        connector = registered(runtime, server)
        poll = PollInBackground(connector, server, LONG_WAIT)
        wait_until_parked(runtime, connector)
        assert value(scrape(server, auditor), "ca_manager_parked_long_polls") == 1
        add_job(runtime, connector)  # releases the poll
        assert poll.result()["jobs"]
        assert value(scrape(server, auditor), "ca_manager_parked_long_polls") == 0


# ---- the pieces, without an app ----------------------------------------------------------------------


def test_label_values_and_help_are_escaped_as_the_format_says() -> None:
    tricky = 'a\\b"c\nd'
    family = Family("escaped_total", "counter", "help with a \\ and a\nnewline")
    family.add(3, route=tricky)
    parsed = list(text_string_to_metric_families(render([family]).decode()))
    assert [(s.labels, s.value) for s in parsed[0].samples] == [({"route": tricky}, 3)]
    assert parsed[0].documentation == "help with a \\ and a\nnewline"


def test_an_exception_is_counted_as_500_and_an_odd_method_as_other() -> None:
    app = FastAPI()

    @app.get("/boom/{n}")
    def boom(n: str) -> None:
        raise RuntimeError(n)

    @app.api_route("/any", methods=["BREW"])
    def brew() -> dict[str, str]:
        return {}

    metrics = RequestMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics, router=app.router)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom/1").status_code == 500
        assert client.request("BREW", "/any").status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(render(metrics.families()).decode())}
    total = "ca_manager_http_requests_total"
    assert (
        value(families, "ca_manager_http_requests", total, route="/boom/{n}", method="GET", status="500") == 1
    )
    assert value(families, "ca_manager_http_requests", total, route="/any", method="other", status="200") == 1


def test_the_group_commits_figures_count_a_connectors_signed_requests(
    runtime: Runtime, client: TestClient, auditor: Caller
) -> None:
    before = scrape(client, auditor)
    connector = registered(runtime, client)
    for _ in range(3):
        assert connector.hello(client).status_code == 200
    after = scrape(client, auditor)
    # Each signed request's replay check and last_seen is a unit of the group commit.
    units = value(after, "ca_manager_write_units", "ca_manager_write_units_total")
    assert units - value(before, "ca_manager_write_units", "ca_manager_write_units_total") >= 3
    assert value(after, "ca_manager_write_batches", "ca_manager_write_batches_total") <= units
    assert value(after, "ca_manager_write_queue") == 0
