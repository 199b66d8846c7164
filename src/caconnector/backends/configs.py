"""The config model of every built-in backend type, by name: what `backend add` validates, the CLI offers
and the registry reads for a type whatever its implementation.

The implemented types keep their model in their own package (`local/config.py`, ...); the models of the
types not implemented yet live here, so their options validate and `backend add` can refuse them as not
available in this version rather than as unknown. The base and the markers are in `options`.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator, model_validator

from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.gcpcas.config import GcpcasConfig
from caconnector.backends.local.config import LocalConfig
from caconnector.backends.options import BackendConfig, check_endpoint, expect_config, option
from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import load_private_key, public_keys_equal

# Re-exported: the connector and the tests name every model and the base through this module.
__all__ = [
    "BUILTIN_CONFIGS",
    "AcmeConfig",
    "AcmpcaConfig",
    "BackendConfig",
    "DigicertConfig",
    "EntrustConfig",
    "GcpcasConfig",
    "LocalConfig",
    "MscaConfig",
    "expect_config",
    "option_names",
]


class EntrustConfig(BackendConfig):
    type_name: ClassVar[str] = "entrust"

    username: str = option("the API user name given in the Entrust Enterprise UI", required=True)
    apikey: SecretStr = option("the Entrust API key generated for that user", secret=True, required=True)
    cert: SecretStr = option(
        "the user's active Entrust certificate (PEM or DER)", secret=True, file=True, required=True
    )
    key: SecretStr = option(
        "the private key of that certificate (PEM or DER, unencrypted PKCS#8)",
        secret=True,
        file=True,
        required=True,
    )
    endpoint: str | None = option("another base URL for the Entrust ECS API (tests)", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))

    @model_validator(mode="after")
    def _cert_matches_key(self) -> EntrustConfig:
        try:
            certificates = load_certificates(self.cert.get_secret_value().encode())
        except PKIError as exc:
            raise ValueError(f"-cert: {exc}") from None
        try:
            key = load_private_key(self.key.get_secret_value().encode())
        except PKIError as exc:
            raise ValueError(f"-key: {exc}") from None
        if not public_keys_equal(certificates[0].public_key(), key.public_key()):
            raise ValueError("-key does not belong to the certificate given with -cert")
        return self


class MscaConfig(BackendConfig):
    type_name: ClassVar[str] = "msca"

    server: str = option("the host name of the server hosting the Microsoft CA", required=True)
    ca: str = option("the CA's common name, e.g. corp-ISSUING-CA", required=True)
    transport: Literal["rpc", "web"] = option(
        "how to reach AD CS: rpc (MS-ICPR over SMB) or web (the certsrv Web Enrollment pages)",
        default="rpc",
        metavar="rpc|web",
    )
    auth: Literal["kerberos", "ntlm"] = option(
        "kerberos (the host's keytab or credential cache) or ntlm (with -username and -password)",
        default="kerberos",
        metavar="kerberos|ntlm",
    )
    domain: str | None = option("the Windows domain of -username, e.g. CORP")
    username: str | None = option("the account for NTLM authentication")
    password: SecretStr | None = option("the password of -username", secret=True)
    endpoint: str | None = option("the Web Enrollment URL when not https://SERVER/certsrv", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))

    @model_validator(mode="after")
    def _credentials(self) -> MscaConfig:
        if self.auth == "ntlm" and (not self.username or self.password is None):
            raise ValueError("-auth ntlm needs -username and -password")
        if self.password is not None and not self.username:
            raise ValueError("-password needs -username")
        return self


_ACME_CHALLENGES = Literal["http-01", "dns-01", "none"]


class AcmeConfig(BackendConfig):
    type_name: ClassVar[str] = "acme"

    directory: str = option("the ACME directory URL of the CA", required=True, metavar="URL")
    email: str | None = option("the contact e-mail address for the ACME account", metavar="E")
    eabkid: str | None = option("the External Account Binding key id the CA gave you", metavar="K")
    eabhmac: SecretStr | None = option(
        "the External Account Binding HMAC key (base64url)", secret=True, metavar="H"
    )
    challenge: _ACME_CHALLENGES = option(
        "how to prove control of names: http-01, dns-01, or none (the CA pre-validates through EAB)",
        default="http-01",
        metavar="http-01|dns-01|none",
    )

    _directory = field_validator("directory")(classmethod(lambda cls, v: check_endpoint(v)))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", value):
            raise ValueError("must be an e-mail address")
        return value

    @model_validator(mode="after")
    def _eab_pair(self) -> AcmeConfig:
        if (self.eabkid is None) != (self.eabhmac is None):
            raise ValueError("-eabkid and -eabhmac go together")
        return self


BUILTIN_CONFIGS: dict[str, type[BackendConfig]] = {
    model.type_name: model
    for model in (
        LocalConfig,
        AcmpcaConfig,
        DigicertConfig,
        EntrustConfig,
        GcpcasConfig,
        MscaConfig,
        AcmeConfig,
    )
}


def option_names() -> list[str]:
    """Every option name of every built-in type, in declaration order: what `backend add` accepts."""
    names: dict[str, None] = {}
    for model in BUILTIN_CONFIGS.values():
        names.update(dict.fromkeys(model.model_fields))
    return list(names)
