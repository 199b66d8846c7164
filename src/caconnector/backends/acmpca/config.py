"""The options of `backend add -type acmpca`: an IAM user's keys and the region of the private CAs."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import SecretStr, field_validator

from caconnector.backends.options import BackendConfig, check_endpoint, option

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

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))
