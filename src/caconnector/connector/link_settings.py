"""The connector's link settings as stored in the data directory: the registration with its manager and
the HTTP proxy. Plain data and the rules for reading and writing it; nothing here opens a connection.

Stored as two sections of the store (see `store`):

    [sections.manager]  url, connector_id, name, registered_at, cacert (PEM), poll_wait_seconds,
                        inventory_interval_seconds; secret: private_key (Ed25519, PEM PKCS#8)
    [sections.proxy]    host, port, username; secret: password
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from caconnector.connector.store import ConnectorStore, StoreError, StoreSnapshot, StoreTransaction

MANAGER_SECTION = "manager"
PROXY_SECTION = "proxy"
PRIVATE_KEY_SECRET = "private_key"  # noqa: S105 - the name of a stored secret, not its value
PROXY_PASSWORD_SECRET = "password"  # noqa: S105 - same

DEFAULT_POLL_WAIT = 30.0
DEFAULT_INVENTORY_INTERVAL = 3600.0
SECRET_MASK = "********"  # noqa: S105 - what is shown instead of a secret


class InvalidSetting(ValueError):
    """A manager URL or proxy setting that cannot be used; the message names the option and the fix."""


# ---- the manager URL --------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_manager_url(text: str) -> str:
    """Check a -manager URL and return it normalised (no trailing slash).

    `https://` is required; plain `http://` only for loopback addresses (tests, the quickstart), because
    over any real network it would expose the installation token and every certificate request.
    """
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidSetting(f"-manager: {text!r} is not a valid URL ({exc})") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise InvalidSetting(f"-manager: {text!r} is not an https:// URL (e.g. https://manager.example.com)")
    if parts.username is not None or parts.password is not None:
        raise InvalidSetting(
            "-manager: the URL must not carry credentials; give the installation token with -token"
        )
    if parts.query or parts.fragment:
        raise InvalidSetting(f"-manager: {text!r} must not have a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise InvalidSetting(
            f"-manager: http:// is accepted only for loopback addresses (localhost, 127.0.0.1, ::1); "
            f"use https://{parts.netloc}{parts.path}"
        )
    if port == 0:
        raise InvalidSetting(f"-manager: {text!r} has port 0; give the manager's port (1-65535)")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


# ---- the proxy --------------------------------------------------------------------------------------


def check_port(value: int | str, option: str = "-proxyport") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{option}: {value!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise InvalidSetting(f"{option}: {port} is not a port number (1-65535)")
    return port


@dataclass(frozen=True)
class ProxySettings:
    """An HTTP proxy the connector reaches the manager through (CONNECT for https://)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "/@ \t"):
            raise InvalidSetting(f"-proxyhost: {self.host!r} is not a host name or IP address")
        check_port(self.port)
        if (self.username is None) != (self.password is None):
            raise InvalidSetting("-proxyuser and -proxypassword go together: give both, or neither")

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self) -> str:
        """The proxy URL for httpx, credentials percent-encoded (an '@' or ':' in them must not split
        the URL). It holds the password: never log or show it; `display()` is for people."""
        if self.username is None or self.password is None:
            return f"http://{self.address}"
        return f"http://{quote(self.username, safe='')}:{quote(self.password, safe='')}@{self.address}"

    def display(self) -> str:
        user = f"{self.username}:{SECRET_MASK}@" if self.username is not None else ""
        return f"http://{user}{self.address}"

    def view(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": SECRET_MASK if self.password is not None else None,
        }


def read_proxy(snapshot: StoreSnapshot) -> ProxySettings | None:
    values = snapshot.section(PROXY_SECTION)
    if not values:
        return None
    try:
        return ProxySettings(
            host=str(values["host"]),
            port=int(values["port"]),
            username=values.get("username"),
            password=snapshot.section_secrets(PROXY_SECTION).get(PROXY_PASSWORD_SECRET),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(
            f"the proxy settings in the data directory are incomplete ({exc}); "
            "set them again with: ca-connector proxy set -proxyhost H -proxyport P"
        ) from None


def save_proxy(store: ConnectorStore, proxy: ProxySettings | None) -> None:
    with store.transaction() as txn:
        if proxy is None:
            txn.set_section(PROXY_SECTION, {})
            return
        secrets = {PROXY_PASSWORD_SECRET: proxy.password} if proxy.password is not None else None
        txn.set_section(
            PROXY_SECTION, {"host": proxy.host, "port": proxy.port, "username": proxy.username}, secrets
        )


# ---- the registration -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """This connector's identity at its manager, as `register` stored it."""

    manager_url: str
    connector_id: str
    name: str
    registered_at: dt.datetime
    private_key_pem: str = field(repr=False)
    cacert_pem: str | None = None
    poll_wait_seconds: float = DEFAULT_POLL_WAIT
    inventory_interval_seconds: float = DEFAULT_INVENTORY_INTERVAL

    def private_key(self) -> ed25519.Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise StoreError("the stored connector key is not Ed25519; register again with -force")
        return key

    def fingerprint(self) -> str:
        """Changes whenever anything the link depends on changes (a `register -force`, a new bundle)."""
        document = json.dumps(
            [self.manager_url, self.connector_id, self.private_key_pem, self.cacert_pem], sort_keys=True
        )
        return hashlib.sha256(document.encode()).hexdigest()


def read_registration(snapshot: StoreSnapshot) -> Registration | None:
    values = snapshot.section(MANAGER_SECTION)
    if not values:
        return None
    key = snapshot.section_secrets(MANAGER_SECTION).get(PRIVATE_KEY_SECRET)
    registered_at = values.get("registered_at")
    if key is None or not isinstance(registered_at, dt.datetime):
        raise _incomplete("no private key" if key is None else "registered_at is not a date and time")
    try:
        return Registration(
            manager_url=str(values["url"]),
            connector_id=str(values["connector_id"]),
            name=str(values["name"]),
            registered_at=registered_at,
            private_key_pem=key,
            cacert_pem=values.get("cacert"),
            poll_wait_seconds=float(values.get("poll_wait_seconds", DEFAULT_POLL_WAIT)),
            inventory_interval_seconds=float(
                values.get("inventory_interval_seconds", DEFAULT_INVENTORY_INTERVAL)
            ),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise _incomplete(str(exc)) from None


def _incomplete(problem: str) -> StoreError:
    return StoreError(
        f"the registration in the data directory is incomplete ({problem}); "
        "register again with: ca-connector register -token T -force"
    )


def put_registration(txn: StoreTransaction, registration: Registration) -> None:
    txn.set_section(
        MANAGER_SECTION,
        {
            "url": registration.manager_url,
            "connector_id": registration.connector_id,
            "name": registration.name,
            "registered_at": registration.registered_at,
            "cacert": registration.cacert_pem,
            "poll_wait_seconds": registration.poll_wait_seconds,
            "inventory_interval_seconds": registration.inventory_interval_seconds,
        },
        {PRIVATE_KEY_SECRET: registration.private_key_pem},
    )
