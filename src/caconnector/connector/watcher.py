"""The agent's view of its data directory: re-read when config.toml or secrets.json change, so a
`backend add`, `proxy set` or `register -force` in another process applies without a restart.

The watcher owns the Link: a new registration or a new proxy route closes the old client and opens
another. It also keeps the log scrubber current with every secret the files hold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from caconnector.connector.link import Identity, Link, LinkSettings
from caconnector.connector.link_settings import ProxySettings, Registration, read_proxy, read_registration
from caconnector.connector.logs import Scrubber
from caconnector.connector.store import CONFIG_FILE, SECRETS_FILE, ConnectorStore, StoreError

log = logging.getLogger("caconnector.connector.agent")


@dataclass(frozen=True)
class Connection:
    """A usable registration and the client that talks to its manager."""

    registration: Registration
    link: Link


def _files_fingerprint(store: ConnectorStore) -> str:
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, SECRETS_FILE):
        try:
            digest.update((store.datadir / name).read_bytes())
        except OSError:
            digest.update(b"-")
        digest.update(b"\0")
    return digest.hexdigest()


class Watcher:
    def __init__(self, store: ConnectorStore, scrubber: Scrubber) -> None:
        self._store = store
        self._scrubber = scrubber
        self._fingerprint: str | None = None
        self._link_key: tuple[str, ProxySettings | None] | None = None
        # The registration last read, kept even when its Link could not be built: the agent state
        # still names its manager.
        self.registration: Registration | None = None
        self.connection: Connection | None = None
        self.backends_fingerprint = ""

    def refresh(self) -> bool:
        """Re-read the files if they changed. True when the connection was replaced (a new
        registration or route, including none). Raises StoreError for files that cannot be used."""
        fingerprint = _files_fingerprint(self._store)
        if fingerprint == self._fingerprint:
            return False
        snapshot = self._store.read()
        registration = read_registration(snapshot)
        proxy = read_proxy(snapshot)
        secrets = [s for b in snapshot.backends.values() for s in b.secrets.values()]
        if proxy is not None and proxy.password:
            secrets.append(proxy.password)
        if registration is not None:
            secrets.append(registration.private_key_pem)
        self._scrubber.update(secrets)

        link_key = (registration.fingerprint(), proxy) if registration else None
        replaced = link_key != self._link_key
        if replaced:
            self.close()
            self.registration = registration
            self._link_key = None
            if registration is not None:
                self.connection = Connection(registration, _connect(registration, proxy))
                log.info(
                    "manager %s%s, connector %s (%s)",
                    registration.manager_url,
                    f" through proxy {proxy.display()}" if proxy else "",
                    registration.name,
                    registration.connector_id,
                )
            self._link_key = link_key

        backends = [
            [b.name, b.type, b.options, sorted(b.secrets.items())] for b in snapshot.backends.values()
        ]
        self.backends_fingerprint = hashlib.sha256(json.dumps(backends, default=str).encode()).hexdigest()
        self._fingerprint = fingerprint
        return replaced

    def close(self) -> None:
        if self.connection is not None:
            self.connection.link.close()
            self.connection = None


def _connect(registration: Registration, proxy: ProxySettings | None) -> Link:
    try:
        settings = LinkSettings(registration.manager_url, registration.cacert_pem, proxy)
        identity = Identity(registration.connector_id, registration.private_key())
        return Link(settings, identity)
    except ValueError as exc:
        raise StoreError(f"the stored registration cannot be used ({exc}); register again") from None
