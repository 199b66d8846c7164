"""The `acme` backend type: any RFC 8555 CA through the `acme` package (certbot's library). The backend
(`backend`), its options (`config`), the ACME seam (`client`), the challenge answerers (`challenges`) and
its order records (`store`).

This module is what the `caconnector.backends` entry point `acme` names. It loads the backend (and the
`acme` library) only when one is provisioned or opened: `configs` imports this package for its config
model, and listing the options must not cost the import of every backend type. Inside this package every
import is absolute, so `acme` always means the library, never `caconnector.backends.acme`.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.acme.config import AcmeConfig
from caconnector.backends.options import BackendConfig, expect_config
from caconnector.backends.registry import BackendTypeUnavailable

if TYPE_CHECKING:
    from caconnector.backends.acme.backend import AcmeBackend
    from caconnector.backends.base import BackendContext, BackendType


def _backend_module() -> ModuleType:
    try:
        from caconnector.backends.acme import backend  # noqa: PLC0415  (see the module doc)
    except ImportError as exc:
        raise BackendTypeUnavailable(
            f"backend type 'acme' needs optional dependencies that are not installed ({exc.name}); "
            "install them with: pip install 'caconnector[acme]'"
        ) from None
    return backend


class AcmeBackendType:
    """The factory the `caconnector.backends` entry point `acme` names."""

    type_name: ClassVar[str] = "acme"
    config_model: ClassVar[type[BackendConfig]] = AcmeConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> AcmeConfig:
        """Make the account key and register the account (with EAB when given), so wrong EAB
        credentials or a directory that is not ACME fail at `backend add`."""
        result: AcmeConfig = _backend_module().provision(expect_config(config, AcmeConfig), context)
        return result

    def open(self, config: BackendConfig, context: BackendContext) -> AcmeBackend:
        backend: AcmeBackend = _backend_module().AcmeBackend.from_config(
            expect_config(config, AcmeConfig), context
        )
        return backend


if TYPE_CHECKING:
    # mypy proves here that the factory satisfies the protocol the registry uses it through.
    def _conforms(factory: AcmeBackendType) -> BackendType:
        return factory
