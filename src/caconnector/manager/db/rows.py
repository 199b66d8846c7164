"""Inserting a row with one Core statement, on the hot paths where the ORM's unit of work costs more than
the row: an enrollment's certificate and job, every audit event.

The unit of work's flush (sorting, diffing and batching what a single INSERT does not need) cost an
enrollment more Python calls than the INSERTs themselves (bench/request_costs.py --calls: 6,236 calls
per enrollment before, 5,934 after, and the audit events of every other request too). The row is
written in the session's transaction (a rollback or a failed savepoint undoes it, as it would a flushed
object), and an object, where the caller needs one, is put in the session as if it had just been
loaded: changed later, it is flushed as an UPDATE, like any object read from the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, insert, inspect
from sqlalchemy.orm import Session, make_transient_to_detached

from caconnector.manager.db.models import Base


@dataclass(frozen=True)
class _Column:
    key: str  # the attribute's
    column_key: str  # the INSERT's parameter
    default: Callable[[], Any] | None  # the column's Python-side default, as a function of nothing


@dataclass(frozen=True)
class _Plan:
    """How to insert one mapped class's rows: worked out once per class (walking the mapper's columns
    and defaults on every insert cost a third of it)."""

    columns: tuple[_Column, ...]
    statement: Insert


_PLANS: dict[type[Any], _Plan] = {}


def _plan(entity: type[Any]) -> _Plan:
    plan = _PLANS.get(entity)
    if plan is not None:
        return plan
    mapper = inspect(entity)
    columns = []
    for attribute in mapper.column_attrs:
        column = attribute.columns[0]
        default: Callable[[], Any] | None = None
        if column.default is not None and column.default.is_scalar:
            default = functools.partial(_constant, column.default.arg)
        elif column.default is not None and column.default.is_callable:
            # SQLAlchemy's wrapper of a callable default takes an execution context it does not use.
            default = functools.partial(column.default.arg, None)
        elif column.autoincrement is True and column.primary_key:
            default = functools.partial(_no_key, entity.__name__)
        columns.append(_Column(attribute.key, column.key, default))
    plan = _PLANS[entity] = _Plan(tuple(columns), insert(entity))
    return plan


def _constant(value: Any) -> Any:
    return value


def _no_key(name: str) -> Any:
    raise ValueError(f"{name}: insert_loaded needs the primary key set")


def insert_loaded(session: Session, obj: Base) -> None:
    """INSERT the transient `obj`'s row now, and make `obj` persistent in `session` with every column
    known (defaults applied here, not by the database, so reading one later costs no query).

    Whatever the session holds unflushed is flushed first: a pending row `obj` refers to (a foreign
    key) is written before it, as the unit of work would order them."""
    plan = _plan(type(obj))
    # Into the instance's dict, not through the instrumented attributes (no change events):
    # make_transient_to_detached below takes whatever the dict holds as loaded state.
    known = obj.__dict__
    values: dict[str, Any] = {}
    for column in plan.columns:
        if column.key in known:
            value = known[column.key]
        else:
            value = known[column.key] = column.default() if column.default is not None else None
        values[column.column_key] = value
    session.flush()  # returns at once when nothing is pending
    session.connection().execute(plan.statement, values)
    make_transient_to_detached(obj)
    session.add(obj)


def insert_row(session: Session, entity: type[Base], **values: Any) -> None:
    """INSERT one row of `entity`'s table now, in the session's transaction, with no object for it."""
    session.connection().execute(_plan(entity).statement, values)
