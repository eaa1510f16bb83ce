"""Browser sessions: ``/login?token=API_KEY`` sets a cookie that replaces the key."""

from __future__ import annotations

import secrets
import time
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from assay_server import schema
from assay_server.auth import User, authenticate, hash_key
from assay_server.context import ServerContext

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


async def login(request: Request) -> Response:
    token = request.query_params.get("token", "")
    context = _context(request)
    async with context.db.reading() as connection:
        user = await authenticate(connection, token) if token else None
    if user is None:
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
    async with context.db.transaction() as connection:
        session = await create_session(connection, user.id)
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    set_cookie(request, response, session)
    return response


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


routes = [Route("/login", login), Route("/logout", logout, methods=["POST"])]
