"""The Web Enrollment transport: the `certsrv` client over the pages IIS serves under /certsrv.

certsrv quirks this module handles:

- It builds every URL as `https://SERVER/certsrv/...`. `-endpoint` may name another scheme, port or path,
  so its session rewrites that prefix to the configured base URL.
- requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify` (the environment wins
  over the session setting unless a request passes `verify` itself), which would silently drop -cacert:
  the session passes its `verify` with every request.
- `get_cert` submits and fetches in one call, so the request id would be known only after the
  certificate came back. The backend must record the id first (a retry then collects, never submits
  again), so `submit` posts certfnsh.asp itself, through certsrv's session, and parses the page the way
  certsrv does; fetching goes through certsrv's `get_existing_cert`.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certsrv
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient
from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.msca.transport import Disposition, Outcome

TIMEOUT_SECONDS = 30.0
# certsrv logs every request's headers and body at DEBUG: the Basic Authorization header (the password,
# base64) and the request. Whatever level a host sets, that logger stays above DEBUG.
logging.getLogger("certsrv").setLevel(logging.INFO)

# The pages' wording, as certsrv reads it (and real AD CS writes it).
_ISSUED = re.compile(r"certnew\.cer\?ReqID=(\d+)&")
_PENDING = re.compile(r"Certificate Pending")
_REQUEST_ID = re.compile(r"Your Request Id is (\d+)")
_DISPOSITION = re.compile(r'The disposition message is "([^"]+)')
# certnew.cer's error page puts the message in a table cell after "Disposition message:".
_PAGE_DISPOSITION = re.compile(r"Disposition message:[^\t]+\t\t([^\r\n]+)")
_STILL_PENDING = re.compile(r"Taken Under Submission|Certificate Pending|pending", re.IGNORECASE)
_RENEWALS = re.compile(r"var nRenewals=(\d+);")
_TAG = re.compile(r"<[^>]+>")


class _RebasedSession(requests.Session):
    """A session that sends certsrv's `https://SERVER/certsrv` URLs to the configured base URL, and
    passes its own `verify` with each request so the environment cannot replace it."""

    def __init__(self, prefix: str, base_url: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._base_url = base_url

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        verb = method.decode() if isinstance(method, bytes) else method
        text = url.decode() if isinstance(url, bytes) else url
        if text.startswith(self._prefix):
            text = self._base_url + text[len(self._prefix) :]
        kwargs.setdefault("verify", self.verify)
        return super().request(verb, text, *args, **kwargs)


def _pem(der: bytes, label: str) -> str:
    body = base64.b64encode(der).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _page_text(page: str) -> str:
    return html.unescape(_TAG.sub(" ", page))


class WebEnrollment:
    """One AD CS Web Enrollment server, through certsrv."""

    def __init__(self, config: MscaConfig, name: str, trust_file: Path | None) -> None:
        self._name = name
        self._base_url = config.base_url
        netloc = urlsplit(self._base_url).netloc
        password = config.password.get_secret_value() if config.password is not None else ""
        # Kerberos: certsrv has no such method; its session gets a SPNEGO auth object below.
        auth_method = "basic" if config.auth == "kerberos" else config.auth
        try:
            self._certsrv = certsrv.Certsrv(
                netloc,
                config.username or "",
                password,
                auth_method=auth_method,
                cafile=str(trust_file) if trust_file is not None else None,
                timeout=TIMEOUT_SECONDS,
            )
        except ImportError as exc:  # requests_ntlm for -auth ntlm
            raise ConfigError(
                f"backend {name!r}: -auth {config.auth} needs a package that is not installed ({exc.name}); "
                "install caconnector[msca]"
            ) from None
        session = _RebasedSession(f"https://{netloc}/certsrv", self._base_url)
        session.headers.update(self._certsrv.session.headers)
        session.verify = self._certsrv.session.verify
        session.auth = self._certsrv.session.auth
        if config.auth == "kerberos":
            session.auth = _spnego(name)
        self._certsrv.session = session

    # -- Transport ------------------------------------------------------------------------------------

    def submit(self, request: bytes, template: str) -> Disposition:
        label = "PKCS7" if _is_cms(request) else "CERTIFICATE REQUEST"
        data = {
            "Mode": "newreq",
            "CertRequest": _pem(request, label),
            "CertAttrib": f"CertificateTemplate:{template}\r\n",
            "FriendlyType": "Saved-Request Certificate",
            "TargetStoreFlags": "0",
            "SaveCert": "yes",
        }
        with self._errors("certfnsh.asp"):
            response = self._certsrv._post(
                f"https://{urlsplit(self._base_url).netloc}/certsrv/certfnsh.asp", data=data
            )
        page = response.text
        issued = _ISSUED.search(page)
        if issued:
            return Disposition(Outcome.ISSUED, int(issued.group(1)))
        request_id = _REQUEST_ID.search(page)
        number = int(request_id.group(1)) if request_id else None
        if _PENDING.search(page) and number is not None:
            return Disposition(Outcome.PENDING, number, "Taken Under Submission")
        # Denied: "The disposition message is "..."". A request the CA could not even process lands on
        # the error page instead, whose "Disposition message:" entry says why.
        found = _DISPOSITION.search(page) or _PAGE_DISPOSITION.search(page)
        message = _page_text(found.group(1)).strip() if found else ""
        return Disposition(
            Outcome.DENIED, number, message or "the CA denied the request without a disposition message"
        )

    def retrieve(self, request_id: int) -> Disposition:
        with self._errors("certnew.cer"):
            try:
                pem = self._certsrv.get_existing_cert(str(request_id), "b64")
            except certsrv.CouldNotRetrieveCertificateException as exc:
                # Not a certificate: an HTML page saying why (still pending, denied, no such request).
                return _not_issued(request_id, str(exc.response))
        return Disposition(Outcome.ISSUED, request_id, certificate=self._certificate(pem, "the certificate"))

    def ca_certificates(self) -> list[x509.Certificate]:
        with self._errors("certcarc.asp"):
            current = self._certsrv.get_ca_cert("b64")
        certificate = self._certificate(current, "the CA certificate")
        return [certificate, *(c for c in self._chain() if c != certificate)]

    def _chain(self) -> list[x509.Certificate]:
        """The CA's chain from certnew.p7b. A root CA's chain is the CA itself, so a server that does not
        answer here costs nothing but the parents of an issuing CA."""
        try:
            with self._errors("certnew.p7b"):
                data = self._certsrv.get_chain("bin")
        except (Transient, ConfigError, Rejected):
            return []
        try:
            if b"-----BEGIN" in data:
                return list(pkcs7.load_pem_pkcs7_certificates(data))
            return list(pkcs7.load_der_pkcs7_certificates(data))
        except ValueError:
            return []

    # -- helpers --------------------------------------------------------------------------------------

    def _certificate(self, data: bytes, what: str) -> x509.Certificate:
        try:
            return (
                x509.load_pem_x509_certificate(data)
                if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data)
            )
        except ValueError:
            raise Transient(
                f"backend {self._name!r}: the Web Enrollment server sent {what} in a form we cannot read"
            ) from None

    @contextmanager
    def _errors(self, page: str) -> Iterator[None]:
        """certsrv's and requests' exceptions, as the backend error tree, naming the option to fix."""
        where = f"{self._base_url}/{page}"
        try:
            yield
        except BackendError:
            raise
        except requests.exceptions.SSLError:
            raise ConfigError(
                f"backend {self._name!r}: the TLS certificate of {self._base_url} is not trusted; give "
                "the CA that issued it with -cacert"
            ) from None
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise AuthError(
                    f"backend {self._name!r}: {where} refused the credentials (HTTP {status}); check "
                    "-username and -password (and -auth)"
                ) from None
            if status == 404:
                raise ConfigError(
                    f"backend {self._name!r}: {where} does not exist (HTTP 404); check -endpoint (the Web "
                    "Enrollment base URL, e.g. https://SERVER/certsrv)"
                ) from None
            if status >= 500 or status == 429:
                raise Transient(f"backend {self._name!r}: {where} answered HTTP {status}") from None
            raise Rejected(f"backend {self._name!r}: {where} answered HTTP {status}") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise Transient(
                f"backend {self._name!r}: cannot reach {self._base_url} ({type(exc).__name__}); check "
                "-server or -endpoint, and that the server is up"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise Transient(f"backend {self._name!r}: {where}: {type(exc).__name__}") from None
        except certsrv.CouldNotRetrieveCertificateException:
            raise Transient(
                f"backend {self._name!r}: {where} sent a page instead of the certificate asked for"
            ) from None
        except AttributeError:
            # certsrv's regular expressions found nothing: the page is not AD CS's.
            raise ConfigError(
                f"backend {self._name!r}: {where} is not an AD CS Web Enrollment page; check -endpoint"
            ) from None


def _not_issued(request_id: int, page: str) -> Disposition:
    found = _PAGE_DISPOSITION.search(page) or _DISPOSITION.search(page)
    message = _page_text(found.group(1)).strip() if found else ""
    if _STILL_PENDING.search(page) and "denied" not in page.lower():
        return Disposition(Outcome.PENDING, request_id, message or "Taken Under Submission")
    return Disposition(Outcome.DENIED, request_id, message or _page_text(page).strip()[:300])


def _is_cms(request: bytes) -> bool:
    from caconnector.backends.msca.cms import is_cms  # noqa: PLC0415  (asn1crypto only when submitting)

    return is_cms(request)


def _spnego(name: str) -> Callable[..., Any]:
    try:
        from requests_gssapi import HTTPSPNEGOAuth  # type: ignore[import-not-found]  # noqa: PLC0415  (optional)
    except ImportError:
        raise ConfigError(
            f"backend {name!r}: -auth kerberos over -transport web needs the requests-gssapi package; "
            "install it, or use -auth ntlm or -auth basic with -username and -password"
        ) from None
    auth: Callable[..., Any] = HTTPSPNEGOAuth()
    return auth
