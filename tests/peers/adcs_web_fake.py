"""A fake AD CS Web Enrollment server (the /certsrv pages of IIS), over TLS with HTTP Basic auth, for the
`msca` backend's web transport.

It serves the pages the `certsrv` client reads, worded as real AD CS words them:

- `POST certfnsh.asp` (Mode=newreq, CertRequest, CertAttrib with `CertificateTemplate:T`): an issued
  request's page links `certnew.cer?ReqID=N&Enc=b64`; a pending one says "Certificate Pending" and "Your
  Request Id is N."; a denied one "Your Request Id is N. The disposition message is "Denied by Policy
  Module ..."";
- `GET certnew.cer?ReqID=N&Enc=b64|bin`: the certificate as `application/pkix-cert`, or an HTML page
  while the request is pending or when it was denied; `ReqID=CACert&Renewal=R` is the CA's certificate;
- `GET certnew.p7b?ReqID=CACert&Renewal=R&Enc=bin|b64`: the chain as `application/x-pkcs7-certificates`;
- `GET certcarc.asp`: the page whose script holds `var nRenewals=N;`.

It checks what AD CS checks of an on-behalf-of request: the CMS signature, that the signer's certificate
chains to this CA and carries the Certificate Request Agent EKU, and the `requestername` attribute; it
records the requester each request named. Templates: `MachineEnrollmentAgent` (a plain PKCS#10 is
enough, the certificate carries the agent EKU), `WebServer` (issued), `ManagerApproval` (pending until
`approve`), `Denied` (denied by policy), and every other name is not a template of this CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from caconnector.backends.msca.cms import CMSError, has_agent_eku, is_cms, parse_on_behalf_of
from caconnector.testing import make_ca

CA_NAME = "local-FakeADCS-CA"
USERNAME = "CORP\\svc-connector"
PASSWORD = "Adcs-Passw0rd!"
CERTIFICATE_REQUEST_AGENT = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.1")

AGENT_TEMPLATE = "MachineEnrollmentAgent"
ISSUED_TEMPLATE = "WebServer"
PENDING_TEMPLATE = "ManagerApproval"
DENIED_TEMPLATE = "Denied"
DENIED_MESSAGE = (
    "Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow the "
    "current user to enroll for this type of certificate."
)
NO_AGENT_EKU_MESSAGE = (
    "Denied by Policy Module  0x8009480b, One or more signatures did not include the required application "
    "or issuance policies. The request is missing one or more required valid signatures."
)
MISSING_SIGNATURE_MESSAGE = (
    "Denied by Policy Module  0x8009480a, The request is missing one or more required signatures."
)
UNTRUSTED_AGENT_MESSAGE = (
    "Denied by Policy Module  0x800b0109, A certificate chain processed, but terminated in a root "
    "certificate which is not trusted by the trust provider."
)
BAD_SIGNATURE_MESSAGE = (
    "Error Verifying Request Signature or Signing Certificate  Invalid Signature. 0x80090006"
)
NO_REQUESTER_MESSAGE = (
    "Denied by Policy Module  0x80094809, The request is missing a required signature policy attribute."
)
PARSE_ERROR_MESSAGE = "Error Parsing Request  ASN1 bad tag value met. 0x8009310b (ASN: 267)"

_PEM_LINES = re.compile(r"-----[^-]+-----")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeRequest:
    """One row of the CA's request table."""

    id: int
    template: str
    status: str  # issued, pending, denied
    message: str
    requester: str | None = None
    csr: x509.CertificateSigningRequest | None = None
    certificate: x509.Certificate | None = None


@dataclass
class _Templates:
    agent: str = AGENT_TEMPLATE
    issued: set[str] = field(default_factory=lambda: {ISSUED_TEMPLATE})
    pending: set[str] = field(default_factory=lambda: {PENDING_TEMPLATE})
    denied: set[str] = field(default_factory=lambda: {DENIED_TEMPLATE})


