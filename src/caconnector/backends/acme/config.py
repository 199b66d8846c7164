"""The options of `backend add -type acme`: the CA's directory, the account, and how to answer challenges.

The account key and URL are not given by the operator (though an existing key may be): `backend add`
makes the key on the connector, registers the account, and stores both, the key encrypted.
"""

from __future__ import annotations

import re
import shlex
from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator, model_validator

from caconnector.backends.options import BackendConfig, check_certificates, check_endpoint, option

Challenge = Literal["http-01", "dns-01", "none"]

_BASE64URL = re.compile(r"^[A-Za-z0-9_\-+/]+=*$")
# An hour is longer than any job lease; the default leaves room inside the manager's 120-second lease.
MAX_WAIT_SECONDS = 3600
DEFAULT_WAIT_SECONDS = 60


def split_address(value: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be empty for every interface, or a bracketed IPv6 address) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, e.g. 0.0.0.0:80 or [::]:80")
    return host.strip("[]"), int(port)


class AcmeConfig(BackendConfig):
    type_name: ClassVar[str] = "acme"

    directory: str = option(
        "the ACME directory URL of the CA, e.g. https://acme-v02.api.letsencrypt.org/directory",
        required=True,
        immutable=True,
        metavar="URL",
    )
    email: str | None = option("the contact e-mail address for the ACME account", metavar="E")
    eabkid: str | None = option("the External Account Binding key id the CA gave you", metavar="K")
    eabhmac: SecretStr | None = option(
        "the External Account Binding HMAC key the CA gave you (base64url)", secret=True, metavar="H"
    )
    challenge: Challenge = option(
        "how to prove control of names: http-01, dns-01 (through -hook), or none (the CA's "
        "authorizations are already valid, e.g. pre-validated through External Account Binding)",
        default="http-01",
        metavar="http-01|dns-01|none",
    )
    hook: str | None = option(
        "the command that sets and clears DNS TXT records for dns-01: run as CMD set NAME VALUE, "
        "then CMD clear NAME VALUE (see docs/acme-dns-hook.md)",
        metavar="CMD",
    )
    httpaddress: str = option(
        "where the connector serves http-01 tokens while the CA validates (the CA connects to port 80 "
        "of each name, so forward that here)",
        default="0.0.0.0:80",
        metavar="HOST:PORT",
    )
    cacert: str | None = option(
        "CA certificates (PEM) to trust for the directory's HTTPS instead of the system's (private ACME CAs)",
        file=True,
    )
    roots: str | None = option(
        "root certificates (PEM) to end chains with: ACME CAs send the chain without its root",
        file=True,
    )
    preferredchain: str | None = option(
        "the common name of the issuer to prefer among the CA's alternate chains", metavar="ISSUER_CN"
    )
    wait: int = option(
        "seconds an enroll waits for the CA to issue a finalized order before it reports the order as "
        "pending (it is collected later)",
        default=DEFAULT_WAIT_SECONDS,
        metavar="SECONDS",
    )
    accountkey: SecretStr | None = option(
        "the ACME account's private key (PEM); made at backend add when not given",
        secret=True,
        file=True,
        immutable=True,
    )
    accounturl: str | None = option(
        "the ACME account's URL at the CA; set by backend add when it registers the account",
        immutable=True,
        metavar="URL",
    )

    _directory = field_validator("directory")(classmethod(lambda cls, v: check_endpoint(v)))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("eabhmac")
    @classmethod
    def _eabhmac(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        # base64url as RFC 8555 7.3.4 has it; some CAs hand out plain base64, which decodes the same here.
        if not _BASE64URL.match(text) or len(text.rstrip("=")) % 4 == 1:
            raise ValueError("must be the base64url HMAC key the CA gave you")
        return SecretStr(text)

    @field_validator("hook")
    @classmethod
    def _hook(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"is not a command line ({exc})") from None
        if not words:
            raise ValueError("must be a command")
        return value

    _certificates = field_validator("cacert", "roots")(classmethod(lambda cls, v: check_certificates(v)))

    @field_validator("httpaddress")
    @classmethod
    def _httpaddress(cls, value: str) -> str:
        split_address(value)
        return value

    @field_validator("wait")
    @classmethod
    def _wait(cls, value: int) -> int:
        if not 0 <= value <= MAX_WAIT_SECONDS:
            raise ValueError(f"must be a number of seconds between 0 and {MAX_WAIT_SECONDS}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AcmeConfig:
        if (self.eabkid is None) != (self.eabhmac is None):
            raise ValueError("-eabkid and -eabhmac go together")
        if self.challenge == "dns-01" and self.hook is None:
            raise ValueError("-challenge dns-01 needs -hook, the command that sets the TXT records")
        return self
