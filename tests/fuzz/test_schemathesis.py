"""schemathesis against the live manager, over real HTTP: every operation of the published OpenAPI
document, with an admin API key and without one, through the coverage, fuzzing and stateful phases,
with a fixed seed and an example budget so it takes a minute or two. A run fails on any 5xx and on any
answer the document does not describe (status code, content type, body)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.roles import Role
from caconnector.manager.runtime import build_runtime
from caconnector.manager.services.users import create_api_key, create_user
from caconnector.manager.settings import Settings
from tests.manager.live import live_server

SEED = 20240608
MAX_EXAMPLES = 5
MAX_SECONDS = 90  # a time budget per run, on top of the example budget
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
RUN_TIMEOUT_SECONDS = 600
REVOKE_KEY = "revoke_api_key_api_v1_apikeys__key_id__delete"


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, an admin API key) of a manager on a fresh SQLite database."""
    settings = Settings(
        datadir=tmp_path / "manager",
        database_url=f"sqlite:///{tmp_path / 'manager.db'}",
        scheduler_interval_seconds=0.0,
    )
    runtime = build_runtime(settings)
    upgrade(runtime.engine)
    with runtime.sessions.begin() as session:
        user, _ = create_user(session, "admin", Role.ADMIN, runtime.now())
        _, key = create_api_key(session, user, runtime.now())
    with live_server(create_app(settings, runtime=runtime)) as url:
        yield url, key
    runtime.engine.dispose()


@pytest.mark.parametrize("authenticated", [True, False], ids=["admin", "anonymous"])
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    manager: tuple[str, str], authenticated: bool, tmp_path: Path
) -> None:
    url, key = manager
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/api/v1/openapi.json",
        "--url",
        url,  # the document's paths carry /api/v1
        "--phases",
        "coverage,fuzzing,stateful",
        "--checks",
        CHECKS,
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_SECONDS),
        "--workers",
        "1",
        "--no-shrink",
        "--continue-on-failure",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    if authenticated:
        # Revoking API keys is left out of the admin run: key ids are small integers, so the run soon
        # revokes its own key and everything after is 401 and then throttled (its own tests cover it).
        command += ["--header", f"Authorization: Bearer {key}", "--exclude-operation-id", REVOKE_KEY]
    run = subprocess.run(  # our own venv's schemathesis, arguments built here
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
