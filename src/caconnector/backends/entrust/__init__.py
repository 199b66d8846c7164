"""The `entrust` backend type: Entrust Certificate Services, Enterprise API v2. The backend (`backend`),
its options (`config`), the typed HTTP client (`client`) and the in-memory TLS credentials (`tls`).

This module is what the `caconnector.backends` entry point `entrust` names. It loads the backend only when
one is provisioned or opened: `configs` imports this package for its config model, and listing the
options must not cost the import of every backend type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.entrust.config import EntrustConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.base import BackendContext, BackendType
    from caconnector.backends.entrust.backend import EntrustBackend


class EntrustBackendType:
    """The factory the `caconnector.backends` entry point `entrust` names."""

    type_name: ClassVar[str] = "entrust"
    config_model: ClassVar[type[BackendConfig]] = EntrustConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> EntrustConfig:
        """Nothing to create at Entrust. The certificate and key were checked by the model; loading them
        into a TLS context here refuses, at `backend add`, a key that OpenSSL cannot use."""
        from caconnector.backends.entrust.tls import client_context  # noqa: PLC0415  (see the module doc)

        entrust = expect_config(config, EntrustConfig)
        client_context(entrust, context.name)
        return entrust

    def open(self, config: BackendConfig, context: BackendContext) -> EntrustBackend:
        from caconnector.backends.entrust.backend import EntrustBackend  # noqa: PLC0415  (see the module doc)

        return EntrustBackend.from_config(expect_config(config, EntrustConfig), context)


if TYPE_CHECKING:
    # mypy proves here that the factory satisfies the protocol the registry uses it through.
    def _conforms(factory: EntrustBackendType) -> BackendType:
        return factory
