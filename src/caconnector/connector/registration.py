"""`register`: bind this connector to its manager with a one-time installation token.

A fresh Ed25519 key pair is made here; only the public key travels (with the token, the hostname and the
version). The private key is stored as a secret of the store's `manager` section, so it is encrypted at
rest with the store's key. Nothing is written unless the manager accepted the registration, and an
existing registration is replaced only with `force` (the restore flow).
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization

from caconnector import __version__
from caconnector.connector.link import Link, LinkSettings
from caconnector.connector.link_settings import (
    Registration,
    parse_manager_url,
    put_registration,
    read_proxy,
    read_registration,
)
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import RegisterRequest
from caconnector.protocol.signing import generate_connector_key, public_key_pem


class RegistrationError(Exception):
    """Registration cannot proceed as asked; the message says what to do."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _already(existing: Registration) -> RegistrationError:
    return RegistrationError(
        f"this connector is already registered to {existing.manager_url} as {existing.name}; "
        "use -force with a restore token to replace the registration"
    )


def register(
    store: ConnectorStore,
    token: str,
    manager_url: str | None = None,
    *,
    force: bool = False,
    cacert_pem: str | None = None,
    hostname: str | None = None,
    now: Callable[[], dt.datetime] = _utcnow,
) -> Registration:
    """Register with the manager and store the result. Raises RegistrationError, LinkError, StoreError.

    Without `manager_url` the stored registration's URL is used (a restore names only the token); a
    bundle given as `cacert_pem` replaces the stored one, otherwise the stored one is kept for the same
    manager. The proxy is the stored one: `install` saves it first.
    """
    if not token.strip():
        raise RegistrationError("-token is empty: copy the installation token from the manager")
    snapshot = store.read()
    existing = read_registration(snapshot)
    if existing is not None and not force:
        raise _already(existing)
    if manager_url is None:
        if existing is None:
            raise RegistrationError("give the manager's address with -manager URL")
        url = existing.manager_url
    else:
        url = parse_manager_url(manager_url)
    if cacert_pem is None and existing is not None and existing.manager_url == url:
        cacert_pem = existing.cacert_pem

    key = generate_connector_key()
    request = RegisterRequest(
        token=token.strip(),
        public_key=public_key_pem(key),
        hostname=hostname or socket.gethostname(),
        version=__version__,
        force=force,
    )
    with Link(LinkSettings(manager_url=url, cacert_pem=cacert_pem, proxy=read_proxy(snapshot))) as link:
        response = link.register(request)

    registration = Registration(
        manager_url=url,
        connector_id=response.connector_id,
        name=response.name,
        registered_at=now().replace(microsecond=0),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        cacert_pem=cacert_pem,
        poll_wait_seconds=response.poll_wait_seconds,
        inventory_interval_seconds=response.inventory_interval_seconds,
    )
    with store.transaction() as txn:
        # Checked again under the lock: another `register` may have finished meanwhile.
        current = read_registration(txn)
        if current is not None and not force:
            raise _already(current)
        put_registration(txn, registration)
    return registration
