"""Stable integers for our ids, for clients that only know integers (the compatible REST API's sslId,
certificate type and organization ids). A number is made the first time something is asked for and
never changes, except that a replaced certificate's number moves to its successor (`move`)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from caconnector.manager.db.models import IntegerId
from caconnector.manager.services.errors import NotFound


class Kind(enum.StrEnum):
    CERTIFICATE = "certificate"
    PROFILE = "profile"
    ORGANIZATION = "organization"


def number_for(session: Session, kind: Kind, ref: str) -> int:
    return numbers_for(session, kind, [ref])[ref]


def numbers_for(session: Session, kind: Kind, refs: Iterable[str]) -> dict[str, int]:
    """The number of each ref, made for those that have none yet (one query for those that have)."""
    wanted = list(dict.fromkeys(refs))
    found = _known(session, kind, wanted)
    for ref in wanted:
        if ref not in found:
            found[ref] = _make(session, kind, ref)
    return found


def ref_for(session: Session, kind: Kind, number: int) -> str:
    row = session.get(IntegerId, number)
    if row is None or row.kind != kind.value:
        raise NotFound(f"no {kind.value} with id {number}")
    return row.ref


def move(session: Session, kind: Kind, number: int, new_ref: str) -> None:
    """Let `number` stand for `new_ref` from now on (the old ref gets a new number when next asked)."""
    row = session.get(IntegerId, number)
    if row is None or row.kind != kind.value:
        raise NotFound(f"no {kind.value} with id {number}")
    row.ref = new_ref
    session.flush()


def _known(session: Session, kind: Kind, refs: list[str]) -> dict[str, int]:
    if not refs:
        return {}
    rows = session.execute(
        select(IntegerId.ref, IntegerId.number).where(IntegerId.kind == kind.value, IntegerId.ref.in_(refs))
    )
    return {str(ref): int(number) for ref, number in rows}


def _make(session: Session, kind: Kind, ref: str) -> int:
    # Two requests may number the same ref at once: the unique (kind, ref) settles it, and the loser
    # reads the winner's number. The savepoint keeps the caller's transaction usable.
    row = IntegerId(kind=kind.value, ref=ref)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        number = _known(session, kind, [ref]).get(ref)
        if number is None:
            raise
        return number
    return row.number
