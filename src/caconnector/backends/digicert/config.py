"""The options of `backend add -type digicert`: a CertCentral API key, the instance, and how to reach it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator

from caconnector.backends.options import BackendConfig, check_certificates, check_endpoint, option

# The Services API v2 base URL of each CertCentral instance.
BASE_URLS = {
    "us": "https://www.digicert.com/services/v2",
    "eu": "https://certcentral.digicert.eu/services/v2",
}


class DigicertConfig(BackendConfig):
    type_name: ClassVar[str] = "digicert"

    apikey: SecretStr = option(
        "the DigiCert CertCentral API key linked to the connector's user",
        secret=True,
        required=True,
        metavar="KEY",
    )
    region: Literal["us", "eu"] = option("the CertCentral instance: us or eu", default="us", metavar="us|eu")
    endpoint: str | None = option(
        "another base URL for the CertCentral API, replacing the region's (tests, private endpoints)",
        metavar="URL",
    )
    cacert: str | None = option(
        "extra trust anchors (PEM) for the API's TLS: a TLS-inspecting proxy or a private endpoint",
        file=True,
    )

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))

    _certificates = field_validator("cacert")(classmethod(lambda cls, v: check_certificates(v)))

    @property
    def base_url(self) -> str:
        return self.endpoint or BASE_URLS[self.region]
