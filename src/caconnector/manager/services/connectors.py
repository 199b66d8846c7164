"""Connectors, the administrator's side: add, rename, restore, delete, list, and what an admin may see.

Registration itself (a connector presenting its installation token) belongs to the channel; this module
only issues tokens. A token is stored as a SHA-256 hash, which is what registration checks, plus a copy
sealed with the manager's key so an admin can see it again while it is unused.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex

from sqlalchemy import ColumnElement, and_, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from caconnector.manager import audit, tokens
from caconnector.manager.db.models import Connector, new_id
from caconnector.manager.services.downloads import is_outdated, package_url
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.pagination import Rows, paginate
from caconnector.manager.services.status import ConnectorStatus, connector_status
from caconnector.manager.services.wakeups import access_changed
from caconnector.manager.settings import Settings
from caconnector.pki.secretbox import SecretBox, SecretBoxError

# Letters, digits, space, dot, underscore, hyphen; no leading or trailing space, which would make two
# names that look the same in a table.
_NAME = re.compile(r"[A-Za-z0-9._-](?:[A-Za-z0-9 ._-]{0,126}[A-Za-z0-9._-])?")
MAX_COMMENTS = 4000


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise Invalid(
            f"invalid connector name {name!r}: 1-128 characters, letters, digits, space and . _ - "
            "only, not starting or ending with a space"
        )
    return name


def _validate_comments(comments: str) -> str:
    if len(comments) > MAX_COMMENTS:
        raise Invalid(f"comments are limited to {MAX_COMMENTS} characters, not {len(comments)}")
    return comments


def target(connector: Connector) -> str:
    """The audit log's name for a connector: its id, which survives renames."""
    return f"connector:{connector.id}"


def install_command(token: str, settings: Settings) -> str:
    return f"ca-connector install -token {shlex.quote(token)} -manager {shlex.quote(settings.public_url)}"


def register_command(token: str) -> str:
    # A registered connector already knows the manager's URL; -force replaces its key.
    return f"ca-connector register -token {shlex.quote(token)} -force"


# ---- tokens -----------------------------------------------------------------------------------------


def _token_entry(connector_id: str) -> str:
    # The sealed copy is bound to its connector: copied onto another row, it fails to open.
    return f"connector/{connector_id}/token"


def _issue_token(connector: Connector, now: dt.datetime, settings: Settings, box: SecretBox) -> str:
    token = tokens.new_installation_token()
    connector.token_hash = tokens.hash_secret(token)
    connector.token_sealed = json.dumps(box.seal(_token_entry(connector.id), token)).encode()
    connector.token_expires_at = now + dt.timedelta(seconds=settings.token_ttl_seconds)
    connector.token_used_at = None
    return token


def visible_token(connector: Connector, box: SecretBox, now: dt.datetime, settings: Settings) -> str | None:
    """The installation token in clear while it can still be used, None otherwise.

    That is the first token of a Pending connector and a restore token, in both cases until it is used
    or expires. `settings` is taken for symmetry with the other views; the expiry was fixed at issue.
    """
    del settings
    if connector.token_sealed is None or connector.token_used_at is not None:
        return None
    if connector.token_expires_at is None or connector.token_expires_at <= now:
        return None
    try:
        return box.open(_token_entry(connector.id), json.loads(connector.token_sealed))
    except (SecretBoxError, ValueError, AttributeError):
        # Sealed under another key (the key file was replaced) or damaged: the token still works for
        # registration (its hash is intact), the admin just cannot see it again. Restore issues a new one.
        return None


# ---- lookups ----------------------------------------------------------------------------------------


def get_connector(session: Session, connector_id: str) -> Connector:
    connector = session.get(Connector, connector_id)
    if connector is None:
        raise NotFound(f"no connector with id {connector_id!r}")
    return connector


def find_connector(session: Session, id_or_name: str) -> Connector:
    """By name first (what admins type), then by id."""
    connector = session.scalar(select(Connector).where(Connector.name == id_or_name))
    connector = connector or session.get(Connector, id_or_name)
    if connector is None:
        raise NotFound(f"no connector named {id_or_name!r}; list them with: ca-manager connector list")
    return connector


def status_condition(status: ConnectorStatus, now: dt.datetime, settings: Settings) -> ColumnElement[bool]:
    """`connector_status` as SQL, so a status filter pages in the database. Must agree with it (tested)."""
    registered = and_(Connector.registered_at.is_not(None), Connector.public_key_pem.is_not(None))
    if status is ConnectorStatus.PENDING:
        return not_(registered)
    cutoff = now - dt.timedelta(seconds=settings.connector_expiry_seconds)
    # Written without NOT over nullable comparisons: NOT NULL is NULL, which would drop rows.
    expired = or_(
        Connector.last_seen < cutoff, and_(Connector.last_seen.is_(None), Connector.registered_at < cutoff)
    )
    alive = or_(
        Connector.last_seen >= cutoff, and_(Connector.last_seen.is_(None), Connector.registered_at >= cutoff)
    )
    if status is ConnectorStatus.EXPIRED:
        return and_(registered, expired)
    connected = and_(Connector.connected_until.is_not(None), Connector.connected_until > now)
    if status is ConnectorStatus.CONNECTED:
        return and_(registered, alive, connected)
    not_connected = or_(Connector.connected_until.is_(None), Connector.connected_until <= now)
    return and_(registered, alive, not_connected)


