"""Manager fixtures: a fresh app on a migrated database, run against SQLite and the local PostgreSQL.

PostgreSQL: one database per test session (migrated once), every table emptied before each test.
The URL comes from CA_TEST_POSTGRES_URL, default the machine's server on 127.0.0.1:5432 with trust auth.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from caconnector.manager.app import create_app
from caconnector.manager.db.migrate import upgrade
from caconnector.manager.db.models import Base
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.services.users import create_api_key, create_user
from caconnector.manager.settings import Settings

POSTGRES_ADMIN_URL = os.environ.get(
    "CA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class FakeClock:
    """A clock tests move by hand, so expiry and liveness are tested without sleeping."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.current = start or dt.datetime.now(dt.UTC)
        self.frozen = False

    def __call__(self) -> dt.datetime:
        return self.current if self.frozen else max(self.current, dt.datetime.now(dt.UTC))

    def advance(self, **delta: float) -> None:
        self.current = self() + dt.timedelta(**delta)
        self.frozen = True


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"cam_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'manager.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        datadir=tmp_path / "manager-data",
        database_url=database_url,
        public_url="http://127.0.0.1:8443",
        poll_wait_seconds=2.0,
        heartbeat_grace_seconds=3.0,
        # Tests run the scheduler's rounds themselves (scheduler.run_due), at the FakeClock's times.
        scheduler_interval_seconds=0.0,
    )


@pytest.fixture
def runtime(settings: Settings, clock: FakeClock) -> Iterator[Runtime]:
    runtime = build_runtime(settings, clock)
    upgrade(runtime.engine)  # idempotent on the already-migrated PostgreSQL database
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def app(settings: Settings, runtime: Runtime) -> FastAPI:
    return create_app(settings, runtime=runtime)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@dataclass(frozen=True)
class Caller:
    username: str
    password: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_caller(runtime: Runtime, username: str, role: Role) -> Caller:
    with runtime.sessions.begin() as session:
        user, password = create_user(session, username, role, runtime.now())
        _, key = create_api_key(session, user, runtime.now())
    return Caller(username, password, key)


@pytest.fixture
def admin(runtime: Runtime) -> Caller:
    return make_caller(runtime, "admin", Role.ADMIN)


@pytest.fixture
def operator(runtime: Runtime) -> Caller:
    return make_caller(runtime, "operator", Role.OPERATOR)


@pytest.fixture
def auditor(runtime: Runtime) -> Caller:
    return make_caller(runtime, "auditor", Role.AUDITOR)
