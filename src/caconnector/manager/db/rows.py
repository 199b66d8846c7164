"""Inserting a row with one Core statement, on the hot paths where the ORM's unit of work costs more than
the row: an enrollment's certificate and job, every audit event.

A `session.add` + flush of one small object costs about 0.3 ms of CPU here (the unit of work sorts,
diffs and batches what a single INSERT does not need); the same INSERT sent as a Core statement on the
session's connection costs about a tenth of that. The row is written in the session's transaction (a
rollback or a failed savepoint undoes it, as it would a flushed object), and an object, where the caller
needs one, is put in the session as if it had just been loaded: changed later, it is flushed as an
UPDATE, like any object read from the database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from caconnector.manager.db.models import Base


def insert_loaded(session: Session, obj: Base) -> None:
    """INSERT the transient `obj`'s row now, and make `obj` persistent in `session` with every column
    known (defaults applied here, not by the database, so reading one later costs no query).

    Whatever the session holds unflushed is flushed first: a pending row `obj` refers to (a foreign
    key) is written before it, as the unit of work would order them."""
    state = inspect(obj)
    mapper = state.mapper
    values: dict[str, Any] = {}
    for attribute in mapper.column_attrs:
        column = attribute.columns[0]
        if attribute.key in state.dict:
            value = state.dict[attribute.key]
        elif column.default is not None and column.default.is_scalar:
            value = column.default.arg
        elif column.default is not None and column.default.is_callable:
            value = column.default.arg(None)  # SQLAlchemy's wrapper of a callable takes a context
        elif column.autoincrement is True and column.primary_key:
            raise ValueError(f"{mapper.class_.__name__}: insert_loaded needs the primary key set")
        else:
            value = None
        # Into the instance's dict, not through the instrumented attribute (no change events):
        # make_transient_to_detached below takes whatever the dict holds as loaded state.
        state.dict[attribute.key] = value
        values[column.key] = value
    session.flush()  # returns at once when nothing is pending
    session.connection().execute(insert(mapper.class_), values)
    make_transient_to_detached(obj)
    session.add(obj)


def insert_row(session: Session, entity: type[Base], **values: Any) -> None:
    """INSERT one row of `entity`'s table now, in the session's transaction, with no object for it."""
    session.connection().execute(insert(entity), values)
