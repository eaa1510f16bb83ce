"""Browser sessions: ``/login?token=API_KEY`` signs a browser in with an API key.

The link itself never signs anyone in. ``GET /login?token=KEY`` returns a
page that names the account the key belongs to and asks to confirm, and only
the ``POST /login`` of that page's form sets the session cookie. Otherwise
any site or message could sign a visitor in to the sender's account by
linking to ``/login?token=THEIR_KEY`` (login CSRF), and whatever the visitor
then did would land in that account. ``csrf.CsrfMiddleware`` accepts the
``POST`` only from this server's own pages.
"""

from __future__ import annotations

import html
import secrets
import time
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from assay_server import schema
from assay_server.auth import User, authenticate, hash_key
from assay_server.context import ServerContext
from assay_server.pages import bundle_version

COOKIE = "assay_session"
LIFETIME = 30 * 24 * 3600


async def create_session(connection: AsyncConnection, user_id: int) -> str:
    token = secrets.token_urlsafe(32)
    now = time.time()
    await connection.execute(
        schema.sessions.insert().values(
            user_id=user_id, token_hash=hash_key(token), created_at=now, expires_at=now + LIFETIME
        )
    )
    return token


async def session_user(connection: AsyncConnection, token: str) -> User | None:
    row = (
        await connection.execute(
            select(schema.users.c.id, schema.users.c.name, schema.users.c.is_admin)
            .join(schema.sessions, schema.sessions.c.user_id == schema.users.c.id)
            .where(
                schema.sessions.c.token_hash == hash_key(token),
                schema.sessions.c.expires_at > time.time(),
            )
        )
    ).first()
    return None if row is None else User(row.id, row.name, row.is_admin)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this server, else ``/``, so links cannot redirect away."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _context(request: Request) -> ServerContext:
    return request.app.state.context  # type: ignore[no-any-return]


#: The largest body ``POST /login`` reads: an API key and a ``next`` path.
MAX_LOGIN_FORM_BYTES = 8192

CONFIRM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to assay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css?v={version}"></head>
<body><main class="confirm-sign-in narrow">
<h1>Sign in to assay as {name}?</h1>
{current}<p>This link signs this browser in with an API key of <strong>{name}</strong>.
Continue only if you opened it yourself. A link like this from someone else signs you in
to their account, and what you do next lands there.</p>
<form method="post" action="/login">
<input type="hidden" name="token" value="{token}">
<input type="hidden" name="next" value="{next}">
<button type="submit" class="confirm-sign-in">Sign in as {name}</button>
<a href="/">Cancel</a>
</form></main></body></html>
"""


def _invalid_key() -> Response:
    return JSONResponse(
        {
            "error": {
                "code": "invalid_api_key",
                "message": "missing, invalid or revoked API key; use the sign-in link "
                "that `assay serve` printed",
            }
        },
        status_code=401,
    )


async def _request_user(request: Request, token: str) -> tuple[User | None, User | None]:
    """Return the user of API key ``token`` and the user of the request's session cookie."""
    session = request.cookies.get(COOKIE)
    async with _context(request).db.reading() as connection:
        key_user = await authenticate(connection, token) if token else None
        current = await session_user(connection, session) if session else None
    return key_user, current


async def login(request: Request) -> Response:
    """Ask to confirm signing in with the link's API key (``GET``); sign in (``POST``)."""
    if request.method == "POST":
        return await confirm_login(request)
    token = request.query_params.get("token", "")
    target = safe_next(request.query_params.get("next"))
    key_user, current = await _request_user(request, token)
    if key_user is None:
        return _invalid_key()
    if current is not None and current.id == key_user.id:
        # Already signed in to that account: nothing for another site to gain.
        return RedirectResponse(target, status_code=303)
    notice = ""
    if current is not None:
        notice = (
            f'<p class="signed-in-as">This browser is signed in as '
            f"<strong>{html.escape(current.name)}</strong>. Continuing signs it out of "
            "that account.</p>\n"
        )
    page = CONFIRM_PAGE.format(
        version=bundle_version(),
        name=html.escape(key_user.name),
        current=notice,
        token=html.escape(token, quote=True),
        next=html.escape(target, quote=True),
    )
    # The page keeps its own Origin on the form's POST, which CsrfMiddleware checks,
    # also in browsers that send no Sec-Fetch-Site. The default no-referrer policy
    # would send "Origin: null" instead.
    return HTMLResponse(
        page, headers={"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}
    )


async def confirm_login(request: Request) -> Response:
    """Sign in with the API key of the confirmation form, then redirect to its ``next``."""
    form = await _read_form(request)
    if form is None:
        return JSONResponse(
            {
                "error": {
                    "code": "invalid_form",
                    "message": "POST /login takes the form of the /login?token= page: "
                    f"application/x-www-form-urlencoded, at most {MAX_LOGIN_FORM_BYTES} bytes",
                }
            },
            status_code=400,
        )
    token = form.get("token", "")
    user, _ = await _request_user(request, token)
    if user is None:
        return _invalid_key()
    await end_session(request)
    async with _context(request).db.transaction() as connection:
        session = await create_session(connection, user.id)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_cookie(request, response, session)
    return response


async def _read_form(request: Request) -> dict[str, str] | None:
    """Return the fields of a small url-encoded form body, or None for any other body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_LOGIN_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode(), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def set_cookie(request: Request, response: Response, session: str) -> None:
    """Set the session cookie: HttpOnly, SameSite=Lax, and Secure over https."""
    response.set_cookie(
        COOKIE,
        session,
        max_age=LIFETIME,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def end_session(request: Request) -> None:
    """Delete the session that the request's cookie names, if any."""
    token = request.cookies.get(COOKIE)
    if token:
        async with _context(request).db.transaction() as connection:
            await connection.execute(
                delete(schema.sessions).where(schema.sessions.c.token_hash == hash_key(token))
            )


async def logout(request: Request) -> Response:
    await end_session(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE)
    return response


routes = [
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
