"""Typed config models for every backend type: they drive the CLI options, validation and the UI.

Field names are the CLI option names (`-accesskeyid`, `-region`, ...). Each field carries a description
(shown in help and in error messages) and markers in `json_schema_extra`:

- `secret`: stored encrypted, masked in `backend show`, never printed or logged;
- `file`: the option takes a path; the CLI reads the file and the model holds its content, so the
  original can be deleted after `backend add`;
- `immutable`: fixed at `backend add` (e.g. the local CA's key); `backend update` refuses to change it.

A model validates what it can without the network; `check()` tests the rest against the CA.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import load_private_key, public_keys_equal


def option(
    description: str,
    *,
    default: Any = None,
    secret: bool = False,
    file: bool = False,
    immutable: bool = False,
    metavar: str | None = None,
    required: bool = False,
) -> Any:
    """A config field with the markers the CLI and the store read. `required` fields have no default."""
    extra: dict[str, Any] = {"secret": secret, "file": file, "immutable": immutable}
    if metavar:
        extra["metavar"] = metavar
    if required:
        return Field(description=description, json_schema_extra=extra)
    return Field(default=default, description=description, json_schema_extra=extra)


def _marker(model: type[BaseModel], field: str, name: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return bool(isinstance(extra, dict) and extra.get(name))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_endpoint(url: str | None) -> str | None:
    """https only, except plain http on loopback (tests, local peers)."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be a URL such as https://host[:port]/path")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("must use https:// (plain http:// is accepted only for loopback addresses)")
    return url.rstrip("/")


class BackendConfig(BaseModel):
    """Base of every backend type's config. Frozen, and unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    type_name: ClassVar[str]

    @classmethod
    def is_secret(cls, field: str) -> bool:
        return _marker(cls, field, "secret")

    @classmethod
    def is_file(cls, field: str) -> bool:
        return _marker(cls, field, "file")

    @classmethod
    def is_immutable(cls, field: str) -> bool:
        return _marker(cls, field, "immutable")

    @classmethod
    def metavar(cls, field: str) -> str:
        extra = cls.model_fields[field].json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get("metavar"), str):
            return str(extra["metavar"])
        return "FILE" if cls.is_file(field) else field.upper()

    def public_values(self) -> dict[str, Any]:
        """Non-secret values that are set, for storage and display."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if value is not None and not self.is_secret(name)
        }

    def secret_values(self) -> dict[str, str]:
        """Secret values that are set, in clear, for the encrypted store only."""
        values: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if self.is_secret(name) and value is not None:
                values[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return values


# AWS access key ids are upper-case alphanumerics (AKIA..., ASIA...); regions look like us-east-1,
# us-gov-west-1, ap-southeast-4.
_AWS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


class AcmpcaConfig(BackendConfig):
    type_name: ClassVar[str] = "acmpca"

    accesskeyid: str = option(
        "the AWS access key ID of the IAM user that represents the connector", required=True
    )
    secretaccesskey: SecretStr = option(
        "the AWS secret access key of that IAM user", secret=True, required=True
    )
    region: str = option("the region where the private CA lives, e.g. us-east-1", required=True)
    endpoint: str | None = option(
        "another base URL for the ACM PCA API (private endpoints, tests)", metavar="URL"
    )
    auditbucket: str | None = option("an S3 bucket for audit reports, which scan needs", metavar="BUCKET")

    @field_validator("accesskeyid")
    @classmethod
    def _key_id(cls, value: str) -> str:
        if not _AWS_KEY_ID.match(value):
            raise ValueError("must be an AWS access key ID (16+ upper-case letters and digits, e.g. AKIA...)")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not _AWS_REGION.match(value):
            raise ValueError("must be an AWS region name such as us-east-1")
        return value

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: _check_endpoint(v)))


class DigicertConfig(BackendConfig):
    type_name: ClassVar[str] = "digicert"

    apikey: SecretStr = option(
        "the DigiCert CertCentral API key linked to the connector's user", secret=True, required=True
    )
    region: Literal["us", "eu"] = option("the CertCentral instance: us or eu", default="us", metavar="us|eu")
    endpoint: str | None = option("another base URL for the CertCentral API (tests)", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: _check_endpoint(v)))


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

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: _check_endpoint(v)))

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


