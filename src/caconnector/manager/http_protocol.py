"""uvicorn's HTTP/1.1 protocol (h11) with a deadline for a request's headers.

uvicorn closes a keep-alive connection that stays idle after a response, but nothing else: a
connection that sends nothing after connecting, or a request's headers a byte at a time, or the first
bytes of its next request, is held open for ever. This protocol closes a connection whose request
headers are not complete within the header timeout of its first byte (or of connecting). Once the
headers are in, the body is the HTTP guard's business (its body timeout), and a long poll waiting for
jobs is neither (its wait is capped by poll_wait_seconds).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class _HeaderDeadlineH11(H11Protocol):
    header_timeout_seconds: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_seconds, self._expired)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _expired(self) -> None:
        self._header_deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # (as uvicorn's own)
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing() or not self._waiting_for_headers():
            self._disarm()
        else:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def h11_with_header_timeout(seconds: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`http=`), closing connections slow to send headers."""
    return type("HeaderDeadlineH11Protocol", (_HeaderDeadlineH11,), {"header_timeout_seconds": seconds})
