"""`/`: what a browser pointed at the manager finds: what this is, and links to the web UI, the API's
docs, its OpenAPI document and its index. Static text, no key needed, nothing from the database."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from caconnector import __version__
from caconnector.manager.api.index import PREFIX
from caconnector.manager.docs_assets import DOCS_PATH

router = APIRouter()

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>ca-manager</title></head>
<body>
<h1>ca-manager {version}</h1>
<p>The certificate manager's central service: a web UI and a REST API for certificates, profiles,
connectors and their CA backends.</p>
<ul>
<li><a href="{ui}">Web UI</a> (sign in with a manager user)</li>
<li><a href="{docs}">API documentation</a></li>
<li><a href="{openapi}">OpenAPI document</a></li>
<li><a href="{index}">API index</a> (the resource collections)</li>
<li><a href="/downloads/ca-connector.deb">Download the CA connector</a> (Debian package; install it with
<code>dpkg -i</code>, then <code>ca-connector install -silent -token T -manager URL</code>)</li>
</ul>
<p>Send <code>Authorization: Bearer &lt;API key&gt;</code>; create a key with
<code>ca-manager apikey create -username NAME</code>.</p>
</body>
</html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    app = request.app
    return HTMLResponse(
        _PAGE.format(
            version=html.escape(__version__),
            docs=html.escape(DOCS_PATH),
            openapi=html.escape(app.openapi_url or PREFIX),
            index=PREFIX,
            ui=html.escape(request.scope.get("root_path", "") + "/ui/"),
        )
    )