class FakeAdcs:
    """The CA, its request table and the pages. `start()` serves them on 127.0.0.1 over TLS."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.username = username
        self.password = password
        self.templates = _Templates()
        self.requests: dict[int, FakeRequest] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self.ca_key = _key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "corp"),
                x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            ]
        )
        self.ca_certificate = make_ca(name, key=self.ca_key).certificate
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what tests read and do ---------------------------------------------------------------------

    @property
    def ca_pem(self) -> str:
        return self.ca_certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}/certsrv"

    def approve(self, request_id: int | None = None) -> None:
        """A CA manager issues the pending request (every pending one without an id)."""
        with self._lock:
            for request in self.requests.values():
                if request.status == "pending" and request_id in (None, request.id):
                    assert request.csr is not None
                    request.certificate = self._issue(request.csr, request.template, request.requester)
                    request.status = "issued"
                    request.message = "Issued"

    def issued(self) -> list[FakeRequest]:
        with self._lock:
            return [r for r in self.requests.values() if r.status == "issued"]

    def certificate_for(
        self, key: rsa.RSAPrivateKey, *, agent: bool, not_after: dt.datetime | None = None
    ) -> x509.Certificate:
        """A certificate of this CA for `key`, with or without the Certificate Request Agent EKU (tests)."""
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some user")]), key.public_key(), not_after
        )
        usages = [CERTIFICATE_REQUEST_AGENT] if agent else [ExtendedKeyUsageOID.CLIENT_AUTH]
        return builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
            self.ca_key, hashes.SHA256()
        )

    # -- serving ------------------------------------------------------------------------------------

    def start(self, directory: Path) -> FakeAdcs:
        key = _key()
        now = _utcnow()
        tls = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        del now
        directory.mkdir(parents=True, exist_ok=True)
        cert_file = directory / "adcs-tls.pem"
        key_file = directory / "adcs-tls.key"
        cert_file.write_bytes(tls.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_file, key_file)
        fake = self

        class Handler(_Pages):
            adcs = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- the CA -------------------------------------------------------------------------------------

    def _builder(
        self, subject: x509.Name, public_key: object, not_after: dt.datetime | None = None
    ) -> x509.CertificateBuilder:
        now = _utcnow()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_certificate.subject)
            .public_key(public_key)  # type: ignore[arg-type]  # any public key cryptography can certify
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )

    def _issue(
        self, csr: x509.CertificateSigningRequest, template: str, requester: str | None
    ) -> x509.Certificate:
        subject = (
            csr.subject
            if len(csr.subject)
            else x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, (requester or "requester").split("\\")[-1])]
            )
        )
        builder = self._builder(subject, csr.public_key())
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            builder = builder.add_extension(san.value, critical=san.critical)
        except x509.ExtensionNotFound:
            pass
        if template == self.templates.agent:
            usages = [CERTIFICATE_REQUEST_AGENT]
        else:
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(
            self.ca_key, hashes.SHA256()
        )

    def submit(self, request_text: str, attributes: str) -> FakeRequest:
        """certfnsh.asp's work: read, check and decide one request."""
        template = ""
        for line in re.split(r"[\r\n]+", attributes):
            name, _, value = line.partition(":")
            if name.strip().lower() == "certificatetemplate":
                template = value.strip()
        with self._lock:
            request = FakeRequest(self._next_id, template, "denied", "")
            self._next_id += 1
            self.requests[request.id] = request
            self._decide(request, request_text)
            return request

    def _on_behalf_of(self, request: FakeRequest, der: bytes) -> x509.CertificateSigningRequest | None:
        """The inner request when the agent's signature holds up; None, with the denial, when not."""
        try:
            onbehalf = parse_on_behalf_of(der)
        except CMSError:
            request.message = BAD_SIGNATURE_MESSAGE
            return None
        try:
            onbehalf.agent.verify_directly_issued_by(self.ca_certificate)
        except (ValueError, TypeError, InvalidSignature):
            request.message = UNTRUSTED_AGENT_MESSAGE
            return None
        if not has_agent_eku(onbehalf.agent) or onbehalf.agent.not_valid_after_utc < _utcnow():
            request.message = NO_AGENT_EKU_MESSAGE
            return None
        if not onbehalf.requester:
            request.message = NO_REQUESTER_MESSAGE
            return None
        request.requester = onbehalf.requester
        return onbehalf.csr

    def _decide(self, request: FakeRequest, text: str) -> None:
        try:
            der = base64.b64decode(_PEM_LINES.sub("", text), validate=False)
            wrapped = is_cms(der)
            csr = None if wrapped else x509.load_der_x509_csr(der)
        except ValueError:
            request.message = PARSE_ERROR_MESSAGE
            return
        known = (
            {self.templates.agent} | self.templates.issued | self.templates.pending | self.templates.denied
        )
        if request.template not in known:
            request.message = (
                "Denied by Policy Module  0x80094800, The request was for a certificate template that is not "
                f"supported by the Active Directory Certificate Services policy: {request.template}."
            )
            return
        if wrapped:
            csr = self._on_behalf_of(request, der)
            if csr is None:
                return
        elif request.template != self.templates.agent:
            # Every template but the agent's own needs one Enrollment Agent signature.
            request.message = MISSING_SIGNATURE_MESSAGE
            return
        else:
            request.requester = self.username
        assert csr is not None
        request.csr = csr
        if request.template in self.templates.denied:
            request.message = DENIED_MESSAGE
        elif request.template in self.templates.pending:
            request.status, request.message = "pending", "Taken Under Submission"
        else:
            request.certificate = self._issue(csr, request.template, request.requester)
            request.status, request.message = "issued", "Issued"


