"""What the `entrust` backend remembers between jobs, in one small SQLite file in its state directory: for
each request id, that an order was attempted and, once ECS answered, its tracking id.

ECS takes no idempotency key. Our request id travels in `tracking.trackingInfo`, but finding it again means
paging through every certificate of the account, so that lookup is made only when it can matter: when an
earlier attempt of the same request may have reached ECS without us learning its answer (a timeout, a
crash, a redelivery while the first attempt still runs). A request never attempted before is ordered at
once; one whose order was answered is read by its tracking id.

Every write is one SQLite transaction, so a crash leaves a whole row or none.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from caconnector.backends.record_store import RecordStore

DATABASE_NAME = "entrust.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """CREATE TABLE IF NOT EXISTS orders (
    request_id    TEXT PRIMARY KEY,
    tracking_id   INTEGER,            -- NULL while the order's answer is not known
    attempted_at  TEXT NOT NULL       -- UTC ISO 8601, the last attempt's start
)"""


@dataclass(frozen=True)
class Claim:
    """What `claim` found: `tracking_id` when the order was answered; else `fresh` says whether this
    attempt is the first (nothing can exist at ECS), or when an earlier one started (`earlier_attempt`)."""

    tracking_id: int | None
    fresh: bool
    earlier_attempt: dt.datetime | None = None


class EntrustStore(RecordStore):
    """The order records of one entrust backend, in `<state_dir>/entrust.sqlite`. A connection per call."""

    database_name = DATABASE_NAME
    schema = (_SCHEMA,)
    schema_version = SCHEMA_VERSION

    def claim(self, request_id: str, now: dt.datetime) -> Claim:
        """Record that `request_id` is about to be ordered, in one transaction with reading what an
        earlier attempt left, so two workers with the same request cannot both see it fresh."""
        with self._transaction() as tx:
            row = tx.execute(
                "SELECT tracking_id, attempted_at FROM orders WHERE request_id = ?", (request_id,)
            ).fetchone()
            stamp = now.astimezone(dt.UTC).isoformat()
            if row is None:
                tx.execute(
                    "INSERT INTO orders (request_id, tracking_id, attempted_at) VALUES (?, NULL, ?)",
                    (request_id, stamp),
                )
                return Claim(tracking_id=None, fresh=True)
            if row[0] is not None:
                return Claim(tracking_id=int(row[0]), fresh=False)
            return Claim(
                tracking_id=None, fresh=False, earlier_attempt=dt.datetime.fromisoformat(str(row[1]))
            )

    def restart(self, request_id: str, earlier: dt.datetime, now: dt.datetime) -> bool:
        """Take over an attempt that started at `earlier` and found nothing: True for the one worker that
        does (the row still says `earlier`), False for any other."""
        with self._transaction() as tx:
            cursor = tx.execute(
                "UPDATE orders SET attempted_at = ? WHERE request_id = ? AND tracking_id IS NULL "
                "AND attempted_at = ?",
                (now.astimezone(dt.UTC).isoformat(), request_id, earlier.astimezone(dt.UTC).isoformat()),
            )
            return cursor.rowcount == 1

    def record(self, request_id: str, tracking_id: int, now: dt.datetime) -> None:
        with self._transaction() as tx:
            tx.execute(
                "INSERT INTO orders (request_id, tracking_id, attempted_at) VALUES (?, ?, ?) "
                "ON CONFLICT (request_id) DO UPDATE SET tracking_id = excluded.tracking_id",
                (request_id, tracking_id, now.astimezone(dt.UTC).isoformat()),
            )

    def release(self, request_id: str) -> None:
        """ECS answered the order with a refusal: nothing was ordered, the next attempt starts fresh."""
        with self._transaction() as tx:
            tx.execute("DELETE FROM orders WHERE request_id = ? AND tracking_id IS NULL", (request_id,))
