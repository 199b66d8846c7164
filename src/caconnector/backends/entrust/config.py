"""The options of `backend add -type entrust`: the API user, its key, and the user's Entrust client
certificate and private key (mutual TLS), copied into the encrypted store at `backend add`.

What can be checked without the network is checked here, naming the option: the certificate parses and
is within its validity period, the key parses, and the two belong together. `check()` tests the rest.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from pydantic import SecretStr, field_validator, model_validator

from caconnector.backends.options import BackendConfig, check_certificates, check_endpoint, option
from caconnector.pki.chain import load_certificates
from caconnector.pki.errors import PKIError
from caconnector.pki.keys import load_private_key, public_keys_equal

DEFAULT_ENDPOINT = "https://api.entrust.net/enterprise/v2"


class EntrustConfig(BackendConfig):
    type_name: ClassVar[str] = "entrust"

    # Secret too: the acceptance wants the user name nowhere in clear (output, logs, data directory).
    username: SecretStr = option(
        "the API user name given in the Entrust Enterprise UI", secret=True, required=True
    )
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
    endpoint: str | None = option(
        f"another base URL for the Entrust ECS API (default {DEFAULT_ENDPOINT})", metavar="URL"
    )
    cacert: str | None = option(
        "more trust anchors for the API's TLS certificate (PEM), besides the system's", file=True
    )

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))

    @field_validator("username")
    @classmethod
    def _username(cls, value: SecretStr) -> SecretStr:
        # HTTP Basic cannot carry a colon in the user name, nor control characters.
        text = value.get_secret_value()
        if not text.strip() or ":" in text or any(ord(c) < 32 for c in text):
            raise ValueError("must be the API user name, without colons or control characters")
        return value

    _certificates = field_validator("cacert")(classmethod(lambda cls, v: check_certificates(v)))

    @model_validator(mode="after")
    def _cert_matches_key(self) -> EntrustConfig:
        # Messages say what is wrong with a file, never what is in it.
        try:
            certificates = load_certificates(self.cert.get_secret_value().encode())
        except PKIError as exc:
            raise ValueError(f"-cert: {exc}") from None
        try:
            key = load_private_key(self.key.get_secret_value().encode())
        except PKIError as exc:
            raise ValueError(f"-key: {exc}; give the private key of the -cert certificate") from None
        certificate = certificates[0]
        if not public_keys_equal(certificate.public_key(), key.public_key()):
            raise ValueError(
                "-key does not belong to the certificate given with -cert; give the private key that "
                "was generated with that certificate"
            )
        now = dt.datetime.now(dt.UTC)
        if certificate.not_valid_after_utc <= now:
            raise ValueError(
                f"-cert: the certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}; give the "
                "user's active Entrust certificate"
            )
        if certificate.not_valid_before_utc > now:
            raise ValueError(
                f"-cert: the certificate is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}"
            )
        return self
