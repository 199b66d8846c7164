"""Client certificates into the ASGI scope: uvicorn verifies a certificate a client presents (against
the CAs `serve` gives it) but does not hand it to the application. This protocol does, per connection,
the way the ASGI TLS extension names it: `scope["extensions"]["tls"]["client_cert_chain"]`, PEM, the
client's certificate first. Only what the TLS handshake verified ever gets there."""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _ClientCertificates(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # (as uvicorn's own)
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            app = cast(ASGI3Application, self.app)
            self.app = _with_certificate(app, ssl.DER_cert_to_PEM_cert(der))


def with_client_certificates(protocol: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    """`protocol`, also passing each connection's verified client certificate to the application."""
    return type(f"ClientCertificates{protocol.__name__}", (_ClientCertificates, protocol), {})


def _with_certificate(app: ASGI3Application, pem: str) -> ASGI3Application:
    async def application(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http":
            extensions = {**(scope.get("extensions") or {}), "tls": {"client_cert_chain": [pem]}}
            scope = {**scope, "extensions": extensions}  # type: ignore[typeddict-item]
        await app(scope, receive, send)

    return application
