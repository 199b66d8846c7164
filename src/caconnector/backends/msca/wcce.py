"""The CA's certificate over RPC: MS-WCCE `ICertRequestD::GetCACert` (opnum 4) with GETCERT_CASIGCERT.

MS-ICPR's CertServerRequest returns a chain only with an issued certificate, so `check()` over the RPC
transport asks the CA itself through DCOM ([MS-WCCE] 3.2.1.4.2.2):

    HRESULT GetCACert([in] DWORD fchain, [in, string, unique, range(1, 1536)] wchar_t const* pwszAuthority,
                      [out, ref] CERTTRANSBLOB* pctbOut);
"""

from __future__ import annotations

from cryptography import x509
from impacket.dcerpc.v5.dcomrt import DCOMANSWER, DCOMCALL
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR
from impacket.dcerpc.v5.icpr import CERTTRANSBLOB
from impacket.uuid import string_to_bin, uuidtup_to_bin

from caconnector.backends.errors import BackendError, Transient
from caconnector.backends.msca import dcom
from caconnector.backends.msca.config import MscaConfig

# [MS-WCCE] 1.9: the CertRequestD class and the ICertRequestD interface.
CLSID_CERT_REQUEST_D = string_to_bin("d99e6e74-fc88-11d0-b498-00a0c90312f3")
IID_ICERT_REQUEST_D = uuidtup_to_bin(("d99e6e70-fc88-11d0-b498-00a0c90312f3", "0.0"))
GETCERT_CASIGCERT = 0x00000000  # the CA's (current) signing certificate, DER


class GetCACert(DCOMCALL):  # type: ignore[misc]  # impacket is untyped
    opnum = 4
    structure = (("fchain", DWORD), ("pwszAuthority", LPWSTR))


class GetCACertResponse(DCOMANSWER):  # type: ignore[misc]  # impacket is untyped
    structure = (("pctbOut", CERTTRANSBLOB), ("ErrorCode", DWORD))


def build_get_ca_cert(ca: str) -> GetCACert:
    call = GetCACert()
    call["fchain"] = GETCERT_CASIGCERT
    call["pwszAuthority"] = ca + "\x00"
    return call


def read_ca_cert(name: str, response: GetCACertResponse) -> x509.Certificate:
    code = int(response["ErrorCode"]) & 0xFFFFFFFF
    if code:
        raise Transient(f"backend {name!r}: the CA did not give its certificate (HRESULT 0x{code:08x})")
    value = response["pctbOut"]["pb"]
    data = value if isinstance(value, bytes) else b"".join(value or [])
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise Transient(f"backend {name!r}: the CA sent its certificate in a form we cannot read") from None


def ca_certificate(config: MscaConfig, name: str) -> x509.Certificate:
    def unreachable(why: str) -> BackendError:
        return Transient(f"backend {name!r}: {why}; check -server and that DCOM is open from this host")

    response = dcom.call(
        config,
        name,
        clsid=CLSID_CERT_REQUEST_D,
        iid=IID_ICERT_REQUEST_D,
        request=build_get_ca_cert(config.ca),
        service="MS-WCCE",
        unreachable=unreachable,
    )
    return read_ca_cert(name, response)
