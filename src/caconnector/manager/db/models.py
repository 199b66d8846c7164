"""The manager's tables. Ids are random hex strings (uuid4), timestamps aware UTC.

Status of a connector is derived, not stored: see `services.status`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from caconnector.manager.db.types import UTCDateTime


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | operator | auditor
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)  # the public part, to find the row
    key_hash: Mapped[str] = mapped_column(String(128))  # SHA-256 of the whole key (high entropy: no KDF)
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship(back_populates="api_keys")


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))  # "user:alice", "connector:dc1", "system"
    action: Mapped[str] = mapped_column(String(64))  # "connector.add", "connector.register", ...
    target: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Connector(Base):
    __tablename__ = "connectors"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    comments: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]
    # Installation token: only its hash is authoritative; the sealed copy lets an admin see the unused
    # token again while the connector is Pending, and is wiped once used.
    token_hash: Mapped[str | None] = mapped_column(String(128), unique=True)
    token_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    token_expires_at: Mapped[dt.datetime | None]
    token_used_at: Mapped[dt.datetime | None]
    # Registration.
    public_key_pem: Mapped[str | None] = mapped_column(Text)
    registered_at: Mapped[dt.datetime | None]
    hostname: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(64))
    protocol_version: Mapped[str | None] = mapped_column(String(16))
    # Liveness: last_seen is the last request; connected_until is when it stops counting as Connected
    # (a long poll in progress pushes it past the poll's end; a goodbye pulls it back to now).
    last_seen: Mapped[dt.datetime | None]
    connected_until: Mapped[dt.datetime | None]
    inventory_requested_at: Mapped[dt.datetime | None]

    backends: Mapped[list[ManagedBackend]] = relationship(
        back_populates="connector", cascade="all, delete-orphan"
    )
    jobs: Mapped[list[Job]] = relationship(back_populates="connector", cascade="all, delete-orphan")


class SeenRequest(Base):
    """Signed request ids (JWT jti) seen, kept until they expire, so none can be replayed."""

    __tablename__ = "seen_requests"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector_id: Mapped[str] = mapped_column(String(32))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class ManagedBackend(Base):
    """A backend a connector reported, identified by connector + its local name."""

    __tablename__ = "backends"
    __table_args__ = (UniqueConstraint("connector_id", "local_name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"), index=True)
    local_name: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))  # display name; an admin may rename it
    type: Mapped[str] = mapped_column(String(32))
    reported_status: Mapped[str] = mapped_column(String(16))  # Available | Offline, as last reported
    error: Mapped[str | None] = mapped_column(Text)
    templates: Mapped[list[Any]] = mapped_column(default=list)
    products: Mapped[list[Any]] = mapped_column(default=list)  # {id, name, type, ca_ids}
    organizations: Mapped[list[Any]] = mapped_column(default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    present: Mapped[bool] = mapped_column(
        Boolean, default=True
    )  # false once the connector stops reporting it
    reported_at: Mapped[dt.datetime]
    checked_at: Mapped[dt.datetime | None]

    connector: Mapped[Connector] = relationship(back_populates="backends")
    cas: Mapped[list[ManagedCA]] = relationship(back_populates="backend", cascade="all, delete-orphan")


class ManagedCA(Base):
    __tablename__ = "cas"
    __table_args__ = (UniqueConstraint("backend_id", "ca_ref"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    backend_id: Mapped[str] = mapped_column(ForeignKey("backends.id", ondelete="CASCADE"), index=True)
    ca_ref: Mapped[str] = mapped_column(String(255))  # the backend's own id for the CA
    name: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str] = mapped_column(Text)
    key_type: Mapped[str] = mapped_column(String(32))
    serial: Mapped[str] = mapped_column(String(64))
    not_after: Mapped[dt.datetime | None]
    state: Mapped[str] = mapped_column(String(32))
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    # The latest CRL the backend published (DER), from an inventory or a revocation's result.
    crl_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    crl_updated_at: Mapped[dt.datetime | None]

    backend: Mapped[ManagedBackend] = relationship(back_populates="cas")


class Job(Base):
    """A unit of work for one connector. Delivered at least once: a lease that runs out redelivers it."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    connector_id: Mapped[str] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    backend_name: Mapped[str | None] = mapped_column(String(128))  # the connector-local backend name
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued | leased | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    delivered_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # ok | pending | error
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    # The certificate an enroll, collect or revoke job works for: its result is applied to it.
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), index=True
    )

    connector: Mapped[Connector] = relationship(back_populates="jobs")


