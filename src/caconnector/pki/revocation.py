"""RFC 5280 revocation reasons by their ASN.1 names, as the CLI and the API spell them."""

from __future__ import annotations

import enum

from cryptography import x509


class RevocationReason(enum.StrEnum):
    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        """The RFC name in any case, with or without separators (`key-compromise`, `KEY_COMPROMISE`)."""
        wanted = text.replace("-", "").replace("_", "").lower()
        for reason in cls:
            if reason.value.lower() == wanted:
                return reason
        names = ", ".join(r.value for r in cls)
        raise ValueError(f"unknown revocation reason {text!r}; use one of: {names}")

    def to_x509(self) -> x509.ReasonFlags:
        return _TO_X509[self]

    @property
    def code(self) -> int:
        """The RFC 5280 CRLReason code (what ACME's revokeCert and AD CS's RevokeCertificate take)."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> RevocationReason:
        """The reason of an RFC 5280 CRLReason code; ValueError for 7 (unused), 8 (removeFromCRL, no reason
        to revoke) and anything else."""
        for reason, value in _CODES.items():
            if value == code:
                return reason
        raise ValueError(f"{code} is not an RFC 5280 reason code to revoke with")


_TO_X509 = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}

# RFC 5280 5.3.1: CRLReason. 7 is not used; 8, removeFromCRL, only lifts a hold.
_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}
