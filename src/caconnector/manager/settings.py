"""The manager's settings: one object, built once, handed to `create_app` and the CLI (no globals)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

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
    downloads_dir: Path | None = Field(
        default=None,
        description="where the connector packages served at /downloads are (default <datadir>/downloads)",
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
    # Throughput (issue 18): what a commit waits for; docs/architecture.md, section 5, says what each loses.
    # `full` by default: an enrollment the manager answered must survive a power cut ("never lose a request");
    # `normal` trades the last moments' commits on a power cut for fewer flushes, where an operator says so.
    durability: Literal["normal", "full"] = Field(
        default="full",
        description="normal: a commit is safe from a manager crash, and a power cut can undo the last "
        "moments' commits (SQLite synchronous=NORMAL in WAL, PostgreSQL synchronous_commit=off); full: "
        "every commit is flushed to disk before it returns",
    )
    # Measured (bench/README.md): on SQLite, whose writers take turns at one lock anyway, batching the
    # hot writes saves lock hand-overs and flushes; on PostgreSQL, which runs concurrent transactions in
    # parallel and already flushes concurrent commits together, one batch at a time was slower.
    group_commit_max: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="the most requests' writes one group commit takes in one transaction "
        "(manager/db/group_commit.py); 0: every request commits on its own; unset: 64 on SQLite, 0 on "
        "PostgreSQL",
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        description="a job delivered this many times without an answer (its connector keeps stopping on "
        "it) is given up with the error `undeliverable` instead of being redelivered forever",
    )

    # The HTTP layer (manager/http_guard.py, manager/serve.py): what a client that is not playing by the
    # rules can make the server hold, and for how long.
    api_max_body_bytes: int = Field(
        default=1024 * 1024, ge=1, description="a REST API request body larger than this is refused (413)"
    )
    channel_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1,
        description="a connector channel request body (poll results, inventory) larger than this is refused",
    )
    register_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="the unauthenticated registration's body limit (a public key, a token, a hostname)",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a connection that has not sent a request's headers by then is closed"
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="a request whose body has not arrived in full by then is answered 408"
    )
    keepalive_timeout_seconds: int = Field(
        default=5, ge=1, description="an idle keep-alive connection is closed after this"
    )
    max_connections: int = Field(
        default=2048,
        ge=2,
        description="open connections and requests in progress beyond this are answered 503 by the server",
    )
    max_api_requests: int = Field(
        default=64, ge=1, description="REST API requests in progress at once; more are answered 503"
    )
    max_channel_requests: int = Field(
        default=1024,
        ge=1,
        description="connector channel requests in progress at once, parked long polls included; kept "
        "apart from the API's so many connectors cannot starve the API",
    )
    auth_failure_burst: int = Field(
        default=10, ge=1, description="failed authentications a client address may make in a row before 429"
    )
    auth_failure_refill_seconds: float = Field(
        default=6.0, gt=0, description="a throttled address earns one more attempt per this many seconds"
    )
    auth_log_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="failed authentications are logged once per address per interval, then summed up",
    )

    # The commercial manager's REST API (manager/compat/): what its clients send and see.
    compat_customer_uri: str = Field(
        default="ca-manager",
        min_length=1,
        description="the customerUri (the client's login_uri) the compatible REST API accepts",
    )
    compat_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA certificate(s): `serve` with TLS asks clients for a certificate issued by them, "
        "and the compatible REST API logs in the user named by its common name (cert_auth=True)",
    )
    compat_default_organization: str = Field(
        default="Default Organization",
        min_length=1,
        description="the name of the organization standing for backends whose CA reports none",
    )

    # The ACME server (manager/acme/): nonces, per-account limits, and how it reaches the names it validates.
    acme_nonce_ttl_seconds: float = Field(default=3600.0, gt=0, description="an unused ACME nonce expires")
    acme_order_ttl_seconds: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="an ACME order and its authorizations expire after this"
    )
    acme_orders_per_hour: int = Field(
        default=300, ge=1, description="new orders an ACME account may place per hour; more are rateLimited"
    )
    acme_http01_port: int = Field(
        default=80, ge=1, le=65535, description="the port http-01 challenges are fetched from"
    )
    acme_dns_resolver: str | None = Field(
        default=None,
        description="the DNS server (ADDRESS or ADDRESS:PORT) dns-01 and http-01 look names up with; "
        "default the system's",
    )
    acme_hosts: str = Field(
        default="",
        description="NAME=ADDRESS pairs, comma-separated, that http-01 uses instead of DNS (a test host map)",
    )
    acme_validation_timeout_seconds: float = Field(
        default=10.0, gt=0, description="how long one http-01 fetch or dns-01 lookup may take"
    )

    # /metrics (manager/metrics/): needs a reading API key unless the network it is served on is trusted.
    metrics_public: bool = Field(
        default=False,
        description="serve /metrics without an API key (route traffic and connector counts become public)",
    )

    # The web UI (manager/ui/): a signed-in browser session ends after this long without a request.
    ui_session_idle_seconds: float = Field(
        default=30 * 60, gt=0, description="a web UI session unused for this long must sign in again"
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
