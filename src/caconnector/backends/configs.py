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
