"""One DCOM call to the CA on impacket's DCOM layer (MS-DCOM over TCP 135 and the RPC ports), with the
backend's credentials and packet privacy: what MS-CSRA (revoke) and MS-WCCE (the CA certificate over RPC)
share. impacket's failures become the backend error tree here, once."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from impacket.dcerpc.v5.dcomrt import DCOMConnection, IRemUnknown2
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY

from caconnector.backends.errors import AuthError, BackendError, Transient
from caconnector.backends.msca.config import MscaConfig, split_account


class _Interface(IRemUnknown2):  # type: ignore[misc]  # impacket is untyped
    def __init__(self, interface: Any, iid: bytes) -> None:
        super().__init__(interface)
        self._iid = iid

    def call(self, request: Any) -> Any:
        return self.request(request, iid=self._iid, uuid=self.get_iPid())


def call(
    config: MscaConfig,
    name: str,
    *,
    clsid: bytes,
    iid: bytes,
    request: Any,
    service: str,
    unreachable: Callable[[str], BackendError],
) -> Any:
    """Make `request` on a new instance of `clsid` through `iid`; `unreachable(why)` is the error when
    DCOM cannot be reached at all."""
    domain, user = split_account(config.username)
    password = config.password.get_secret_value() if config.password is not None else ""
    target = f"{config.server} ({service} over DCOM)"
    connection = None
    try:
        connection = DCOMConnection(
            config.server,
            user,
            password,
            domain,
            authLevel=RPC_C_AUTHN_LEVEL_PKT_PRIVACY,
            oxidResolver=True,
            doKerberos=config.auth == "kerberos",
        )
        interface = connection.CoCreateInstanceEx(clsid, iid)
        return _Interface(interface, iid).call(request)
    except BackendError:
        raise
    except Exception as exc:  # noqa: BLE001  (impacket raises DCERPCException, SessionError and bare Exceptions)
        text = str(exc)
        if isinstance(exc, OSError) or "Could not connect" in text:
            raise unreachable(f"{target} cannot be reached ({text})") from None
        if "access_denied" in text.lower() or "LOGON_FAILURE" in text or "KDC_ERR" in text:
            raise AuthError(
                f"backend {name!r}: {target} refused the credentials; check -auth, -username and "
                "-password (or the host's Kerberos ticket)"
            ) from None
        raise Transient(f"backend {name!r}: {target}: {type(exc).__name__}: {text[:200]}") from None
    finally:
        if connection is not None:
            # Closing a broken connection may fail too; there is nothing left to do then.
            with contextlib.suppress(Exception):
                connection.disconnect()