# Project ids: 6-30 lower-case letters, digits and hyphens, starting with a letter.
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_LOCATION = re.compile(r"^[a-z]+(-[a-z0-9]+)*$")


class GcpcasConfig(BackendConfig):
    type_name: ClassVar[str] = "gcpcas"

    project: str = option("the Google Cloud project ID, e.g. private-ca-342871", required=True)
    location: str = option("the location of the CA pools, e.g. us-east1", required=True)
    key: SecretStr = option("the service account key JSON file", secret=True, file=True, required=True)
    endpoint: str | None = option("another base URL for the CA Service API (tests)", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: _check_endpoint(v)))

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        if not _GCP_PROJECT.match(value):
            raise ValueError("must be a Google Cloud project ID (6-30 lower-case letters, digits, hyphens)")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if not _GCP_LOCATION.match(value):
            raise ValueError("must be a Google Cloud location such as us-east1")
        return value

    @field_validator("key")
    @classmethod
    def _service_account(cls, value: SecretStr) -> SecretStr:
        # Say what is wrong with the file, never what is in it.
        try:
            document = json.loads(value.get_secret_value())
        except ValueError:
            raise ValueError(
                "is not a JSON file; give the service account key file downloaded from Google Cloud"
            ) from None
        if not isinstance(document, dict) or document.get("type") != "service_account":
            raise ValueError('is not a service account key (its "type" must be "service_account")')
        missing = [f for f in ("client_email", "private_key", "token_uri") if not document.get(f)]
        if missing:
            raise ValueError(f"service account key lacks {', '.join(missing)}")
        try:  # the grant sent there is as good as the key for an hour: never over plain http off loopback
            _check_endpoint(str(document["token_uri"]))
        except ValueError as exc:
            raise ValueError(f"service account key's token_uri {exc}") from None
        return value


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

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: _check_endpoint(v)))

    @model_validator(mode="after")
    def _credentials(self) -> MscaConfig:
        if self.auth == "ntlm" and (not self.username or self.password is None):
            raise ValueError("-auth ntlm needs -username and -password")
        if self.password is not None and not self.username:
            raise ValueError("-password needs -username")
        return self


class LocalConfig(BackendConfig):
    """An embedded CA: a key and self-signed certificate made at `backend add`, or an imported CA."""

    type_name: ClassVar[str] = "local"

    subject: str | None = option(
        "the CA's distinguished name, e.g. 'CN=Corp Local CA,O=Corp'", immutable=True, metavar="DN"
    )
    keytype: Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"] | None = option(
        "the CA key type: ec-p256 (default), ec-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519",
        immutable=True,
        metavar="TYPE",
    )
    days: int | None = option(
        "the CA certificate's lifetime in days (default 3650)", immutable=True, metavar="N"
    )
    cacert: str | None = option(
        "an existing CA certificate to import (PEM; may be followed by its chain)", file=True, immutable=True
    )
    cakey: SecretStr | None = option(
        "the private key of the imported CA certificate", secret=True, file=True, immutable=True
    )

    @field_validator("days")
    @classmethod
    def _days(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 36500:
            raise ValueError("must be a number of days between 1 and 36500")
        return value

    @model_validator(mode="after")
    def _new_or_imported(self) -> LocalConfig:
        if (self.cacert is None) != (self.cakey is None):
            raise ValueError(
                "-cacert and -cakey go together: give both to import a CA, or neither to create one"
            )
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

    _directory = field_validator("directory")(classmethod(lambda cls, v: _check_endpoint(v)))

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


ConfigT = TypeVar("ConfigT", bound=BackendConfig)


def expect_config(config: BackendConfig, model: type[ConfigT]) -> ConfigT:
    """The config as its type's own model: a factory handed another type's config is a programming error."""
    if not isinstance(config, model):
        raise TypeError(
            f"the {model.type_name} backend type needs a {model.__name__}, not {type(config).__name__}"
        )
    return config


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
