"""The options of `backend add -type gcpcas`: the project, the location and a service account key."""

from __future__ import annotations

import json
import re
from typing import ClassVar

from pydantic import SecretStr, field_validator

from caconnector.backends.options import BackendConfig, check_endpoint, option

# Project ids: 6-30 lower-case letters, digits and hyphens, starting with a letter.
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_LOCATION = re.compile(r"^[a-z]+(-[a-z0-9]+)*$")


class GcpcasConfig(BackendConfig):
    type_name: ClassVar[str] = "gcpcas"

    project: str = option("the Google Cloud project ID, e.g. private-ca-342871", required=True)
    location: str = option("the location of the CA pools, e.g. us-east1", required=True)
    key: SecretStr = option("the service account key JSON file", secret=True, file=True, required=True)
    endpoint: str | None = option("another base URL for the CA Service API (tests)", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))

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
            check_endpoint(str(document["token_uri"]))
        except ValueError as exc:
            raise ValueError(f"service account key's token_uri {exc}") from None
        return value
