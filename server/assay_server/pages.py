"""The browser app's pages and its static bundle.

Every page route returns the same HTML shell, and the bundled app in
``static/`` (built from ``client/web`` by ``make install``) reads the path and
draws the page, fetching all data through the API with the session cookie.
A request without a valid session gets a short page on how to sign in.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from assay_server import access
from assay_server.api import authenticated
from assay_server.errors import Forbidden, NotFound, Unauthorized

STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "app.js"

SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · assay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
code{{background:#f2f2f2;padding:0 .3em}}</style></head>
<body><h1>Sign in to assay</h1>
<p>{reason}</p>
<p>Open the sign-in link that <code>assay serve</code> printed when it created the admin
account:</p>
<p><code>http://HOST:PORT/login?token=API_KEY&amp;next={next}</code></p>
<p>Any API key works in place of <code>API_KEY</code>. The link sets a session cookie that
lasts 30 days.</p></body></html>
"""

LINK_INVALID = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Share link not valid · assay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em}}
</style></head>
<body><h1>This share link no longer works</h1>
<p>{reason}</p></body></html>
"""

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


async def page(request: Request) -> Response:
    try:
        await check_page_access(request)
    except Unauthorized as exc:
        if exc.code == "invalid_share":
            return HTMLResponse(
                LINK_INVALID.format(reason=html.escape(exc.message)), status_code=401
            )
        reason = html.escape(
            "You are not signed in." if exc.code == "unauthorized" else exc.message
        )
        target = html.escape(request.url.path)
        return HTMLResponse(SIGN_IN.format(reason=reason, next=target), status_code=401)
    version = bundle_version()
    fallback = NOT_BUILT if version == "missing" else "<p>Loading…</p>"
    return HTMLResponse(
        SHELL.format(version=version, fallback=fallback),
        headers={"Cache-Control": "no-store"},
    )


async def check_page_access(request: Request) -> None:
    """Raise ``Unauthorized`` unless the caller may open the page.

    A report page opens with a valid share link, and a project's pages open
    for anyone when the project is public; every other page needs a user.
    """
    if request.query_params.get(access.SHARE_PARAM) is not None:
        report_id = request.path_params.get("report_id")
        if report_id is None:
            raise Unauthorized("a share link opens only the report it was made for")
        await access.report_access(request, report_id)
        return
    if "project" in request.path_params:
        try:
            await access.project_access(request)
        except (NotFound, Forbidden):
            # Only a signed-in user gets here; the app shows the API's error once it loads.
            pass
        return
    await authenticated(request)


routes = [
    Route("/", page),
    Route("/projects/{project}", page),
    Route("/projects/{project}/runs/{run_id}", page),
    Route("/projects/{project}/reports", page),
    Route("/projects/{project}/reports/{report_id}", page),
    Route("/projects/{project}/members", page),
    Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
]
