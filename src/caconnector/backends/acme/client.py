"""The ACME side of the `acme` backend: a narrow seam over the `acme` package's ClientV2 (certbot's library)
and the one place its exceptions become the backend error tree.

This module imports `acme`, `josepy` and `requests` at the top: it is imported only when a backend of this
type is provisioned or opened, and the package's factory turns a missing extra into a message naming it.
(`acme` here is the top-level library, not this package: every import in this module is absolute.)
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import acme.client
import acme.errors
import acme.messages
import josepy
import josepy.jwa
import josepy.jwk
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from caconnector import __version__
from caconnector.backends.base import RenewalWindow
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Rejected, Transient
from caconnector.pki.keys import PrivateKey

log = logging.getLogger(__name__)

NETWORK_TIMEOUT_SECONDS = 30
# The library retries a badNonce once; a CA that rejects nonces at random (pebble does, on purpose) can
# reject the retry too. Each attempt takes a fresh nonce from the previous answer, so a few suffice.
NONCE_ATTEMPTS = 10
# RFC 8555 problem types (urn:ietf:params:acme:error:...) by what the operator can do about them.
_AUTH_PROBLEMS = {"unauthorized", "accountDoesNotExist", "externalAccountRequired", "userActionRequired"}
_TRANSIENT_PROBLEMS = {"badNonce", "rateLimited", "serverInternal"}
_CONFIG_PROBLEMS = {"badPublicKey", "badSignatureAlgorithm", "invalidContact", "unsupportedContact"}


class AcmeProblem(BackendError):
    """Raised by the seam for a problem document the caller handles itself (`expected` codes)."""

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(message)
        self.problem_code = code


def describe_problem(error: acme.messages.Error) -> str:
    """The CA's problem document as one line the operator can read: type, detail, then each subproblem."""
    code = error.code or error.typ
    text = f"{code}: {error.detail}" if error.detail else str(code)
    for sub in error.subproblems or ():
        who = f" ({sub.identifier.value})" if sub.identifier is not None else ""
        text += f"; {sub.code or sub.typ}{who}: {sub.detail}"
    return text


