"""Revocation through MS-CSRA `ICertAdminD::RevokeCertificate` (opnum 10) on impacket's DCOM layer.

Released impacket has no MS-CSRA, so the call is declared here ([MS-CSRA] 3.1.4.1.10):

    HRESULT RevokeCertificate([in, string, unique] wchar_t const* pwszAuthority,
                              [in, string, unique] wchar_t const* pwszSerialNumber,
                              [in] DWORD Reason, [in] FILETIME FileTime);

The serial is hex text, the reason the RFC 5280 CRLReason code, and a zero FileTime means "now". The
account needs the CA's "Issue and Manage Certificates" permission. Web Enrollment has no revocation page,
so this runs whatever the transport; with -auth basic the same account signs in with NTLM.
"""

from __future__ import annotations

from impacket.dcerpc.v5.dcomrt import DCOMANSWER, DCOMCALL
from impacket.dcerpc.v5.dtypes import DWORD, FILETIME, LPWSTR
from impacket.uuid import string_to_bin, uuidtup_to_bin

from caconnector.backends.errors import AuthError, NotSupported, Rejected
from caconnector.backends.msca import dcom
from caconnector.backends.msca.config import MscaConfig
from caconnector.pki.revocation import RevocationReason

# [MS-CSRA] 1.9: the CertAdminD class and the ICertAdminD interface.
CLSID_CERT_ADMIN_D = string_to_bin("d99e6e73-fc88-11d0-b498-00a0c90312f3")
IID_ICERT_ADMIN_D = uuidtup_to_bin(("d99e6e71-fc88-11d0-b498-00a0c90312f3", "0.0"))

E_ACCESSDENIED = 0x80070005
E_INVALIDARG = 0x80070057
CERTSRV_E_NOT_FOUND = 0x80070002  # HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND): no such serial


class RevokeCertificate(DCOMCALL):  # type: ignore[misc]  # impacket is untyped
    opnum = 10
    structure = (
        ("pwszAuthority", LPWSTR),
        ("pwszSerialNumber", LPWSTR),
        ("Reason", DWORD),
        ("FileTime", FILETIME),
    )


class RevokeCertificateResponse(DCOMANSWER):  # type: ignore[misc]  # impacket is untyped
    structure = (("ErrorCode", DWORD),)


def build_revoke(ca: str, serial: str, reason: RevocationReason) -> RevokeCertificate:
    call = RevokeCertificate()
    call["pwszAuthority"] = ca + "\x00"
    call["pwszSerialNumber"] = serial + "\x00"
    call["Reason"] = reason.code  # RevokeCertificate takes the RFC 5280 CRLReason code as it is
    call["FileTime"]["dwLowDateTime"] = 0
    call["FileTime"]["dwHighDateTime"] = 0
    return call


def check_result(name: str, code: int, serial: str) -> None:
    """RevokeCertificate's HRESULT as the backend error tree."""
    code &= 0xFFFFFFFF
    if code == 0:
        return
    if code == E_ACCESSDENIED:
        raise AuthError(
            f"backend {name!r}: the CA refused to revoke (access denied); -username needs the CA's "
            "Issue and Manage Certificates permission"
        )
    if code in (CERTSRV_E_NOT_FOUND, E_INVALIDARG):
        raise Rejected(
            f"backend {name!r}: the CA has no certificate with serial {serial} (HRESULT 0x{code:08x})"
        )
    raise Rejected(f"backend {name!r}: the CA refused to revoke serial {serial} (HRESULT 0x{code:08x})")


class DcomRevoker:
    """Revokes through one DCOM connection per call."""

    def __init__(self, config: MscaConfig, name: str) -> None:
        self._config = config
        self._name = name

    def revoke(self, serial: str, reason: RevocationReason) -> None:
        def unreachable(why: str) -> NotSupported:
            return NotSupported(
                f"backend {self._name!r}: revoking needs MS-CSRA over DCOM (TCP 135 and the RPC ports): "
                f"{why}; Web Enrollment has no revocation page. Revoke at the CA (certsrv.msc), or let "
                "this host reach the CA over DCOM"
            )

        response = dcom.call(
            self._config,
            self._name,
            clsid=CLSID_CERT_ADMIN_D,
            iid=IID_ICERT_ADMIN_D,
            request=build_revoke(self._config.ca, serial, reason),
            service="MS-CSRA",
            unreachable=unreachable,
        )
        check_result(self._name, int(response["ErrorCode"]), serial)
