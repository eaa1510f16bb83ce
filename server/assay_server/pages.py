"""The browser app's pages and its static bundle.

Every page route returns the same HTML shell, and the bundled app in
``static/`` (built from ``client/web`` by ``make install``) reads the path and
draws the page, fetching all data through the API with the session cookie.
A request without a valid session is sent to ``/signin?next=PATH``, the one
page served without a session.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from assay_server import access, metrics
from assay_server.api import authenticated
from assay_server.errors import Forbidden, NotFound, TooManyRequests, Unauthorized

STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "app.js"

# Shown in place of the sign-in form while the bundle loads.
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
<body><div id="app"{attributes}>{fallback}</div>
<script type="module" src="/static/app.js?v={version}"></script></body></html>
"""

NOT_BUILT = (
    "<p>The web app is not built. Run <code>make install</code>, or "
    "<code>npm ci &amp;&amp; npm run build</code> in <code>client/web</code>.</p>"
)


class WebAppFiles(StaticFiles):
    """The built web app's files, or a 404 that names the build step when it is not built."""

    async def check_config(self) -> None:
        # Starlette raises RuntimeError here, a 500, for a missing directory.
        # Until the check passes it runs again on each request, so a build
        # made while the server runs is served without a restart.
        if self.directory is not None and not Path(self.directory).is_dir():
            raise NotFound(
                "the web app is not built; run `make install`, or "
                "`npm ci && npm run build` in client/web",
                code="web_app_not_built",
            )
        await super().check_config()


def bundle_version() -> str:
    """Hash the bundle, so that browsers fetch it again after each build."""
    try:
        return hashlib.sha256(BUNDLE.read_bytes()).hexdigest()[:12]
    except FileNotFoundError:
        return "missing"


def shell(
    fallback: str,
    status: int = 200,
    *,
    needs_app: bool = True,
    attributes: dict[str, str] | None = None,
) -> Response:
    """Render the page shell, with ``fallback`` shown until the app draws the page.

    Without a built app, a page that ``needs_app`` shows ``NOT_BUILT`` in place
    of ``fallback``, and an error page keeps its message. ``attributes`` become
    ``data-`` attributes of the app's root element.
    """
    version = bundle_version()
    if version == "missing" and needs_app:
        fallback = NOT_BUILT
    data = "".join(
        f' data-{name}="{html.escape(value)}"' for name, value in (attributes or {}).items()
    )
    return HTMLResponse(
        SHELL.format(version=version, fallback=fallback, attributes=data),
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


async def page(request: Request) -> Response:
    try:
        await check_page_access(request)
    except Unauthorized as exc:
        if exc.code == "invalid_share":
            # Signing in would not help: the app loads and shows that the link no longer works.
            return shell(
                "<p>This share link is invalid, revoked or expired.</p>", 401, needs_app=False
            )
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)
    except TooManyRequests as exc:
        return too_many_requests_page(exc)
    return shell("<p>Loading…</p>")


def too_many_requests_page(exc: TooManyRequests) -> Response:
    """Render a reached rate limit as the page shell with its message, unlike the API's JSON.

    The root element's ``data-retry-after`` repeats the ``Retry-After`` header,
    because the app cannot read the headers of the page it was loaded by.
    """
    metrics.ERRORS.labels(exc.code).inc()
    message = exc.message[:1].upper() + exc.message[1:]
    response = shell(
        f"<p>{html.escape(message)}.</p>",
        exc.status,
        needs_app=False,
        attributes={"retry-after": str(exc.retry_after)},
    )
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def sign_in_page(request: Request) -> Response:
    return shell(SIGN_IN_FALLBACK)


async def check_page_access(request: Request) -> None:
    """Raise ``Unauthorized`` unless the caller may open the page.

    A report page opens with a valid share link, and a project's pages open
    for anyone when the project is public. Every other page needs a user.
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
    Route("/signin", sign_in_page),
    Route("/account", page),
    Route("/projects/{project}", page),
    Route("/projects/{project}/runs/{run_id}", page),
    Route("/projects/{project}/reports", page),
    Route("/projects/{project}/reports/{report_id}", page),
    Route("/projects/{project}/members", page),
    Mount("/static", WebAppFiles(directory=STATIC, check_dir=False), name="static"),
]
