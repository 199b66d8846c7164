"""Keyset pagination for the API's lists: `limit` and an opaque `cursor`, answered as
`{items, next_cursor}`. The cursor carries the sort key of the last item returned, so a page is stable
when rows are added before it (an offset would skip or repeat them)."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, at most {MAX_LIMIT}")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=r"^[A-Za-z0-9_-]*$",  # base64url, as services.pagination writes it
        description="`next_cursor` of the previous page; omit for the first",
    ),
]


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = None
