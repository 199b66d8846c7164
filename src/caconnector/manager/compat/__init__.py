"""The commercial manager's REST API (SSL certificates and organizations), as its Python client
`cert-manager` calls it: a second face on the services our own API uses. See the README's section
"Scripts written for the commercial manager's API"."""

from __future__ import annotations

from fastapi import FastAPI

from caconnector.manager.compat import organization, ssl
from caconnector.manager.compat.auth import VerifiedPasswords

# That API's clients log in with a certificate under /private/api (the cert_manager client warns
# otherwise): both roots serve both kinds of login.
PREFIXES = ("", "/private")


def install(app: FastAPI) -> None:
    """Mount /api/organization/v1 and /api/ssl/v1, under / and /private, on `app`."""
    app.state.compat_passwords = VerifiedPasswords()
    for prefix in PREFIXES:
        for router in (organization.router, ssl.router):
            app.include_router(router, prefix=prefix)
