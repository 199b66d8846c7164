"""The `msca` backend type: Microsoft AD CS through an Enrollment Agent certificate. The backend
(`backend`), its options (`config`), the on-behalf-of wrapper (`cms`), the transports (`web`: Web
Enrollment through certsrv; `rpc`: MS-ICPR through impacket), revocation over MS-CSRA (`csra`) and the
request records (`store`).

This module is what the `caconnector.backends` entry point `msca` names; it loads the backend (and
certsrv, impacket) only when one is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.options import BackendConfig, expect_config

if TYPE_CHECKING:
    from caconnector.backends.base import BackendContext, BackendType
    from caconnector.backends.msca.backend import MscaBackend


class MscaBackendType:
    """The factory the `caconnector.backends` entry point `msca` names."""

    type_name: ClassVar[str] = "msca"
    config_model: ClassVar[type[BackendConfig]] = MscaConfig

    def provision(self, config: BackendConfig, context: BackendContext) -> MscaConfig:
        """Nothing to create at `backend add`: the Enrollment Agent key is made by enroll-agent-cert."""
        return expect_config(config, MscaConfig)

    def open(self, config: BackendConfig, context: BackendContext) -> MscaBackend:
        from caconnector.backends.msca.backend import MscaBackend  # noqa: PLC0415  (see the module doc)

        return MscaBackend.from_config(expect_config(config, MscaConfig), context)


if TYPE_CHECKING:

    def _conforms(factory: MscaBackendType) -> BackendType:
        return factory