_HEAD = (
    '<HTML><Head><Meta HTTP-Equiv="Content-Type" Content-Type="text/html; charset=UTF-8">'
    "<Title>Microsoft Active Directory Certificate Services</Title></Head><Body BgColor=#FFFFFF>"
    "<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080><TR><TD><Font Color=#FFFFFF>"
    '<LocID ID=locMSCertSrv><Font Face="Arial" Size=-1><B><I>Microsoft</I></B> Active Directory Certificate '
    'Services</Font></LocID></Font></TD><TD ID=locHomeAlign Align=Right><A Href="/certsrv">Home</A>'
    "</TD></TR></Table>\r\n"
)
_TAIL = "\r\n</Body></HTML>\r\n"


def _issued_page(request: FakeRequest) -> str:
    return (
        f"{_HEAD}<P ID=locPageTitle> <B> Certificate Issued </B>\r\n"
        "<P ID=locCertIssued>The certificate you requested was issued to you.\r\n"
        f'<Table><TR><TD><A Href="certnew.cer?ReqID={request.id}&amp;Enc=bin">DER encoded</A> or '
        f'<A Href="certnew.cer?ReqID={request.id}&amp;Enc=b64">Base 64 encoded</A></TD></TR></Table>\r\n'
        f'<Script>\tvar sPKCS7="certnew.p7b?ReqID={request.id}&";</Script>{_TAIL}'
    )


def _pending_page(request: FakeRequest) -> str:
    return (
        f"{_HEAD}<P ID=locPageTitle> <B> Certificate Pending </B>\r\n"
        "<P ID=locInfoReqIDAndWait> Your certificate request has been received. However, you must wait for "
        "an administrator to issue the certificate you requested.\r\n"
        f"<P> Your Request Id is {request.id}.\r\n"
        "<P ID=locPleaseReturn> Please return to this web site in a day or two to retrieve your certificate."
        f"\r\n{_TAIL}"
    )


def _denied_page(request: FakeRequest) -> str:
    return (
        f"{_HEAD}<P ID=locPageTitle> <B> Certificate Request Denied </B>\r\n"
        "<P ID=locDenied> Your certificate request was denied.\r\n"
        f'<P> Your Request Id is {request.id}. The disposition message is "{request.message}".\r\n'
        f"<P ID=locContactAdmin> Contact your administrator for further information.{_TAIL}"
    )


def _status_page(disposition: int, message: str) -> str:
    # certnew.cer's answer when there is no certificate to give (still pending, denied, unknown): AD CS's
    # error page, a definition list whose "Disposition message:" entry certsrv reads.
    return (
        f"{_HEAD}<P ID=locPageTitle> <B> Error </B>\r\n<P ID=locContactAdmin>Contact your administrator "
        "for further assistance.\r\n</P>\r\n<DL><DD>\r\n\t<DL>\r\n"
        "\t<DT ID=locModeLabel><Font Size=-1><B>Request Mode:</B></Font></DT><DD>\r\n\t\t - \r\n"
        "\t\t\t<LocID ID=locModeCertFetch>(certnew.cer/certnew.p7b/certcrl.crl certificate/crl fetch)"
        "</LocID>\r\n\t</DD>\r\n"
        f"\t<DT ID=locDispLabel><Font Size=-1><B>Disposition:</B></Font></DT><DD>\r\n\t\t{disposition:X} "
        "<LocID ID=locDispSpacer>-</LocID>\r\n\t\t\t<LocID ID=locDispUnknown>(unknown)</LocID>\r\n\t</DD>\r\n"
        "\t<DT ID=locDispMsgLabel><Font Size=-1><B>Disposition message:</B></Font></DT><DD>\r\n"
        f"\t\t{message}\r\n\t</DD>\r\n\t</DL>\r\n</DD></DL>{_TAIL}"
    )


