"""A connector's status is derived from its registration and liveness columns, never stored, so it
cannot go stale: Pending, Connected, Disconnected, Expired."""

from __future__ import annotations

import datetime as dt
import enum

from caconnector.manager.db.models import Connector
from caconnector.manager.settings import Settings


class ConnectorStatus(enum.StrEnum):
    PENDING = "Pending"  # never registered
    CONNECTED = "Connected"  # seen within the heartbeat window
    DISCONNECTED = "Disconnected"  # registered, not seen lately
    EXPIRED = "Expired"  # not seen for longer than the expiry: refused until restored


def connector_status(connector: Connector, now: dt.datetime, settings: Settings) -> ConnectorStatus:
    if connector.registered_at is None or connector.public_key_pem is None:
        return ConnectorStatus.PENDING
    last_seen = connector.last_seen or connector.registered_at
    if now - last_seen > dt.timedelta(seconds=settings.connector_expiry_seconds):
        return ConnectorStatus.EXPIRED
    if connector.connected_until is not None and connector.connected_until > now:
        return ConnectorStatus.CONNECTED
    return ConnectorStatus.DISCONNECTED