def list_connectors(
    session: Session,
    now: dt.datetime,
    settings: Settings,
    *,
    status: ConnectorStatus | None = None,
    name_contains: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Rows[Connector]:
    """Connectors ordered by name (unique, so the name alone is the key)."""
    query = select(Connector)
    if status is not None:
        query = query.where(status_condition(status, now, settings))
    if name_contains:
        query = query.where(Connector.name.icontains(name_contains, autoescape=True))
    return paginate(session, query, [Connector.name], limit, cursor)


# ---- changes ----------------------------------------------------------------------------------------


def _ensure_name_free(session: Session, name: str, keep: Connector | None = None) -> None:
    other = session.scalar(select(Connector).where(Connector.name == name))
    if other is not None and other is not keep:
        raise Conflict(f"a connector named {name!r} already exists (id {other.id})")


def _flush(session: Session, name: str) -> None:
    # The check above races with a concurrent add of the same name; the unique index settles it.
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"a connector named {name!r} already exists") from None


def add_connector(
    session: Session,
    name: str,
    comments: str,
    *,
    now: dt.datetime,
    settings: Settings,
    box: SecretBox,
    actor: str,
) -> tuple[Connector, str]:
    """A new Pending connector and its installation token, in clear (the only time it is returned
    besides the edit view while unused)."""
    validate_name(name)
    _validate_comments(comments)
    _ensure_name_free(session, name)
    connector = Connector(id=new_id(), name=name, comments=comments, created_at=now)
    token = _issue_token(connector, now, settings, box)
    session.add(connector)
    _flush(session, name)
    audit.record(session, now, actor, "connector.add", target(connector), name=name)
    return connector, token


def update_connector(
    session: Session,
    connector: Connector,
    *,
    name: str | None = None,
    comments: str | None = None,
    now: dt.datetime,
    actor: str,
) -> Connector:
    changes: dict[str, object] = {}
    if name is not None and name != connector.name:
        validate_name(name)
        _ensure_name_free(session, name, keep=connector)
        changes["name"] = {"from": connector.name, "to": name}
        connector.name = name
    if comments is not None and comments != connector.comments:
        connector.comments = _validate_comments(comments)
        changes["comments"] = comments
    if changes:
        _flush(session, connector.name)
        audit.record(session, now, actor, "connector.update", target(connector), **changes)
    return connector


def restore_connector(
    session: Session,
    connector: Connector,
    *,
    now: dt.datetime,
    settings: Settings,
    box: SecretBox,
    actor: str,
) -> str:
    """A new single-use token. The connector's current key keeps working until the token is used by
    `register -force`, so restoring by mistake cuts nothing off; an earlier unused token stops working.
    The old key's open polls are cut off when the token is used (`services.connector_registration`)."""
    token = _issue_token(connector, now, settings, box)
    session.flush()
    audit.record(session, now, actor, "connector.restore", target(connector), name=connector.name)
    return token


def delete_connector(session: Session, connector: Connector, *, now: dt.datetime, actor: str) -> None:
    """Gone for good, with its backends and jobs. The channel then refuses its key (no row to match),
    including on the polls it has open."""
    audit.record(session, now, actor, "connector.delete", target(connector), name=connector.name)
    # Its open polls are answered with the refusal at once, not when their wait runs out.
    access_changed(session, connector.id)
    session.delete(connector)
    session.flush()


# ---- views ------------------------------------------------------------------------------------------


def connector_view(
    connector: Connector, now: dt.datetime, settings: Settings, box: SecretBox, *, with_token: bool = True
) -> dict[str, object]:
    """What the API and the CLI show of a connector; `token` and `install_command` only while the
    token is usable (and `with_token`: lists and read-only callers never get it)."""
    view: dict[str, object] = {
        "id": connector.id,
        "name": connector.name,
        "comments": connector.comments,
        "status": connector_status(connector, now, settings).value,
        "version": connector.version,
        # Older than the newest package this manager serves (None: unknown, or nothing served).
        "outdated": is_outdated(connector.version, settings),
        "hostname": connector.hostname,
        "last_seen": connector.last_seen,
        "registered_at": connector.registered_at,
        "created_at": connector.created_at,
        "token_expires_at": connector.token_expires_at,
    }
    token = visible_token(connector, box, now, settings) if with_token else None
    if token is not None:
        view["token"] = token
        view["install_command"] = token_command(connector, token, settings)
        # The reference document's Add dialog links the installation package next to the token.
        view["package_url"] = package_url(settings)
    return view


def token_command(connector: Connector, token: str, settings: Settings) -> str:
    """What to run on the host with this token: a fresh install while the connector never registered,
    otherwise `register -force` on the host that already has it (the restore flow)."""
    if connector.public_key_pem is None:
        return install_command(token, settings)
    return register_command(token)
