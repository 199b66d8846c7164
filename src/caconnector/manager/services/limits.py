"""Length limits of text columns, checked before writing what a connector sent, so an over-long value
is a clear 4xx (or an error outcome) rather than a database error on PostgreSQL (SQLite would store it)."""

from __future__ import annotations

from typing import Any


class TooLong(ValueError):
    pass


def check_length(what: str, value: str | None, column: Any) -> None:
    """`column`: a mapped attribute such as `Connector.hostname`; its String(length) is the limit."""
    limit = getattr(column.type, "length", None)
    if value is not None and limit is not None and len(value) > limit:
        raise TooLong(f"{what} is {len(value)} characters long; at most {limit} are accepted")
