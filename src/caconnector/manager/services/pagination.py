"""Keyset pagination, the one implementation every list uses: `paginate(session, query, order_by, limit,
cursor)`.

The cursor is opaque to the caller: base64url of the JSON list of the last returned row's sort key. A
page is stable when rows are added before it (an offset would skip or repeat them). Sort-key columns
are all ascending or all descending, the last one unique (usually the id), so the key is exact.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from caconnector.manager.db.types import UTCDateTime
from caconnector.manager.services.errors import Invalid

RowT = TypeVar("RowT")

_NOT_OURS = "cursor: not a cursor of this list"


@dataclass(frozen=True)
class Rows(Generic[RowT]):
    """One page of rows and the cursor of the next page (None on the last)."""

    items: list[RowT]
    next_cursor: str | None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> list[Any]:
    """The key a cursor carries, checked against the expected element types; Invalid (422
    `invalid_cursor`) when it is not one of ours (hand-made, truncated, or from another list)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if not (
        isinstance(key, list)
        and len(key) == len(types)
        and all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True))
    ):
        raise Invalid(f"{_NOT_OURS}; pass the next_cursor of the previous page", code="invalid_cursor")
    return key


def paginate(
    session: Session,
    query: Select[RowT],
    order_by: Sequence[InstrumentedAttribute[Any]],
    limit: int | None,
    cursor: str | None,
    *,
    descending: bool = False,
) -> Rows[RowT]:
    """The page of `query` (its filters applied, no order or limit yet) after `cursor`, ordered by
    `order_by`; every row when `limit` is None."""
    if cursor:
        after = _decode(cursor, order_by)
        keys = tuple_(*order_by)
        query = query.where(keys < tuple(after) if descending else keys > tuple(after))
    query = query.order_by(*(c.desc() if descending else c for c in order_by))
    if limit is None:
        return Rows(list(session.scalars(query)), None)
    rows = list(session.scalars(query.limit(limit + 1)))  # one more than asked: is there a next page?
    if len(rows) <= limit:
        return Rows(rows, None)
    last = rows[limit - 1]
    return Rows(rows[:limit], encode_cursor(*(_encode(getattr(last, c.key)) for c in order_by)))


def _is_time(column: InstrumentedAttribute[Any]) -> bool:
    return isinstance(column.type, UTCDateTime)


def _encode(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _decode(cursor: str, order_by: Sequence[InstrumentedAttribute[Any]]) -> list[Any]:
    # A time travels as ISO 8601 text: JSON has no datetime.
    types = [str if _is_time(c) else c.type.python_type for c in order_by]
    key = decode_cursor(cursor, *types)
    return [_time(v) if _is_time(c) else v for v, c in zip(key, order_by, strict=True)]


def _time(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(_NOT_OURS, code="invalid_cursor") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
