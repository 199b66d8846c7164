"""The config model of every built-in backend type, by name: what `backend add` validates, the CLI offers
and the registry reads for a type whatever its implementation.

Every type keeps its model in its own package (`local/config.py`, ...); a type whose backend is not
implemented would keep its model here, so its options validate and `backend add` can refuse it as not
available in this version rather than as unknown. The base and the markers are in `options`.
"""

from __future__ import annotations

from caconnector.backends.acme.config import AcmeConfig
from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.gcpcas.config import GcpcasConfig
from caconnector.backends.local.config import LocalConfig
from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.options import BackendConfig, expect_config

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
