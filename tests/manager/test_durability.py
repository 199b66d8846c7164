"""What a commit waits for (`durability`, issue 18): `full` by default, `normal` on request, on SQLite and
PostgreSQL alike; docs/architecture.md section 5 says what each can lose."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from caconnector.manager.db.engine import make_engine
from caconnector.manager.settings import Settings

# What each database reports for the setting each durability asks for.
_EXPECTED = {
    ("sqlite", "normal"): "1",  # PRAGMA synchronous: 1 = NORMAL, 2 = FULL
    ("sqlite", "full"): "2",
    ("postgresql", "normal"): "off",
    ("postgresql", "full"): "on",
}


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_each_connection_commits_as_the_setting_says(
    database_url: str, tmp_path: Path, durability: str
) -> None:
    settings = Settings(datadir=tmp_path, database_url=database_url, durability=durability)  # type: ignore[arg-type]
    engine = make_engine(settings)
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    query = "PRAGMA synchronous" if kind == "sqlite" else "SHOW synchronous_commit"
    try:
        with engine.connect() as connection:
            assert str(connection.execute(text(query)).scalar_one()) == _EXPECTED[(kind, durability)]
    finally:
        engine.dispose()


def test_full_is_the_default_and_the_environment_can_change_it() -> None:
    assert Settings().durability == "full"
    assert Settings.from_env({"CA_MANAGER_DURABILITY": "normal"}).durability == "normal"
