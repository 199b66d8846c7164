"""`/api/v1`: the API's front door, the address quickstart prints. Lists the resource collections with
links to them, the docs and the OpenAPI document. No key needed: it says only what the OpenAPI document
(also public) says, and a new user's first request should answer rather than 401.

The list is read from the OpenAPI document, so it names exactly what is served."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field

from caconnector import __version__
from caconnector.manager.docs_assets import DOCS_PATH

PREFIX = "/api/v1"

router = APIRouter(tags=["index"])


class Link(BaseModel):
    name: str
    href: str


class IndexOut(BaseModel):
    name: str = "ca-manager"
    version: str
    docs: str = Field(description="the API's interactive documentation")
    openapi: str = Field(description="the OpenAPI document")
    resources: list[Link] = Field(description="the resource collections; send Authorization: Bearer <key>")


def collections(app: FastAPI) -> list[Link]:
    """Every `/api/v1/<name>` the OpenAPI document (what the application serves) says answers GET, in
    the order served: the lists a client starts from."""
    links = []
    for path, operations in app.openapi().get("paths", {}).items():
        name = path.removeprefix(f"{PREFIX}/")
        if path.startswith(f"{PREFIX}/") and name and "/" not in name and "get" in operations:
            links.append(Link(name=name, href=path))
    return links


@router.get(PREFIX, response_model=IndexOut, summary="the API's index (no key needed)")
@router.get(f"{PREFIX}/", response_model=IndexOut, include_in_schema=False)
def index(request: Request) -> IndexOut:
    app: FastAPI = request.app
    return IndexOut(
        version=__version__,
        docs=DOCS_PATH,
        openapi=app.openapi_url or "",
        resources=collections(app),
    )
