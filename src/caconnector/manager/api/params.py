"""The REST API's constrained strings: the wire's types (`protocol.text`) applied to bodies, paths and
queries, so a lone surrogate, a NUL or a megabyte where an id is expected is a 422 naming the field
rather than a database error."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from caconnector.protocol.text import LINE_PATTERN, NAME_MAX, line, text

# Names and free text whose rule (characters, length) a service checks with its own message: the type
# only makes sure they are proper Unicode and bounded, so the service's message is the one shown.
NameIn = Annotated[str, text(1024)]
CommentsIn = Annotated[str, text(1024 * 1024)]
# A backend's id, a CA's id, a profile's template, product or organization.
IdIn = Annotated[str, line(32)]
LabelIn = Annotated[str, line(200)]

# An id (ours are 32 hex digits) or a name in a path.
PathKey = Annotated[str, Path(max_length=NAME_MAX, pattern=LINE_PATTERN)]


def line_query(max_length: int, description: str, *, alias: str | None = None) -> Any:
    """A text query parameter: one line, no control characters, at most `max_length` characters."""
    return Query(alias=alias, max_length=max_length, pattern=LINE_PATTERN, description=description)
