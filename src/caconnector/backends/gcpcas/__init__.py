"""The `gcpcas` backend type: Google Cloud Certificate Authority Service. The backend (`backend`), its
options (`config`) and the google-cloud-private-ca seam (`client`).

This module is what the `caconnector.backends` entry point `gcpcas` names. It loads the backend only when
one is provisioned or opened: `configs` imports this package for its config model, and listing the
options must not cost the import of every backend type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.gcpcas.config import GcpcasConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.base import BackendContext, BackendType
    from caconnector.backends.gcpcas.backend import GoogleCAS


class GcpcasBackendType:
    """The factory the `caconnector.backends` entry point `gcpcas` names."""

    type_name: ClassVar[str] = "gcpcas"
    # Typed as the protocol declares it (a mutable protocol member is invariant); it is GcpcasConfig.
    config_model: ClassVar[type[BackendConfig]] = GcpcasConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> GcpcasConfig:
        """Nothing to create (pools and CAs are made in Google Cloud): the config is returned unchanged,
        once its key is known to parse. `check()` tests the rest against the service."""
        from caconnector.backends.gcpcas.client import service_account_credentials  # noqa: PLC0415  (see the module doc)

        gcpcas = expect_config(config, GcpcasConfig)
        service_account_credentials(gcpcas, context.name)
        return gcpcas

    def open(self, config: BackendConfig, context: BackendContext) -> GoogleCAS:
        from caconnector.backends.gcpcas.backend import open_cas  # noqa: PLC0415  (see the module doc)

        return open_cas(expect_config(config, GcpcasConfig), context)


if TYPE_CHECKING:
    # mypy proves here that the factory satisfies the protocol the registry uses it through.
    def _conforms(factory: GcpcasBackendType) -> BackendType:
        return factory
