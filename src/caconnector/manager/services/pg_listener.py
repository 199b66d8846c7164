"""A dedicated PostgreSQL connection doing LISTEN in a background thread, so a job created by another
manager process wakes the polls waiting in this one (and a certificate another process moved on wakes
the requests waiting for it, on a channel of its own).

The thread blocks in `select` on the connection's socket and on a socket pair of its own, so stopping
is immediate and an idle listener costs no CPU (no timeout loop). When the connection breaks it
reconnects with backoff; whenever it (re)starts listening it wakes every local waiter, because
notifications sent while it was not listening are lost and those polls should look again.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10
MAX_BACKOFF_SECONDS = 30.0


class PostgresListener:
    def __init__(
        self,
        conninfo: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_resync: Callable[[], None],
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._on_notify = on_notify
        self._on_resync = on_resync
        self._stopping = threading.Event()
        self._listening = threading.Event()  # set while LISTEN holds (after the resync wake)
        self._stop_reader, self._stop_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the connection listens within `timeout` seconds (it does from the first LISTEN
        until a connection is lost, and again once it reconnects)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._stop_writer.send(b"x")
        if self._thread.is_alive():
            # Bounded: a connection attempt in progress gives up after CONNECT_TIMEOUT_SECONDS.
            self._thread.join(timeout=CONNECT_TIMEOUT_SECONDS + 1)
        self._stop_reader.close()
        self._stop_writer.close()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
                ) as connection:
                    connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    backoff = 0.5
                    self._on_resync()
                    self._listening.set()
                    self._listen(connection)
            except (psycopg.Error, OSError) as exc:
                self._listening.clear()
                log.warning(
                    "wake-up listener for %s lost its database connection (%s); reconnecting",
                    self._channel,
                    exc,
                )
                self._on_resync()
                if self._wait_for_stop(backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _listen(self, connection: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Hand each notification's payload (a connector id) over until asked to stop."""
        pgconn = connection.pgconn
        stop = self._stop_reader.fileno()
        while True:
            readable, _, _ = select.select([pgconn.socket, stop], [], [])
            if stop in readable:
                return
            pgconn.consume_input()
            while (notification := pgconn.notifies()) is not None:
                self._on_notify(notification.extra.decode())

    def _wait_for_stop(self, seconds: float) -> bool:
        readable, _, _ = select.select([self._stop_reader], [], [], seconds)
        return bool(readable) or self._stopping.is_set()