class Profile(Base):
    """What may be requested through a backend: its CA, template or product, key types and terms."""

    __tablename__ = "profiles"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    # A profile cannot outlive its backend (deleting a connector deletes its backends); the certificates
    # requested through it stay, their profile_id set to NULL.
    backend_id: Mapped[str] = mapped_column(ForeignKey("backends.id", ondelete="CASCADE"), index=True)
    # NULL: the backend's only CA, looked up at each request.
    ca_id: Mapped[str | None] = mapped_column(ForeignKey("cas.id", ondelete="CASCADE"), index=True)
    template: Mapped[str | None] = mapped_column(String(200))
    product: Mapped[str | None] = mapped_column(String(200))
    organization: Mapped[str | None] = mapped_column(String(200))
    cert_type: Mapped[str] = mapped_column(String(16))  # server | client
    terms_days: Mapped[list[Any]] = mapped_column(default=list)  # allowed terms; the first is the default
    key_types: Mapped[list[Any]] = mapped_column(default=list)  # pki.keys names: ec-p256, rsa-2048, ...
    created_at: Mapped[dt.datetime]

    backend: Mapped[ManagedBackend] = relationship()
    ca: Mapped[ManagedCA | None] = relationship()


class Certificate(Base):
    """One request's lifecycle (source `enroll`), or a certificate a scan found at the CA (`scan`).

    Stored status: Requested | Pending | Issued | Failed | Revoked. `Expired` is derived when read,
    from not_after, so no job has to sweep the table. (ca_id, serial) is unique: the key that keeps a
    scan from importing a certificate twice, or one the manager issued itself.
    """

    __tablename__ = "certificates"
    __table_args__ = (
        UniqueConstraint("ca_id", "serial"),
        Index("ix_certificates_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    profile_id: Mapped[str | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"), index=True)
    # The inventory outlives the connector that delivered it: deleting one leaves these NULL.
    backend_id: Mapped[str | None] = mapped_column(ForeignKey("backends.id", ondelete="SET NULL"), index=True)
    ca_id: Mapped[str | None] = mapped_column(ForeignKey("cas.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(8))  # enroll | scan
    csr_pem: Mapped[str | None] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    sans: Mapped[list[Any]] = mapped_column(default=list)  # "DNS:www.example.com", "IP:10.0.0.1", ...
    key_type: Mapped[str] = mapped_column(String(32))
    term_days: Mapped[int | None] = mapped_column(Integer)
    serial: Mapped[str | None] = mapped_column(String(64), index=True)  # canonical, once issued
    not_before: Mapped[dt.datetime | None]
    not_after: Mapped[dt.datetime | None]
    issued_at: Mapped[dt.datetime | None]
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    chain_pem: Mapped[list[Any]] = mapped_column(default=list)  # issuer first, up to the root
    order_ref: Mapped[str | None] = mapped_column(String(255))
    pending_reason: Mapped[str | None] = mapped_column(Text)  # what the CA is waiting for
    error: Mapped[dict[str, Any] | None]  # {code, message, retryable}: the last failure
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # answers received from the CA
    failures: Mapped[int] = mapped_column(Integer, default=0)  # retryable errors in a row
    # When the scheduler acts next (collect, enroll again, revoke again); NULL while a job is out.
    next_attempt_at: Mapped[dt.datetime | None]
    renewed_from_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id", ondelete="SET NULL"))
    # Set when a revocation is asked for (and kept while it is retried); revoked_at once the CA did it.
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    revoked_at: Mapped[dt.datetime | None]
    # The CA's suggested renewal window ({start, end, explanation_url}; ACME Renewal Information).
    renewal_window: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(index=True)
    updated_at: Mapped[dt.datetime]

    profile: Mapped[Profile | None] = relationship()
    backend: Mapped[ManagedBackend | None] = relationship()
    ca: Mapped[ManagedCA | None] = relationship()


class IntegerId(Base):
    """A stable integer standing for one of our ids, for faces whose clients only know integers (the
    commercial manager's REST API: sslId, certificate type and organization ids). `kind` says what
    `ref` names: "certificate" (a certificate id), "profile" (a profile id), "organization" (a backend
    id and an organization's id there, or "default")."""

    __tablename__ = "integer_ids"
    __table_args__ = (UniqueConstraint("kind", "ref"),)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    ref: Mapped[str] = mapped_column(String(255))


# ---- the ACME server (manager/acme/) ------------------------------------------------------------------


class AcmeBinding(Base):
    """An External Account Binding an administrator made: a key id and HMAC key (shown once), bound to a
    profile and to the domains its accounts may order without validation."""

    __tablename__ = "acme_bindings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    # Sealed with the manager's key, not hashed: verifying the EAB's HMAC needs the key itself.
    hmac_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    domains: Mapped[list[Any]] = mapped_column(default=list)  # exact names and `*.example.com` patterns
    comments: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]

    profile: Mapped[Profile] = relationship()


class AcmeProfileSettings(Base):
    """Per profile: whether names outside a binding's domains may be validated by http-01 / dns-01."""

    __tablename__ = "acme_profile_settings"

    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)
    real_validation: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime]


