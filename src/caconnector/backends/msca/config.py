"""The options of `backend add -type msca`: where AD CS is, how to reach it, who to authenticate as, and
the Enrollment Agent certificate the connector signs on-behalf-of requests with.

The reference document's sample command (`-server HOST -ca CA_COMMON_NAME`) is complete on its own: RPC
with Kerberos from the host's keytab or credential cache. The Enrollment Agent certificate (`-eacert`,
`-eakey`) is normally written by `backend msca enroll-agent-cert`; giving both imports one made elsewhere.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from cryptography import x509
from pydantic import SecretStr, field_validator, model_validator

from caconnector.backends.options import BackendConfig, check_certificates, check_endpoint, option
from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import load_private_key, public_keys_equal

# DOMAIN\user (the down-level logon name), user@domain (a UPN), or a bare user of the server's domain.
_ACCOUNT = re.compile(r"^(?:[^\\/@\s]+\\[^\\/@\s]+|[^\\/@\s]+@[^\\/@\s]+|[^\\/@\s]+)$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d{1,5})?$")


def _account(value: str | None) -> str | None:
    if value is not None and not _ACCOUNT.match(value):
        raise ValueError(r"must be an account name such as CORP\svc-connector or svc-connector@corp.example")
    return value


class MscaConfig(BackendConfig):
    type_name: ClassVar[str] = "msca"

    server: str = option("the host name of the server hosting the Microsoft CA", required=True)
    ca: str = option("the CA's common name, e.g. local-SectigoTestCA-CA", required=True)
    transport: Literal["rpc", "web"] = option(
        "how to reach AD CS: rpc (MS-ICPR over SMB) or web (the certsrv Web Enrollment pages)",
        default="rpc",
        metavar="rpc|web",
    )
    auth: Literal["kerberos", "ntlm", "basic"] = option(
        "kerberos (the host's keytab or credential cache), ntlm or basic (web only), both with "
        "-username and -password",
        default="kerberos",
        metavar="kerberos|ntlm|basic",
    )
    username: str | None = option(r"the account for NTLM or Basic authentication, as DOMAIN\user")
    password: SecretStr | None = option("the password of -username", secret=True)
    endpoint: str | None = option("the Web Enrollment URL when not https://SERVER/certsrv", metavar="URL")
    cacert: str | None = option(
        "the CA certificate(s) that issued the Web Enrollment server's TLS certificate (PEM or DER)",
        file=True,
    )
    requester: str | None = option(
        r"the requester named in on-behalf-of requests, as DOMAIN\user (default: -username)"
    )
    eacert: SecretStr | None = option(
        "the Enrollment Agent certificate (written by backend msca enroll-agent-cert)", secret=True, file=True
    )
    eakey: SecretStr | None = option(
        "the private key of the Enrollment Agent certificate (written by backend msca enroll-agent-cert)",
        secret=True,
        file=True,
    )

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))
    _username = field_validator("username", "requester")(classmethod(lambda cls, v: _account(v)))

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError("must be a host name such as ca01.corp.example (no scheme, no path)")
        return value

    _certificates = field_validator("cacert")(classmethod(lambda cls, v: check_certificates(v)))

    @model_validator(mode="after")
    def _credentials(self) -> MscaConfig:
        if self.auth == "basic" and self.transport != "web":
            raise ValueError("-auth basic works only with -transport web (RPC needs kerberos or ntlm)")
        if self.auth in ("ntlm", "basic") and (not self.username or self.password is None):
            raise ValueError(f"-auth {self.auth} needs -username and -password")
        if self.password is not None and not self.username:
            raise ValueError("-password needs -username")
        return self

    @model_validator(mode="after")
    def _agent(self) -> MscaConfig:
        if (self.eacert is None) != (self.eakey is None):
            raise ValueError("-eacert and -eakey go together")
        if self.eacert is None or self.eakey is None:
            return self
        try:
            certificate = load_certificates(self.eacert.get_secret_value().encode())[0]
        except PKIError as exc:
            raise ValueError(f"-eacert: {exc}") from None
        try:
            key = load_private_key(self.eakey.get_secret_value().encode())
        except PKIError as exc:
            raise ValueError(f"-eakey: {exc}") from None
        if not public_keys_equal(certificate.public_key(), key.public_key()):
            raise ValueError("-eakey does not belong to the certificate given with -eacert")
        return self

    def agent_certificate(self) -> x509.Certificate | None:
        """The Enrollment Agent certificate, when one is stored."""
        if self.eacert is None:
            return None
        return load_certificates(self.eacert.get_secret_value().encode())[0]

    @property
    def base_url(self) -> str:
        """Where the Web Enrollment pages are."""
        return self.endpoint or f"https://{self.server}/certsrv"

    @property
    def requester_name(self) -> str | None:
        return self.requester or self.username


def split_account(username: str | None) -> tuple[str, str]:
    """DOMAIN\\user or user@domain as (domain, user); a bare user has an empty domain."""
    if not username:
        return "", ""
    if "\\" in username:
        domain, user = username.split("\\", 1)
        return domain, user
    if "@" in username:
        user, domain = username.split("@", 1)
        return domain, user
    return "", username
