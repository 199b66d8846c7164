"""Engine and sessions for SQLite (WAL, the embedded default) or PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.settings import Settings


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as 0700: the manager's files hold password hashes, the
    audit log and CSRs. Created that way, not chmod-ed after, so it is never readable by others."""
    previous = os.umask(0o077)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(previous)


def _create_private_file(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does (it would create it 0644). SQLite gives
    the -wal and -shm files it creates next to it the database file's own mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


def make_engine(settings: Settings) -> Engine:
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        private_dir(settings.datadir)
        _create_private_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # What `durability` costs and loses: docs/architecture.md, section 5 (Storage).
        synchronous = "FULL" if settings.durability == "full" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers (the UI, the API) work while a poll writes; foreign keys for cascades.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit is written to the WAL but not fsync'd; the WAL is synced at each
            # checkpoint. A crash of the process loses nothing; a power cut can undo the last commits.
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # synchronous_commit=off: PostgreSQL answers a commit before its WAL record is flushed (the WAL writer
    # flushes within 3 x wal_writer_delay, 600 ms by default). A server crash can lose those commits,
    # never half of one; other sessions see a commit at once, so claims and NOTIFY are unaffected.
    options = {"options": "-c synchronous_commit=off"} if settings.durability == "normal" else {}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=options)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


MIGRATIONS_DIR = Path(__file__).parent / "migrations"