class AcmeAccount(Base):
    __tablename__ = "acme_accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    binding_id: Mapped[str] = mapped_column(ForeignKey("acme_bindings.id", ondelete="CASCADE"), index=True)
    thumbprint: Mapped[str] = mapped_column(String(64), unique=True)  # RFC 7638, of the account key
    jwk: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))  # valid | deactivated | revoked
    contact: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime]

    binding: Mapped[AcmeBinding] = relationship()


class AcmeOrder(Base):
    __tablename__ = "acme_orders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id", ondelete="CASCADE"), index=True)
    identifiers: Mapped[list[Any]] = mapped_column(default=list)  # [{type, value}]
    # pending | ready | processing | valid | invalid; processing and after follow the certificate.
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[dt.datetime]
    error: Mapped[dict[str, Any] | None]
    replaces: Mapped[str | None] = mapped_column(String(32))  # the certificate id it renews (RFC 9773)
    # The normal request finalize made (once): the order follows it from then on.
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(index=True)

    account: Mapped[AcmeAccount] = relationship()
    certificate: Mapped[Certificate | None] = relationship()
    authorizations: Mapped[list[AcmeAuthorization]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="AcmeAuthorization.position"
    )


class AcmeAuthorization(Base):
    __tablename__ = "acme_authorizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_orders.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    identifier: Mapped[str] = mapped_column(String(255))  # the DNS name, without `*.` for a wildcard
    wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))  # pending | valid | invalid
    prevalidated: Mapped[bool] = mapped_column(Boolean, default=False)  # inside the binding's domains
    token: Mapped[str] = mapped_column(String(64))
    # [{type, status, validated, error}]: one per challenge type offered, all sharing the token.
    challenges: Mapped[list[Any]] = mapped_column(default=list)
    expires_at: Mapped[dt.datetime]

    order: Mapped[AcmeOrder] = relationship(back_populates="authorizations")


class AcmeNonce(Base):
    """Replay-Nonce values handed out and not yet used, in the database so every manager process
    sharing it accepts a nonce any of them gave."""

    __tablename__ = "acme_nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class AccessChanges(Base):
    """One row counting the deletes of connectors and the changes of their keys, bumped by triggers on
    SQLite (migration 0006). The SQLite manager's watcher of parked polls (`services.sqlite_watch`)
    reads this one row each round and looks at the connectors' rows only when it moved, so thousands
    of parked polls cost one primary-key read per round. PostgreSQL carries those changes with NOTIFY
    instead and has no triggers for it: there the count stays 0."""

    __tablename__ = "access_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(Integer, default=0)
