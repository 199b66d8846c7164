"""The RPC transport: MS-ICPR `ICertPassage::CertServerRequest` (opnum 0) over
`ncacn_np:SERVER[\\pipe\\cert]`, with impacket's NDR structures, NTLM or Kerberos, and packet privacy.

One call does everything ([MS-ICPR] 3.2.4.1.1, [MS-WCCE] 3.2.1.4.3.1.1): a new request goes with request
id 0 and the request blob; a pending or issued one is asked about again with its request id and an empty
blob. Attributes are newline-separated `Name:Value` pairs in UTF-16LE; the disposition is 3 (issued),
5 (under submission) or another CR_DISP value (denied, error); the disposition message is UTF-16LE.
impacket's own helper (`hCertServerRequest`) drops the disposition, so the call is made here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from impacket.dcerpc.v5 import icpr, rpcrt, transport
from impacket.dcerpc.v5.rpcrt import DCERPCException

from caconnector.backends.errors import AuthError, BackendError, ConfigError, Transient
from caconnector.backends.msca.config import MscaConfig, split_account
from caconnector.backends.msca.transport import Disposition, Outcome

DISPOSITION_ISSUED = 3
DISPOSITION_ISSUED_OUT_OF_BAND = 4
DISPOSITION_UNDER_SUBMISSION = 5
# The request's format ([MS-WCCE] 3.2.1.4.3.1.1): "any", so the CA tells PKCS#10 from CMS itself (as
# impacket and certreq send it); the blob is binary DER over RPC whatever the encoding bits say.
CR_IN_FORMATANY = 0x0
_ACCESS_DENIED = 0x5
_LOGON_FAILURE = 0xC000006D


def attributes_blob(template: str | None) -> bytes:
    """The request attributes as CertServerRequest carries them: `Name:Value` lines, NUL-terminated
    UTF-16LE."""
    lines = [f"CertificateTemplate:{template}"] if template else []
    return ("\n".join(lines) + "\x00").encode("utf-16le")


def build_request(
    ca: str, request: bytes, template: str | None, request_id: int = 0
) -> icpr.CertServerRequest:
    """A CertServerRequest: a new request (id 0, the DER blob) or a question about `request_id`."""
    call = icpr.CertServerRequest()
    call["dwFlags"] = CR_IN_FORMATANY
    call["pwszAuthority"] = ca + "\x00"
    call["pdwRequestId"] = request_id
    attributes = icpr.CERTTRANSBLOB()
    blob = attributes_blob(template) if request else b""
    attributes["cb"] = len(blob)
    attributes["pb"] = blob
    call["pctbAttribs"] = attributes
    body = icpr.CERTTRANSBLOB()
    body["cb"] = len(request)
    body["pb"] = request
    call["pctbRequest"] = body
    return call


def _blob(structure: Any) -> bytes:
    value = structure["pb"]
    if value is None or value == b"":
        return b""
    if isinstance(value, bytes):
        return value
    return b"".join(value)


def parse_response(response: Any) -> Disposition:
    """A CertServerRequestResponse as a Disposition."""
    request_id = int(response["pdwRequestId"])
    code = int(response["pdwDisposition"])
    message = (
        _blob(response["pctbDispositionMessage"]).decode("utf-16le", errors="replace").rstrip("\x00").strip()
    )
    if code in (DISPOSITION_ISSUED, DISPOSITION_ISSUED_OUT_OF_BAND):
        der = _blob(response["pctbEncodedCert"])
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise Transient(
                f"AD CS issued request {request_id} but sent a certificate we cannot read"
            ) from None
        chain = tuple(c for c in ca_chain(response) if c != certificate)
        return Disposition(Outcome.ISSUED, request_id or None, message, certificate, chain)
    if code == DISPOSITION_UNDER_SUBMISSION:
        return Disposition(Outcome.PENDING, request_id, message or "Taken Under Submission")
    if not message:
        message = icpr.translate_error_code(code)
    return Disposition(Outcome.DENIED, request_id or None, message)


def ca_chain(response: Any) -> list[x509.Certificate]:
    """The certificates of pctbCert (a PKCS#7 of the CA's chain, [MS-ICPR] 3.2.4.1.1)."""
    from cryptography.hazmat.primitives.serialization import pkcs7  # noqa: PLC0415

    data = _blob(response["pctbCert"])
    try:
        return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError:
        return []


class IcprTransport:
    """AD CS over MS-ICPR. A connection per call: jobs are rare and the pipe does not outlive idle minutes."""

    def __init__(self, config: MscaConfig, name: str) -> None:
        if config.auth == "basic":
            raise ConfigError(f"backend {name!r}: -auth basic works only with -transport web")
        self._config = config
        self._name = name

    def submit(self, request: bytes, template: str) -> Disposition:
        return parse_response(self._call(build_request(self._config.ca, request, template)))

    def retrieve(self, request_id: int) -> Disposition:
        return parse_response(self._call(build_request(self._config.ca, b"", None, request_id)))

    def ca_certificates(self) -> list[x509.Certificate]:
        # CertServerRequest gives a chain only with an issued certificate: the CA's own certificate comes
        # from MS-WCCE GetCACert (DCOM). The issuing CA is what a chain needs; its parents come with
        # each issued certificate.
        from caconnector.backends.msca.wcce import ca_certificate  # noqa: PLC0415  (DCOM only when used)

        return [ca_certificate(self._config, self._name)]

    @contextmanager
    def _errors(self) -> Iterator[None]:
        target = f"{self._config.server} (MS-ICPR over \\pipe\\cert)"
        try:
            yield
        except BackendError:
            raise
        except DCERPCException as exc:
            code = (exc.get_error_code() or 0) & 0xFFFFFFFF
            if code in (_ACCESS_DENIED, _LOGON_FAILURE) or "access_denied" in str(exc).lower():
                raise AuthError(
                    f"backend {self._name!r}: {target} refused the credentials; check -auth, -username and "
                    "-password (or the host's Kerberos ticket), and the CA's Request Certificates permission"
                ) from None
            raise Transient(f"backend {self._name!r}: {target}: {icpr.translate_error_code(code)}") from None
        except OSError as exc:
            raise Transient(f"backend {self._name!r}: cannot reach {target}: {exc.strerror or exc}") from None
        except Exception as exc:  # noqa: BLE001  (impacket raises SessionError and bare Exceptions for SMB and Kerberos failures)
            text = str(exc)
            if "LOGON_FAILURE" in text or "KDC_ERR" in text or "ACCESS_DENIED" in text:
                raise AuthError(
                    f"backend {self._name!r}: {target} refused the credentials ({type(exc).__name__}); check "
                    "-auth, -username and -password (or the host's Kerberos ticket)"
                ) from None
            raise Transient(f"backend {self._name!r}: {target}: {type(exc).__name__}") from None

    def _call(self, call: icpr.CertServerRequest) -> Any:
        with self._errors():
            dce = connect(self._config, r"\pipe\cert", icpr.MSRPC_UUID_ICPR)
            try:
                return dce.request(call, checkError=False)
            finally:
                dce.disconnect()


def connect(config: MscaConfig, pipe: str, interface: bytes) -> Any:
    """An authenticated, sealed DCE/RPC connection to `pipe` on the server, bound to `interface`."""
    rpc = transport.DCERPCTransportFactory(f"ncacn_np:{config.server}[{pipe}]")
    domain, user = split_account(config.username)
    password = config.password.get_secret_value() if config.password is not None else ""
    rpc.set_credentials(user, password, domain)
    if config.auth == "kerberos":
        rpc.set_kerberos(True)
    dce = rpc.get_dce_rpc()
    dce.set_auth_level(rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
    if config.auth == "kerberos":
        dce.set_auth_type(rpcrt.RPC_C_AUTHN_GSS_NEGOTIATE)
    dce.connect()
    dce.bind(interface)
    return dce
