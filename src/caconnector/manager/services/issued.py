"""Reading a certificate a connector delivered (an IssuedBody, from enroll, collect or scan), and finding
which of the backend's CAs issued it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from caconnector.manager.db.models import ManagedCA
from caconnector.pki.chain import issued_by, order_chain
from caconnector.pki.keys import key_type_of
from caconnector.pki.names import alt_name_strings
from caconnector.pki.serial import canonical_serial
from caconnector.protocol.messages import IssuedBody


class InvalidIssued(ValueError):
    """What the connector sent is not a readable certificate."""


@dataclass(frozen=True)
class IssuedCertificate:
    """A delivered certificate, read once: every value the lifecycle stores, computed up front so a
    certificate that cannot be read fails here, as InvalidIssued, and never half-way through a poll."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuer first, up to the root, as far as it could be built
    order_ref: str | None
    serial: str  # canonical
    subject: str
    sans: list[str]
    key_type: str
    not_before: dt.datetime
    not_after: dt.datetime
    renewal_window: dict[str, Any] | None = None  # as the CA suggested it, in JSON form

    @property
    def pem(self) -> str:
        return _pem(self.certificate)

    @property
    def chain_pem(self) -> list[str]:
        return [_pem(c) for c in self.chain]


def read_issued(result: dict[str, Any] | None) -> IssuedCertificate:
    """An IssuedBody's certificate and its chain, put in order by signature (CAs send chains in any
    order); raise InvalidIssued when it is not one."""
    try:
        body = IssuedBody.model_validate(result or {})
    except ValidationError as exc:
        raise InvalidIssued(f"not a certificate result ({exc.error_count()} problem(s))") from None
    return read_issued_body(body)


def read_issued_body(body: IssuedBody) -> IssuedCertificate:
    try:
        leaf = x509.load_pem_x509_certificate(body.certificate_pem.encode())
        candidates = [c for pem in body.chain_pem for c in x509.load_pem_x509_certificates(pem.encode())]
    except ValueError:
        raise InvalidIssued("the certificate or its chain is not readable PEM") from None
    try:
        return IssuedCertificate(
            certificate=leaf,
            chain=tuple(order_chain(leaf, candidates)),
            order_ref=body.order_ref,
            serial=canonical_serial(leaf.serial_number),
            subject=leaf.subject.rfc4514_string(),
            sans=alt_name_strings(leaf),
            key_type=key_type_of(leaf.public_key()),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            renewal_window=body.renewal_window.model_dump(mode="json") if body.renewal_window else None,
        )
    except (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # A negative serial, a malformed extension, a key cryptography cannot load: the CA's doing.
        raise InvalidIssued(f"the certificate cannot be read ({type(exc).__name__}: {exc})") from None


class CAIndex:
    """The backend's CAs, with their certificates loaded once, to tell which one issued a certificate."""

    def __init__(self, cas: Sequence[ManagedCA]) -> None:
        self._cas = list(cas)
        self._certificates: list[tuple[ManagedCA, x509.Certificate]] = []
        for ca in self._cas:
            if ca.certificate_pem is None:
                continue
            try:
                self._certificates.append((ca, x509.load_pem_x509_certificate(ca.certificate_pem.encode())))
            except ValueError:
                continue  # an unreadable CA certificate verifies nothing

    def find(self, certificate: x509.Certificate) -> ManagedCA | None:
        """The CA whose certificate verifies `certificate`'s signature; failing that (a backend that does
        not report CA certificates), the only CA when there is one."""
        for ca, ca_certificate in self._certificates:
            if issued_by(certificate, ca_certificate):
                return ca
        return self._cas[0] if len(self._cas) == 1 else None


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
