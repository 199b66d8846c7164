"""Keyset pagination for the API's lists: `limit` and an opaque `cursor`, answered as
`{items, next_cursor}`. The cursor carries the sort key of the last item returned, so a page is stable
when rows are added before it (an offset would skip or repeat them)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from caconnector.manager.problems import Problem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, at most {MAX_LIMIT}")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=r"^[A-Za-z0-9_-]*$",  # base64url, as encode_cursor writes it
        description="`next_cursor` of the previous page; omit for the first",
    ),
]


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> list[Any]:
    """The key a cursor carries, checked against the expected element types; 422 when it is not one
    of ours (hand-made, truncated, or from another list)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if not (
        isinstance(key, list)
        and len(key) == len(types)
        and all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True))
    ):
        detail = "cursor: not a cursor of this list; pass the next_cursor of the previous page"
        raise Problem(422, "Invalid request", detail, code="invalid_cursor")
    return key
