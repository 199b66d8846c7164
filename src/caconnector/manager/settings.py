"""The manager's settings: one object, built once, handed to `create_app` and the CLI (no globals)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def default_datadir() -> Path:
    if env := os.environ.get("CA_MANAGER_HOME"):
        return Path(env).expanduser()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/ca-manager")
    return Path.home() / ".local" / "share" / "ca-manager"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    datadir: Path = Field(default_factory=default_datadir)
    database_url: str | None = Field(
        default_factory=lambda: os.environ.get("CA_MANAGER_DATABASE_URL"),
        description="SQLAlchemy URL; SQLite in the data directory when unset",
    )
    public_url: str = Field(default="http://127.0.0.1:8443", description="how connectors reach this manager")
    token_ttl_seconds: float = Field(default=24 * 3600, description="installation tokens expire after this")
    poll_wait_seconds: float = Field(default=30.0, description="how long a long poll waits for a job")
    heartbeat_grace_seconds: float = Field(
        default=15.0, description="a connector is Connected until its last poll's wait plus this has passed"
    )
    connector_expiry_seconds: float = Field(
        default=30 * 24 * 3600, description="not seen for longer: Expired, refused until restored"
    )
    lease_seconds: float = Field(default=120.0, description="a delivered job is redelivered after this")
    inventory_interval_seconds: float = Field(default=600.0)
    scheduler_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="how often due collects and retries are looked for; 0 turns the scheduler off",
    )
    retry_base_seconds: float = Field(
        default=5.0, gt=0, description="the first retry's delay; each later one doubles, up to 15 minutes"
    )
    retry_max_attempts: int = Field(
        default=10, ge=1, description="a request fails after this many retryable errors in a row"
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="a job delivered this many times without an answer (its connector keeps stopping on "
        "it) is given up with the error `undeliverable` instead of being redelivered forever",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then CA_MANAGER_<FIELD> environment variables (e.g. CA_MANAGER_POLL_WAIT_SECONDS),
        then explicit overrides (command-line options): the order an operator expects."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(f"CA_MANAGER_{name.upper()}")
            if raw is not None:
                values[name] = raw
        if "CA_MANAGER_HOME" in env:
            values["datadir"] = env["CA_MANAGER_HOME"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.datadir / 'manager.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")
