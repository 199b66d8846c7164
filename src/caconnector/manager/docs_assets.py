"""The API docs page (`/api/v1/docs`) with the Swagger UI served by the manager itself, from the
`swagger-ui-bundle` distribution: FastAPI's default page loads it from a CDN, which a manager on a host
without internet cannot reach. `/docs` redirects to the page, where a new user looks first."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from swagger_ui_bundle import swagger_ui_path

from caconnector.manager.problems import not_found

DOCS_PATH = "/api/v1/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"
# The files the page loads; nothing else of the bundle's directory is served.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def docs_router(openapi_url: str, title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    bundle = Path(str(swagger_ui_path))

    @router.get(DOCS_PATH)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        )

    @router.get(f"{ASSETS_PATH}/{{name}}")
    def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise not_found("docs asset", name)
        # The bundle's version is in its directory name, so a new version is a new file for caches too.
        return FileResponse(
            bundle / name, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
        )

    @router.get("/docs")
    def docs_redirect() -> RedirectResponse:
        return RedirectResponse(DOCS_PATH)

    return router
