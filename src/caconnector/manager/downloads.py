"""`GET /downloads/ca-connector.deb` and `/downloads/caconnector.whl`: the newest connector package in
the downloads directory (`serve -downloads DIR`, default `<datadir>/downloads`), named by its version in
`X-CA-Connector-Version`, so `ca-connector update` knows whether it is newer before it reads the body.
Public like the package itself: it holds no secret, and a host must fetch it before it has any key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from caconnector.manager.runtime import Runtime
from caconnector.manager.services import downloads

router = APIRouter()

VERSION_HEADER = "X-CA-Connector-Version"
PATHS = {"deb": "/downloads/ca-connector.deb", "wheel": "/downloads/caconnector.whl"}
MEDIA = {"deb": "application/vnd.debian.binary-package", "wheel": "application/zip"}


def _serve(request: Request, kind: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    package = downloads.newest(runtime.settings, kind)
    if package is None:
        where = downloads.downloads_dir(runtime.settings)
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": f"this manager offers no {kind} package: put one in its downloads directory "
                f"({where}), e.g. the output of scripts/build-deb",
            },
            status_code=404,
            media_type="application/problem+json",
        )
    return FileResponse(
        package.path,
        media_type=MEDIA[kind],
        filename=package.filename,
        headers={VERSION_HEADER: str(package.version)},
    )


@router.api_route(PATHS["deb"], methods=["GET", "HEAD"], include_in_schema=False)
def deb(request: Request) -> Response:
    return _serve(request, "deb")


@router.api_route(PATHS["wheel"], methods=["GET", "HEAD"], include_in_schema=False)
def wheel(request: Request) -> Response:
    return _serve(request, "wheel")
