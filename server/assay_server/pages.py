"""The browser app's pages and its static bundle.

Every page route returns the same HTML shell, and the bundled app in
``static/`` (built from ``client/web`` by ``make install``) reads the path and
draws the page, fetching all data through the API with the session cookie.
A request without a valid session is sent to ``/signin?next=PATH``, the one
page served without a session.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from assay_server.api import authenticated
from assay_server.errors import Unauthorized

STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "app.js"

# Shown in place of the sign-in form while the bundle loads, or when it is missing.
SIGN_IN_FALLBACK = (
    "<h1>Sign in to assay</h1><p>Sign in with your user name and password, or open the "
    "link that <code>assay serve</code> printed when it created the admin account: "
    "<code>/login?token=API_KEY</code>.</p>"
)

SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>assay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css?v={version}"></head>
<body><div id="app">{fallback}</div>
<script type="module" src="/static/app.js?v={version}"></script></body></html>
"""

NOT_BUILT = (
    "<p>The web app is not built. Run <code>make install</code>, or "
    "<code>npm ci &amp;&amp; npm run build</code> in <code>client/web</code>.</p>"
)


def bundle_version() -> str:
    """Hash the bundle, so that browsers fetch it again after each build."""
    try:
        return hashlib.sha256(BUNDLE.read_bytes()).hexdigest()[:12]
    except FileNotFoundError:
        return "missing"


def shell(fallback: str) -> Response:
    version = bundle_version()
    if version == "missing":
        fallback = NOT_BUILT
    return HTMLResponse(
        SHELL.format(version=version, fallback=fallback),
        headers={"Cache-Control": "no-store"},
    )


async def page(request: Request) -> Response:
    try:
        await authenticated(request)
    except Unauthorized:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)
    return shell("<p>Loading…</p>")


async def sign_in_page(request: Request) -> Response:
    return shell(SIGN_IN_FALLBACK)


routes = [
    Route("/", page),
    Route("/signin", sign_in_page),
    Route("/account", page),
    Route("/projects/{project}", page),
    Route("/projects/{project}/runs/{run_id}", page),
    Route("/projects/{project}/reports", page),
    Route("/projects/{project}/reports/{report_id}", page),
    Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
]
