"""The manager validating a challenge itself (RFC 8555 §8.3 http-01, §8.4 dns-01), for names outside a
binding's domains on a profile that enables real validation.

Where it looks is configurable, so tests (and split-horizon sites) can point it elsewhere:
`acme_hosts` maps names to addresses for http-01, `acme_dns_resolver` is the DNS server both use,
`acme_http01_port` the port http-01 fetches from.
"""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass

import dns.exception
import dns.resolver
import httpx

from caconnector.manager.acme.jws import b64encode
from caconnector.manager.settings import Settings

MAX_BODY = 4096


@dataclass(frozen=True)
class Failure:
    kind: str  # an ACME error type: connection, incorrectResponse, dns
    detail: str


def host_map(settings: Settings) -> dict[str, str]:
    pairs = (item.partition("=") for item in settings.acme_hosts.split(",") if "=" in item)
    return {name.strip().lower(): address.strip() for name, _, address in pairs}


def _resolver(settings: Settings) -> dns.resolver.Resolver | None:
    if not settings.acme_dns_resolver:
        return None
    address, _, port = settings.acme_dns_resolver.rpartition(":")
    if not address or not port.isdigit() or address.endswith(":"):  # no port given (or a bare IPv6)
        address, port = settings.acme_dns_resolver, "53"
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [address]
    resolver.port = int(port)
    resolver.lifetime = settings.acme_validation_timeout_seconds
    return resolver


def _address(name: str, settings: Settings) -> str:
    mapped = host_map(settings).get(name)
    if mapped:
        return mapped
    resolver = _resolver(settings)
    if resolver is not None:
        try:
            answer = resolver.resolve(name, "A")
        except dns.exception.DNSException as exc:
            raise LookupError(f"no A record for {name}: {type(exc).__name__}") from None
        return str(answer[0])
    try:
        return str(socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError as exc:
        raise LookupError(f"{name} does not resolve: {exc.strerror or exc}") from None


def http01(name: str, token: str, key_authorization: str, settings: Settings) -> Failure | None:
    try:
        address = _address(name, settings)
    except LookupError as exc:
        return Failure("dns", str(exc))
    host = f"[{address}]" if ":" in address else address
    url = f"http://{host}:{settings.acme_http01_port}/.well-known/acme-challenge/{token}"
    try:
        # No redirects followed and nothing but the key authorization read: the answer is tiny.
        with httpx.Client(timeout=settings.acme_validation_timeout_seconds, trust_env=False) as client:
            response = client.get(url, headers={"Host": name})
    except httpx.HTTPError as exc:
        return Failure("connection", f"fetching http://{name}/.well-known/acme-challenge/{token}: {exc}")
    if response.status_code != 200:
        return Failure("incorrectResponse", f"http://{name}/.well-known/acme-challenge/ answered "
                       f"{response.status_code}")  # fmt: skip
    if response.content[:MAX_BODY].strip() != key_authorization.encode():
        return Failure("incorrectResponse", "the http-01 response is not the key authorization")
    return None


def dns01(name: str, key_authorization: str, settings: Settings) -> Failure | None:
    expected = b64encode(hashlib.sha256(key_authorization.encode()).digest())
    resolver = _resolver(settings) or dns.resolver.Resolver()
    try:
        answer = resolver.resolve(f"_acme-challenge.{name}", "TXT")
    except dns.exception.DNSException as exc:
        return Failure("dns", f"no TXT record at _acme-challenge.{name}: {type(exc).__name__}")
    values = {b"".join(record.strings).decode(errors="replace") for record in answer}
    if expected not in values:
        return Failure("incorrectResponse", f"no TXT record at _acme-challenge.{name} holds the digest")
    return None
