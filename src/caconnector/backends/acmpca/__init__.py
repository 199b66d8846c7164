"""The `acmpca` backend type: AWS Private CA. The backend (`backend`), its options (`config`), the boto3
seam (`client`) and its request records (`store`).

This module is what the `caconnector.backends` entry point `acmpca` names. It loads the backend only when
one is opened: `configs` imports this package for its config model, and listing the options must not cost
the import of every backend type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.acmpca.config import AcmpcaConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.acmpca.backend import AcmpcaBackend
    from caconnector.backends.base import BackendContext, BackendType


class AcmpcaBackendType:
    """The factory the `caconnector.backends` entry point `acmpca` names."""

    type_name: ClassVar[str] = "acmpca"
    config_model: ClassVar[type[BackendConfig]] = AcmpcaConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> AcmpcaConfig:
        """Nothing to create: the CAs live in AWS. No network here; `backend test` checks the keys."""
        return expect_config(config, AcmpcaConfig)

    def open(self, config: BackendConfig, context: BackendContext) -> AcmpcaBackend:
        from caconnector.backends.acmpca.backend import AcmpcaBackend  # noqa: PLC0415  (see the module doc)

        return AcmpcaBackend.from_config(expect_config(config, AcmpcaConfig), context)


if TYPE_CHECKING:
    # mypy proves here that the factory satisfies the protocol the registry uses it through.
    def _conforms(factory: AcmpcaBackendType) -> BackendType:
        return factory
