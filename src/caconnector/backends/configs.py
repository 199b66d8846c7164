"""The config model of every built-in backend type, by name: what `backend add` validates, the CLI offers
and the registry reads for a type whatever its implementation.

The implemented types keep their model in their own package (`local/config.py`, ...); the models of the
types not implemented yet live here, so their options validate and `backend add` can refuse them as not
available in this version rather than as unknown. The base and the markers are in `options`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import SecretStr, field_validator

from caconnector.backends.acme.config import AcmeConfig
from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.gcpcas.config import GcpcasConfig
from caconnector.backends.local.config import LocalConfig
from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.options import BackendConfig, check_endpoint, expect_config, option

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


class DigicertConfig(BackendConfig):
    type_name: ClassVar[str] = "digicert"

    apikey: SecretStr = option(
        "the DigiCert CertCentral API key linked to the connector's user", secret=True, required=True
    )
    region: Literal["us", "eu"] = option("the CertCentral instance: us or eu", default="us", metavar="us|eu")
    endpoint: str | None = option("another base URL for the CertCentral API (tests)", metavar="URL")

    _endpoint = field_validator("endpoint")(classmethod(lambda cls, v: check_endpoint(v)))


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
