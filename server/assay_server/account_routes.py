"""HTTP routes for signing in and out, users, passwords and the caller's API keys.

Every route returns JSON. Sign-in failures count against two rate limits,
per user name and per client address (see ``ratelimit``). Once either is
reached, sign-in returns 429 with ``Retry-After`` until its window ends.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from assay_server import accounts, sessions
from assay_server.api import authenticated, context
from assay_server.auth import User, bearer_token
from assay_server.errors import BadRequest, Forbidden, NotFound, Unauthorized
from assay_server.ratelimit import Limits
from assay_server.request_body import read_json

log = logging.getLogger(__name__)

#: Largest JSON body these routes read: a 1,024-character password and a name fit easily.
MAX_BODY_BYTES = 16 * 1024
INVALID_CREDENTIALS = "invalid user name or password"


def limits(request: Request) -> Limits:
    return request.app.state.limits  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def json_object(request: Request) -> dict[str, Any]:
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise BadRequest(
            f"field {name!r} must be a string, got {type(value).__name__}",
            code="invalid_field",
        )
    return value


async def sign_in(request: Request) -> Response:
    body = await json_object(request)
    name = string_field(body, "name")
    password = string_field(body, "password")
    if len(password) > accounts.PASSWORD_MAX_LENGTH:
        # Never hash megabytes of input: no valid password is this long.
        accounts.check_password(password)
    address = client_address(request)
    await limits(request).login_name.ensure_allowed(name.lower())
    await limits(request).login_address.ensure_allowed(address)

    user = await check_credentials(request, name, password)
    if user is None:
        # The attempted name is not logged: people sometimes type a password into it.
        log.info("sign-in failed from %s", address)
        # Guesses sent together all pass the checks above; each failure's
        # count decides whether it gets a 401 or, past the limit, a 429.
        name_past_limit = await limits(request).login_name.fail(name.lower())
        address_past_limit = await limits(request).login_address.fail(address)
        raise (
            name_past_limit
            or address_past_limit
            or Unauthorized(INVALID_CREDENTIALS, code="invalid_credentials")
        )
    # A right password found while guesses sent with it went past the limit waits too.
    await limits(request).login_name.ensure_allowed(name.lower())
    await limits(request).login_address.ensure_allowed(address)

    await sessions.end_session(request)
    async with context(request).db.transaction() as connection:
        token = await sessions.create_session(connection, user.id)
    log.info("user %s signed in from %s", user.name, address)
    response = JSONResponse({"name": user.name, "is_admin": user.is_admin})
    sessions.set_cookie(request, response, token)
    return response


async def check_credentials(request: Request, name: str, password: str) -> User | None:
    """Return the user if ``password`` is theirs, rehashing it when the parameters changed."""
    async with context(request).db.reading() as connection:
        try:
            user, password_hash = await accounts.password_hash_of(connection, name)
        except NotFound:
            user, password_hash = None, None
    if not await accounts.verify_password(password_hash, password) or user is None:
        return None
    assert password_hash is not None
    if accounts.needs_rehash(password_hash):
        new_hash = await accounts.hash_password(password)
        async with context(request).db.transaction() as connection:
            await accounts.set_password_hash(connection, user.id, new_hash)
        log.info("rehashed the password of user %s with the current parameters", user.name)
    return user


async def sign_out(request: Request) -> Response:
    await sessions.end_session(request)
    response = JSONResponse({"signed_out": True})
    response.delete_cookie(sessions.COOKIE)
    return response


async def admin(request: Request) -> User:
    user = await authenticated(request)
    if not user.is_admin:
        raise Forbidden("only an admin may manage users", code="admin_required")
    return user


async def list_users(request: Request) -> Response:
    await admin(request)
    async with context(request).db.reading() as connection:
        return JSONResponse({"users": await accounts.list_users(connection)})


async def create_user(request: Request) -> Response:
    creator = await admin(request)
    body = await json_object(request)
    name = accounts.check_user_name(body.get("name"))
    password = accounts.check_password(body.get("password"))
    is_admin = body.get("is_admin", False)
    if not isinstance(is_admin, bool):
        raise BadRequest(
            f"field 'is_admin' must be true or false, got {is_admin!r}", code="invalid_field"
        )
    password_hash = await accounts.hash_password(password)
    async with context(request).db.transaction() as connection:
        created = await accounts.create_user(connection, name, password_hash, is_admin)
    log.info("user %s created user %s (admin: %s)", creator.name, name, is_admin)
    return JSONResponse(created, status_code=201)


async def change_password(request: Request) -> Response:
    user = await authenticated(request)
    body = await json_object(request)
    current = body.get("current")
    new = accounts.check_password(body.get("new"))
    await limits(request).login_name.ensure_allowed(user.name.lower())

    async with context(request).db.reading() as connection:
        stored = await accounts.stored_hash(connection, user.id)
    if stored is None:
        # An account made with an API key only: its first password needs no current one.
        if current not in (None, ""):
            raise BadRequest(
                "this account has no password yet; send 'current' as null",
                code="invalid_field",
            )
    elif not isinstance(current, str) or not await accounts.verify_password(stored, current):
        past_limit = await limits(request).login_name.fail(user.name.lower())
        raise past_limit or Unauthorized(
            "the current password is wrong", code="invalid_credentials"
        )
    await limits(request).login_name.ensure_allowed(user.name.lower())

    new_hash = await accounts.hash_password(new)
    keep = None
    if bearer_token(request.headers.get("authorization")) is None:
        keep = request.cookies.get(sessions.COOKIE)
    async with context(request).db.transaction() as connection:
        await accounts.set_password_hash(connection, user.id, new_hash)
        await accounts.end_sessions(connection, user.id, keep_token=keep)
    log.info("user %s changed their password; their other sessions ended", user.name)
    return JSONResponse({"changed": True})


async def list_keys(request: Request) -> Response:
    user = await authenticated(request)
    async with context(request).db.reading() as connection:
        keys = await accounts.list_keys(connection, user.id)
    return JSONResponse({"keys": [key.to_json() for key in keys]})


async def create_key(request: Request) -> Response:
    user = await authenticated(request)
    body = await json_object(request)
    name = accounts.check_key_name(body.get("name"))
    async with context(request).db.transaction() as connection:
        record, key = await accounts.create_key(connection, user.id, name)
    log.info("user %s created API key %s (%s)", user.name, record.id, record.name)
    return JSONResponse({**record.to_json(), "key": key}, status_code=201)


async def revoke_key(request: Request) -> Response:
    user = await authenticated(request)
    key_id = request.path_params["key_id"]
    async with context(request).db.transaction() as connection:
        record = await accounts.revoke_key(connection, user.id, key_id)
    log.info("user %s revoked API key %s", user.name, key_id)
    return JSONResponse(record.to_json())


routes = [
    Route("/api/v1/session", sign_in, methods=["POST"]),
    Route("/api/v1/session", sign_out, methods=["DELETE"]),
    Route("/api/v1/users", list_users, methods=["GET"]),
    Route("/api/v1/users", create_user, methods=["POST"]),
    Route("/api/v1/me/password", change_password, methods=["POST"]),
    Route("/api/v1/me/keys", list_keys, methods=["GET"]),
    Route("/api/v1/me/keys", create_key, methods=["POST"]),
    Route("/api/v1/me/keys/{key_id:int}", revoke_key, methods=["DELETE"]),
]
