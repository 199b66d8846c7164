"""The manager's database: models, engine and session, Alembic migrations."""