class _Pages(BaseHTTPRequestHandler):
    adcs: FakeAdcs
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.adcs.username}:{self.adcs.password}".encode()).decode()
        if header == f"Basic {expected}":
            return True
        body = b"<HTML><Body>401 - Unauthorized: Access is denied due to invalid credentials.</Body></HTML>"
        self.send_response(401, "Unauthorized")
        self.send_header("WWW-Authenticate", 'Basic realm="127.0.0.1"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def _send(self, body: bytes | str, content_type: str = "text/html", status: int = 200) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if not self._authorized():
            return
        page = parts.path.lower().rstrip("/")
        if page == "/certsrv":
            self._send(f"{_HEAD}<P ID=locWelcome> Welcome{_TAIL}")
        elif page == "/certsrv/certcarc.asp":
            self._send(f"{_HEAD}<Script>\r\n\tvar nRenewals=0;\r\n</Script>{_TAIL}")
        elif page == "/certsrv/certnew.cer":
            self._certificate(query)
        elif page == "/certsrv/certnew.p7b":
            self._chain(query)
        else:
            self._send("<HTML><Body>404 - File or directory not found.</Body></HTML>", status=404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("ascii", errors="replace")
        if not self._authorized():
            return
        if urlsplit(self.path).path.lower() != "/certsrv/certfnsh.asp":
            self._send("<HTML><Body>404 - File or directory not found.</Body></HTML>", status=404)
            return
        form = {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
        if form.get("Mode") != "newreq":
            self._send(_status_page(1, "(none)"))
            return
        request = self.adcs.submit(form.get("CertRequest", ""), form.get("CertAttrib", ""))
        if request.status == "issued":
            self._send(_issued_page(request))
        elif request.status == "pending":
            self._send(_pending_page(request))
        else:
            self._send(_denied_page(request))

    def _encoded(self, der: bytes, encoding: str, label: str) -> bytes:
        if encoding == "bin":
            return der
        body = base64.encodebytes(der).decode().replace("\n", "\r\n")
        return f"-----BEGIN {label}-----\r\n{body}-----END {label}-----\r\n".encode()

    def _certificate(self, query: dict[str, str]) -> None:
        encoding = query.get("Enc", "bin")
        if query.get("ReqID") == "CACert":
            der = self.adcs.ca_certificate.public_bytes(serialization.Encoding.DER)
            self._send(self._encoded(der, encoding, "CERTIFICATE"), "application/pkix-cert")
            return
        try:
            request = self.adcs.requests.get(int(query.get("ReqID", "")))
        except ValueError:
            request = None
        if request is None:
            self._send(_status_page(1, "(none)"))
        elif request.status == "pending":
            self._send(_status_page(5, "Taken Under Submission"))
        elif request.status == "denied" or request.certificate is None:
            self._send(_status_page(2, request.message))
        else:
            der = request.certificate.public_bytes(serialization.Encoding.DER)
            self._send(self._encoded(der, encoding, "CERTIFICATE"), "application/pkix-cert")

    def _chain(self, query: dict[str, str]) -> None:
        der = pkcs7.serialize_certificates([self.adcs.ca_certificate], serialization.Encoding.DER)
        self._send(self._encoded(der, query.get("Enc", "bin"), "PKCS7"), "application/x-pkcs7-certificates")


def running(directory: Path) -> Iterator[FakeAdcs]:
    """A started fake, stopped afterwards (for fixtures)."""
    fake = FakeAdcs().start(directory)
    try:
        yield fake
    finally:
        fake.stop()
