"""The `local` backend type: a real CA embedded in the connector (`backend`), its options (`config`) and
its records of what it issued (`store`).

This module is what the `caconnector.backends` entry point `local` names. It loads the CA code only when
a backend is provisioned or opened: `configs` imports this package for its config model, and listing the
options must not cost the import of every backend type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.local.config import LocalConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.base import BackendContext, BackendType
    from caconnector.backends.local.backend import LocalCA


class LocalBackendType:
    """The factory the `caconnector.backends` entry point `local` names."""

    type_name: ClassVar[str] = "local"
    # Typed as the protocol declares it (a mutable protocol member is invariant); it is LocalConfig.
    config_model: ClassVar[type[BackendConfig]] = LocalConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> LocalConfig:
        """Create the CA (no -cacert) or check the imported one; return the config to store."""
        from caconnector.backends.local.backend import provision  # noqa: PLC0415  (see the module doc)

        return provision(expect_config(config, LocalConfig), context)

    def open(self, config: BackendConfig, context: BackendContext) -> LocalCA:
        from caconnector.backends.local.backend import open_ca  # noqa: PLC0415  (see the module doc)

        return open_ca(expect_config(config, LocalConfig), context)


if TYPE_CHECKING:
    # mypy proves here that the factory satisfies the protocol the registry uses it through.
    def _conforms(factory: LocalBackendType) -> BackendType:
        return factory
