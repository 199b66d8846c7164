"""Migrations 0002 and 0003 on SQLite (batch mode) and PostgreSQL: they upgrade a 0001 database that
holds data without losing any, leave the schema the models describe, and downgrade again."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from tests.manager.conftest import POSTGRES_ADMIN_URL

from caconnector.manager.db.engine import MIGRATIONS_DIR, make_engine
from caconnector.manager.db.migrate import current_revision, upgrade
from caconnector.manager.db.models import Base
from caconnector.manager.settings import Settings

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).isoformat()
HEAD = "0006"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of its own (the shared test database is already at head)."""
    if request.param == "sqlite":
        # The manager's own engine: foreign keys on, so a table rebuild that cascaded would show.
        engine = make_engine(Settings(datadir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.db'}"))
        yield engine
        engine.dispose()
        return
    name = f"cam_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _config(connection: object) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _seed_0001(engine: Engine) -> None:
    """A connector with a backend, a CA and a job, as 0001 stores them."""
    with engine.begin() as c:
        c.execute(
            text("INSERT INTO connectors (id, name, comments, created_at) VALUES ('c1', 'dc1', '', :now)"),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO backends (id, connector_id, local_name, name, type, reported_status, templates,"
                " organizations, disabled, present, reported_at)"
                " VALUES ('b1', 'c1', 'lab', 'lab', 'local', 'Available', '[]', '[]', false, true, :now)"
            ),
            {"now": NOW},
        )
        c.execute(
            text(
                "INSERT INTO cas (id, backend_id, ca_ref, name, subject, key_type, serial, state)"
                " VALUES ('ca1', 'b1', '1f', 'Lab CA', 'CN=Lab CA', 'ec-p256', '1f', 'active')"
            )
        )
        c.execute(
            text(
                "INSERT INTO jobs (id, connector_id, kind, payload, status, attempts, created_at)"
                " VALUES ('j1', 'c1', 'check', '{}', 'queued', 0, :now)"
            ),
            {"now": NOW},
        )


def test_migrations_upgrade_a_0001_database_with_data_and_downgrade(empty: Engine) -> None:
    upgrade(empty, "0001")
    _seed_0001(empty)

    upgrade(empty)
    assert current_revision(empty) == HEAD
    with empty.connect() as c:
        assert c.execute(text("SELECT id, certificate_id FROM jobs")).all() == [("j1", None)]
        # 0003: a backend reported before products were reported apart from templates has none yet.
        [(products,)] = c.execute(text("SELECT products FROM backends")).all()
        assert products in ("[]", [])
        assert c.execute(text("SELECT id, crl_der FROM cas")).all() == [("ca1", None)]
        assert c.execute(text("SELECT count(*) FROM backends")).scalar() == 1
        differences = compare_metadata(
            MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []
    inspector = inspect(empty)
    [to_certificates] = [
        fk for fk in inspector.get_foreign_keys("jobs") if fk["referred_table"] == "certificates"
    ]
    assert to_certificates["constrained_columns"] == ["certificate_id"]
    assert to_certificates["options"].get("ondelete") == "SET NULL"
    unique = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("certificates")}
    assert ("ca_id", "serial") in unique

    with empty.begin() as c:
        command.downgrade(_config(c), "0001")
    assert current_revision(empty) == "0001"
    tables = set(inspect(empty).get_table_names())
    assert not {"profiles", "certificates"} & tables
    with empty.connect() as c:
        assert c.execute(text("SELECT id FROM jobs")).all() == [("j1",)]
        assert c.execute(text("SELECT id FROM cas")).all() == [("ca1",)]
