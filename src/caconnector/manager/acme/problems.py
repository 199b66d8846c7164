"""ACME problem documents (RFC 8555 §6.7): `urn:ietf:params:acme:error:*` types, raised as AcmeError
from anywhere in an ACME request and answered by one handler (acme.routes) with a fresh nonce."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
URN = "urn:ietf:params:acme:error:"


class AcmeError(Exception):
    def __init__(
        self,
        kind: str,
        detail: str,
        status: int = 400,
        *,
        headers: dict[str, str] | None = None,
        subproblems: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.headers = headers or {}
        self.subproblems = subproblems
        self.extra = extra

    def body(self) -> dict[str, Any]:
        document: dict[str, Any] = {"type": URN + self.kind, "detail": self.detail, "status": self.status}
        if self.subproblems:
            document["subproblems"] = self.subproblems
        document.update(self.extra)
        return document


def malformed(detail: str, status: int = 400) -> AcmeError:
    return AcmeError("malformed", detail, status)


def unauthorized(detail: str) -> AcmeError:
    return AcmeError("unauthorized", detail, 403)
