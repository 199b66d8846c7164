"""Who is calling the compatible REST API: the `login`, `password` and `customerUri` headers its clients
send on every request, mapped to our users with the same password check as everywhere else (argon2),
and the customerUri checked against the configured one. Every refusal is the same 401, so it tells
nobody whether the user exists; nothing presented is ever echoed or logged."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Annotated

from cryptography import x509
from cryptography.x509.oid import NameOID
from fastapi import Depends, Request

from caconnector.manager.auth import OPERATE, READ, Principal
from caconnector.manager.compat.errors import Code, CompatError
from caconnector.manager.db.models import User
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services.users import find_user, verify_password

REFUSED = "unknown user, wrong password or wrong customerUri"
CACHE_SECONDS = 300.0
CACHE_ENTRIES = 10_000


class VerifiedPasswords:
    """Passwords verified lately, by a SHA-256 of the user's id, stored hash and the password: that
    API's clients send the password with every request, and argon2 takes a good part of a second and
    64 MiB each time, on purpose. A changed password (a new stored hash) or a disabled user no longer
    matches; only successes are kept, so guessing stays as slow as ever (and throttled)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, user: User, password: str) -> bool:
        key = hashlib.sha256(f"{user.id}\0{user.password_hash}\0{password}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            if self._until.get(key, 0.0) > now:
                return True
        if not verify_password(user, password):
            return False
        with self._lock:
            if len(self._until) >= CACHE_ENTRIES:
                self._until.clear()
            self._until[key] = now + CACHE_SECONDS
        return True


def authenticate(
    runtime: Runtime,
    verified: VerifiedPasswords,
    login: str,
    *,
    password: str,
    customer_uri: str,
    certificate_name: str | None = None,
) -> Principal:
    """By password, or (no password sent) by the client certificate the TLS handshake verified, whose
    common name must be the `login`."""
    if not (login and customer_uri and (password or certificate_name)):
        raise CompatError(
            401,
            Code.UNAUTHENTICATED,
            "send the login, password and customerUri headers (or a client certificate)",
        )
    if customer_uri != runtime.settings.compat_customer_uri:
        raise CompatError(401, Code.UNAUTHENTICATED, REFUSED)
    with runtime.sessions.begin() as session:
        user = find_user(session, login)
        if password:
            accepted = user is not None and verified.check(user, password)
        else:
            accepted = certificate_name == login
        if user is None or user.disabled or not accepted:
            raise CompatError(401, Code.UNAUTHENTICATED, REFUSED)
        return Principal(user.id, user.username, Role(user.role))


def client_certificate_name(runtime: Runtime, request: Request) -> str | None:
    """The common name of the client certificate `serve` verified (manager/tls_client.py), if any. Read
    only when client CAs are configured: nothing else vouches for the scope's TLS extension."""
    if runtime.settings.compat_client_ca_file is None:
        return None
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    names = x509.load_pem_x509_certificate(str(chain[0]).encode()).subject.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )
    return str(names[0].value) if names else None


def require_roles(*roles: Role) -> Callable[[Request], Principal]:
    allowed = set(roles)

    def dependency(request: Request) -> Principal:
        headers = request.headers
        runtime = runtime_of(request)
        principal = authenticate(
            runtime,
            request.app.state.compat_passwords,
            headers.get("login", ""),
            password=headers.get("password", ""),
            customer_uri=headers.get("customeruri", ""),
            certificate_name=client_certificate_name(runtime, request),
        )
        if principal.role not in allowed:
            raise CompatError(
                403, Code.FORBIDDEN, f"role {principal.role.value} may not do this (needs an operator)"
            )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require_roles(*READ))]
Operator = Annotated[Principal, Depends(require_roles(*OPERATE))]
