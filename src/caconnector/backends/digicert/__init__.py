"""The `digicert` backend type: DigiCert CertCentral. The backend (`backend`), its options (`config`), the
Services API v2 client (`client`) and what it remembers between jobs (`store`).

This module is what the `caconnector.backends` entry point `digicert` names. It loads the backend only
when one is opened: `configs` imports this package for its config model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.digicert.config import DigicertConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.base import BackendContext, BackendType
    from caconnector.backends.digicert.backend import DigiCert


class DigicertBackendType:
    """The factory the `caconnector.backends` entry point `digicert` names."""

    type_name: ClassVar[str] = "digicert"
    # Typed as the protocol declares it (a mutable protocol member is invariant); it is DigicertConfig.
    config_model: ClassVar[type[BackendConfig]] = DigicertConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> DigicertConfig:
        """Nothing to create at DigiCert: the config is returned unchanged; `check()` tests the key."""
        return expect_config(config, DigicertConfig)

    def open(self, config: BackendConfig, context: BackendContext) -> DigiCert:
        from caconnector.backends.digicert.backend import open_certcentral  # noqa: PLC0415  (see the module doc)

        return open_certcentral(expect_config(config, DigicertConfig), context)


if TYPE_CHECKING:

    def _conforms(factory: DigicertBackendType) -> BackendType:
        return factory
