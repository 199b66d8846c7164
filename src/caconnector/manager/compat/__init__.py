"""The commercial manager's REST API (SSL certificates and organizations), as its Python client
`cert-manager` calls it: a second face on the services our own API uses. See the README's section
"Scripts written for the commercial manager's API"."""

from __future__ import annotations

from fastapi import FastAPI

from caconnector.manager.compat import organization, ssl
from caconnector.manager.compat.auth import VerifiedPasswords


def install(app: FastAPI) -> None:
    """Mount /api/organization/v1 and /api/ssl/v1 on `app`."""
    app.state.compat_passwords = VerifiedPasswords()
    for router in (organization.router, ssl.router):
        app.include_router(router)