class _Network(acme.client.ClientNetwork):
    """The library's network with badNonce retried more than once, and the last answer's Retry-After
    kept (the library's problem exception carries no headers, and rateLimited needs it)."""

    last_retry_after: float | None = None

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_retry_after = _retry_after(response.headers.get("Retry-After"))
        return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(1, NONCE_ATTEMPTS):
            try:
                return self._post_once(*args, **kwargs)
            except acme.messages.Error as error:
                if error.code != "badNonce":
                    raise
                log.debug("badNonce from the CA, attempt %d of %d", attempt, NONCE_ATTEMPTS)
        return self._post_once(*args, **kwargs)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def jwk_of(key: PrivateKey) -> tuple[josepy.jwk.JWK, josepy.jwa.JWASignature]:
    """The JWK and JWS algorithm for an account key (EC P-256/P-384 or RSA, as RFC 8555 CAs take)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithms = {"secp256r1": josepy.jwa.ES256, "secp384r1": josepy.jwa.ES384}
        if key.curve.name not in algorithms:
            raise ConfigError(
                f"-accountkey: the curve {key.curve.name} is not one ACME CAs take (P-256, P-384)"
            )
        return josepy.jwk.JWKEC(key=key), algorithms[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return josepy.jwk.JWKRSA(key=key), josepy.jwa.RS256
    raise ConfigError("-accountkey must be an EC (P-256, P-384) or RSA private key")


@contextmanager
def acme_errors(
    backend: str,
    action: str,
    expected: frozenset[str] = frozenset(),
    retry_after: Callable[[], float | None] = lambda: None,
) -> Iterator[None]:
    """The one place the `acme` package's and requests' exceptions become backend errors. Problem codes
    in `expected` come out as AcmeProblem for the caller to handle; `retry_after` gives the Retry-After
    of the CA's failing answer (the library's problem exception carries no headers)."""
    try:
        yield
    except BackendError:
        raise
    except acme.messages.Error as error:
        raise _problem(backend, action, error, expected, retry_after()) from None
    except acme.errors.ConflictError as error:
        raise Rejected(
            f"backend {backend!r}: {action}: the CA reports a conflict ({error.location})"
        ) from None
    except requests.exceptions.SSLError as error:
        raise ConfigError(
            f"backend {backend!r}: {action}: the CA's TLS certificate is not trusted ({_first_line(error)}); "
            "give the CA certificates to trust with -cacert"
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
        raise Transient(
            f"backend {backend!r}: {action}: cannot reach the CA ({_first_line(error)})"
        ) from None
    except acme.errors.ClientError as error:
        raise _client_error(backend, action, error) from None
    except (acme.errors.Error, josepy.errors.Error, ValueError) as error:
        # An answer the library could not read: a broken or non-ACME server; worth another try later.
        raise Transient(
            f"backend {backend!r}: {action}: the CA's answer could not be read ({_first_line(error)})"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def _problem(
    backend: str, action: str, error: acme.messages.Error, expected: frozenset[str], retry_after: float | None
) -> BackendError:
    message = f"backend {backend!r}: {action}: the CA answered {describe_problem(error)}"
    code = error.code
    if code in expected:
        return AcmeProblem(code, message)
    if code in _TRANSIENT_PROBLEMS:
        return Transient(message, retry_after=retry_after)
    if code in _AUTH_PROBLEMS:
        return AuthError(message)
    if code in _CONFIG_PROBLEMS:
        return ConfigError(message)
    return Rejected(message)


def _client_error(backend: str, action: str, error: acme.errors.ClientError) -> BackendError:
    response = error.args[0] if error.args else None
    if isinstance(response, tuple) and response:
        response = response[0]
    if isinstance(response, requests.Response):
        status = response.status_code
        where = (
            f"backend {backend!r}: {action}: the CA answered HTTP {status} without an ACME problem document"
        )
        if status >= 500 or status == 429:
            return Transient(where, retry_after=_retry_after(response.headers.get("Retry-After")))
        return Rejected(where)
    return Transient(f"backend {backend!r}: {action}: {_first_line(error)}")


@dataclass(frozen=True)
class Downloaded:
    """A certificate as the CA serves it: the full chain PEM, and the alternate chains when asked for."""

    fullchain_pem: str
    alternates: tuple[str, ...] = ()


class AcmeClient:
    """One ACME account at one CA: the calls the backend makes, each mapped through `acme_errors`."""

    def __init__(self, *, backend: str, client: acme.client.ClientV2, network: _Network, key: josepy.jwk.JWK):
        self._backend = backend
        self._client = client
        self._network = network
        self.key = key

    @classmethod
    def connect(
        cls,
        *,
        backend: str,
        directory_url: str,
        key: PrivateKey,
        account_url: str | None,
        verify: str | bool = True,
    ) -> AcmeClient:
        """Fetch the directory. `verify` is a CA bundle path, or True for the system's trust."""
        jwk, alg = jwk_of(key)
        network = _Network(
            key=jwk,
            alg=alg,
            verify_ssl=verify,  # type: ignore[arg-type]  # requests takes a bundle path here too
            user_agent=f"caconnector/{__version__} acme-python",
            timeout=NETWORK_TIMEOUT_SECONDS,
        )
        if account_url is not None:
            network.account = acme.messages.RegistrationResource(
                uri=account_url, body=acme.messages.Registration()
            )
        action = f"reading the ACME directory {directory_url} (-directory)"
        with acme_errors(backend, action, retry_after=lambda: network.last_retry_after):
            try:
                response = network.get(directory_url)
                document = response.json()
            except acme.errors.ClientError as error:
                raise ConfigError(
                    f"backend {backend!r}: -directory {directory_url} is not an ACME directory "
                    f"({_first_line(error)})"
                ) from None
            if not isinstance(document, dict) or not {"newNonce", "newAccount", "newOrder"} <= set(document):
                raise ConfigError(
                    f"backend {backend!r}: -directory {directory_url} is not an ACME directory "
                    "(its JSON has no newNonce, newAccount and newOrder)"
                )
            directory = acme.messages.Directory.from_json(document)
        return cls(backend=backend, client=acme.client.ClientV2(directory, network), network=network, key=jwk)

    def _errors(self, action: str, expected: frozenset[str] = frozenset()) -> AbstractContextManager[None]:
        network = self._network
        return acme_errors(self._backend, action, expected, retry_after=lambda: network.last_retry_after)

    # -- account ----------------------------------------------------------------------------------------

    @property
    def requires_eab(self) -> bool:
        return self._client.external_account_required()

    def register(self, email: str | None, eab_kid: str | None, eab_hmac: str | None) -> str:
        """Create the account (or find the one this key already has) and return its URL."""
        eab = None
        if eab_kid is not None and eab_hmac is not None:
            eab = acme.messages.ExternalAccountBinding.from_data(
                account_public_key=self.key.public_key(),
                kid=eab_kid,
                hmac_key=eab_hmac,
                directory=self._client.directory,
            )
        registration = acme.messages.NewRegistration.from_data(
            email=email, terms_of_service_agreed=True, external_account_binding=eab
        )
        with self._errors("registering the ACME account", expected=frozenset(_AUTH_PROBLEMS | {"malformed"})):
            try:
                created = self._client.new_account(registration)
            except acme.errors.ConflictError as existing:  # this key has an account already: use it
                self._network.account = acme.messages.RegistrationResource(
                    uri=existing.location, body=acme.messages.Registration()
                )
                return existing.location
        return str(created.uri)

    def check_account(self) -> None:
        """POST-as-GET the account: refused when it was deactivated or the CA forgot it."""
        account = self._network.account
        if account is None:
            raise ConfigError(
                f"backend {self._backend!r}: no ACME account is registered; add the backend again"
            )
        with self._errors("reading the ACME account"):
            response = self._client._post_as_get(account.uri)
        status = response.json().get("status")
        if status != "valid":
            raise AuthError(f"backend {self._backend!r}: the ACME account {account.uri} is {status}")

    # -- orders -------------------------------------------------------------------------------------------

    def new_order(self, csr_pem: bytes) -> tuple[str, acme.messages.Order]:
        with self._errors("placing the order"):
            order = self._client.new_order(csr_pem)
        if not order.uri:
            raise Transient(f"backend {self._backend!r}: the CA created an order but did not say its URL")
        return order.uri, order.body

    def order(self, url: str) -> acme.messages.Order:
        with self._errors(f"reading the order {url}"):
            response = self._client._post_as_get(url)
            order: acme.messages.Order = acme.messages.Order.from_json(response.json())
        return order

    def authorization(self, url: str) -> acme.messages.AuthorizationResource:
        with self._errors(f"reading the authorization {url}"):
            response = self._client._post_as_get(url)
            return acme.messages.AuthorizationResource(
                body=acme.messages.Authorization.from_json(response.json()), uri=url
            )

    def answer(self, challenge: acme.messages.ChallengeBody) -> None:
        with self._errors(f"answering the {challenge.chall.typ} challenge"):
            self._client.answer_challenge(challenge, challenge.response(self.key))

    def finalize(self, order_url: str, order: acme.messages.Order, csr_pem: bytes) -> acme.messages.Order:
        resource = acme.messages.OrderResource(uri=order_url, body=order, csr_pem=csr_pem)
        with self._errors("finalizing the order", expected=frozenset({"orderNotReady"})):
            return self._client.begin_finalization(resource).body

    def download(self, certificate_url: str, alternates: bool) -> Downloaded:
        with self._errors("downloading the certificate"):
            response = self._client._post_as_get(certificate_url)
            others: list[str] = []
            if alternates:
                for url in self._client._get_links(response, "alternate"):
                    others.append(self._client._post_as_get(url).text)
        return Downloaded(response.text, tuple(others))

    @property
    def retry_after(self) -> float | None:
        """The Retry-After of the CA's last answer, in seconds."""
        return self._network.last_retry_after

    def revoke(self, certificate: x509.Certificate, reason: int) -> None:
        with self._errors("revoking the certificate", expected=frozenset({"alreadyRevoked"})):
            self._client.revoke(certificate, reason)

    # -- ACME Renewal Information (RFC 9773) -------------------------------------------------------------

    def renewal_window(self, certificate: x509.Certificate) -> RenewalWindow | None:
        """The CA's suggested renewal window, where its directory offers renewalInfo. Advisory: any
        failure is logged and gives None, never a failed issuance."""
        try:
            base = self._client.directory["renewalInfo"]
        except KeyError:
            return None
        url = str(base).rstrip("/")
        try:
            url = f"{url}/{renewal_certificate_id(certificate)}"
            document = self._network.get(url).json()
            window = document["suggestedWindow"]
            start = _rfc3339(window["start"])
            end = _rfc3339(window["end"])
        except (
            acme.errors.Error,
            acme.messages.Error,
            requests.RequestException,
            x509.ExtensionNotFound,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            log.warning(
                "backend %r: no renewal information from %s (%s)", self._backend, url, _first_line(exc)
            )
            return None
        explanation = document.get("explanationURL")
        return RenewalWindow(start, end, explanation if isinstance(explanation, str) else None)


def _rfc3339(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError("not an RFC 3339 time")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("an RFC 3339 time without its offset")
    return parsed.astimezone(dt.UTC)


def renewal_certificate_id(certificate: x509.Certificate) -> str:
    """RFC 9773's certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER
    content bytes), both unpadded."""
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise ValueError("the certificate's Authority Key Identifier has no key identifier")
    serial = certificate.serial_number
    serial_bytes = serial.to_bytes(math.ceil((serial.bit_length() + 1) / 8), "big", signed=True)
    return (
        f"{josepy.b64.b64encode(aki.key_identifier).decode()}.{josepy.b64.b64encode(serial_bytes).decode()}"
    )
