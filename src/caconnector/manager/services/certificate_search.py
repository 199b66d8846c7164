"""Certificates found by the filters of clients that page by position and size (the compatible REST
API) rather than by our cursors: oldest first, so a position keeps meaning the same row while new
requests arrive. Common name and SAN are matched exactly; the database narrows them with LIKE first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import ColumnElement, String, cast, func, select
from sqlalchemy.orm import Session

from caconnector.manager.db.models import Certificate
from caconnector.manager.services.errors import Invalid
from caconnector.manager.services.states import CertStatus, status_is
from caconnector.pki.serial import canonical_serial


@dataclass(frozen=True)
class Filters:
    status: CertStatus | None = None
    profile_ids: Sequence[str] | None = None  # None: any; empty: none can match
    serial: str | None = None
    common_name: str | None = None
    alt_name: str | None = None  # a DNS name or an address, without our DNS:/IP: prefix


def search(
    session: Session, now: dt.datetime, filters: Filters, position: int, size: int
) -> tuple[list[Certificate], int]:
    """One page (from `position`, at most `size` rows) and how many match in all."""
    query = select(Certificate).where(*_conditions(filters, now))
    order = (Certificate.created_at, Certificate.id)
    exact = _exact_match(filters)
    if exact is None:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(*order).offset(position).limit(size))
        return list(rows), total
    matching = [row for row in session.scalars(query.order_by(*order)) if exact(row)]
    return matching[position : position + size], len(matching)


def _conditions(filters: Filters, now: dt.datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.status is not None:
        conditions.append(status_is(filters.status, now))
    if filters.profile_ids is not None:
        conditions.append(Certificate.profile_id.in_(list(filters.profile_ids)))
    if filters.serial is not None:
        try:
            conditions.append(Certificate.serial == canonical_serial(filters.serial))
        except ValueError as exc:
            raise Invalid(f"serialNumber: {exc}") from None
    if filters.common_name is not None:
        conditions.append(Certificate.subject.contains(filters.common_name, autoescape=True))
    if filters.alt_name is not None:
        conditions.append(cast(Certificate.sans, String).contains(filters.alt_name, autoescape=True))
    return conditions


def _exact_match(filters: Filters) -> Callable[[Certificate], bool] | None:
    if filters.common_name is None and filters.alt_name is None:
        return None

    def matches(row: Certificate) -> bool:
        if filters.common_name is not None and filters.common_name not in common_names(row.subject):
            return False
        if filters.alt_name is not None:
            names = {str(san).split(":", 1)[-1] for san in row.sans}
            if filters.alt_name not in names:
                return False
        return True

    return matches


def common_names(subject: str) -> list[str]:
    """The CN values of a stored subject (RFC 4514 text), none when it does not parse."""
    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:
        return []
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
