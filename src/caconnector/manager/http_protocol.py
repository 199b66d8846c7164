"""uvicorn's HTTP/1.1 protocol (httptools) with a deadline and a size limit for a request's headers.

uvicorn closes a keep-alive connection that stays idle after a response, but nothing else: a
connection that sends nothing after connecting, or a request's headers a byte at a time, or the first
bytes of its next request, is held open for ever. This protocol closes a connection whose request
headers are not complete within the header timeout of its first byte (or of connecting). Once the
headers are in, the body is the HTTP guard's business (its body timeout), and a long poll waiting for
jobs is neither (its wait is capped by poll_wait_seconds).

httptools (llhttp, in C) rather than h11: parsing and writing a request with h11, in Python, cost
about 300 of the manager's 6,500 Python calls per certificate (bench/request_costs.py --calls). h11
also capped a request's headers (16 KiB); uvicorn's httptools protocol keeps whatever headers a client
sends, so the cap is here: headers beyond MAX_HEADER_BYTES are answered 431 and the connection closed.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Far above any header a client of ours sends (a signed request's Authorization is about 400 bytes),
# far below what would let a few thousand connections hold much memory.
MAX_HEADER_BYTES = 64 * 1024

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: 30\r\n"
    b"\r\n"
    b"request headers are too large\n"
)


class _HeaderLimits(HttpToolsProtocol):
    header_timeout_seconds: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None
    _header_bytes = 0  # received since the current request began, while its headers are incomplete

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
        if self._waiting_for_headers():
            self._header_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing() or not self._waiting_for_headers():
            self._disarm()
            self._header_bytes = 0
        elif self._header_bytes > MAX_HEADER_BYTES:
            self._disarm()
            self.transport.write(_TOO_LARGE)
            self.transport.close()
        else:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def with_header_limits(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (`http=`), closing connections slow to send headers and
    refusing headers too large."""
    return type("HeaderLimitsHttpToolsProtocol", (_HeaderLimits,), {"header_timeout_seconds": seconds})
