"""The options of `backend add -type local`: a CA to create, or one to import."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator, model_validator

from caconnector.backends.options import BackendConfig, option


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
