"""RFC 5280 revocation reasons: names as the CLI and API spell them, CRLReason codes as ACME and AD CS
take them."""

from __future__ import annotations

import pytest
from cryptography import x509

from caconnector.pki.revocation import RevocationReason


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_each_reason_has_its_crl_reason_code_and_back(reason: RevocationReason) -> None:
    # cryptography's ReasonFlags carry the ASN.1 names; RFC 5280's codes number them.
    assert reason.to_x509() in set(x509.ReasonFlags)
    assert RevocationReason.from_code(reason.code) is reason


def test_codes_are_rfc5280s() -> None:
    assert [r.code for r in RevocationReason] == [0, 1, 2, 3, 4, 5, 6, 9, 10]


@pytest.mark.parametrize("code", [7, 8, 11, -1])
def test_codes_that_are_no_reason_to_revoke_are_refused(code: int) -> None:
    with pytest.raises(ValueError, match="not an RFC 5280 reason code"):
        RevocationReason.from_code(code)
