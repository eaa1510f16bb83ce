"""User accounts: passwords hashed with argon2id, users and per-user API keys.

Hashing or verifying a password takes 64 MiB of memory and much CPU time by
design: 0.2 to 0.5 s each with argon2-cffi 25.1's defaults, measured on a
busy two-core machine. Both run on a small thread pool of their own, off the
event loop, so a burst of sign-ins queues there and uses at most
``HASH_WORKERS`` times 64 MiB.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import schema
from assay_server.auth import User, hash_key, new_api_key
from assay_server.errors import BadRequest, Conflict, NotFound

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024
KEY_NAME_MAX_LENGTH = 128
#: User names: a letter or digit, then letters, digits and ``. _ @ + -``.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")

# argon2-cffi's defaults are the argon2id parameters that RFC 9106 recommends
# for memory-constrained machines (64 MiB, 3 passes, 4 lanes in 25.1).
hasher = PasswordHasher()
_dummy_hash: str | None = None

#: Threads that hash and verify passwords, per server process.
HASH_WORKERS = max(1, min(4, os.cpu_count() or 1))
_hash_pool = ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="assay-password")


async def _in_hash_pool(function: Any, *args: str) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_hash_pool, function, *args)


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    created_at: float
    revoked_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def check_password(password: object) -> str:
    """Return ``password`` if it follows the rules; raise ``BadRequest`` naming the rule."""
    if not isinstance(password, str):
        raise BadRequest(
            f"password must be a string, got {type(password).__name__}", code="invalid_password"
        )
    if len(password) < PASSWORD_MIN_LENGTH:
        raise BadRequest(
            f"password must be at least {PASSWORD_MIN_LENGTH} characters long, "
            f"got {len(password)}",
            code="password_too_short",
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise BadRequest(
            f"password must be at most {PASSWORD_MAX_LENGTH:,} characters long, "
            f"got {len(password):,}",
            code="password_too_long",
        )
    return password


def check_user_name(name: object) -> str:
    if not isinstance(name, str) or not USER_NAME.match(name):
        raise BadRequest(
            "user name must be 1 to 128 characters: a letter or digit, then letters, "
            f"digits and . _ @ + -; got {name!r}",
            code="invalid_user_name",
        )
    return name


def check_key_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > KEY_NAME_MAX_LENGTH:
        raise BadRequest(
            f"key name must be a non-blank string of at most {KEY_NAME_MAX_LENGTH} "
            f"characters, got {name!r}",
            code="invalid_key_name",
        )
    return name.strip()


async def hash_password(password: str) -> str:
    return await _in_hash_pool(hasher.hash, password)  # type: ignore[no-any-return]


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against ``password_hash``; a missing hash never matches.

    Without a hash the password is still checked against a throwaway hash, so
    the response takes about as long for an unknown name as for a wrong password.
    """
    global _dummy_hash
    if password_hash is None:
        if _dummy_hash is None:
            _dummy_hash = await hash_password("not the password of any account")
        await _in_hash_pool(_verify, _dummy_hash, password)
        return False
    return await _in_hash_pool(_verify, password_hash, password)  # type: ignore[no-any-return]


def _verify(password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def password_hash_of(connection: AsyncConnection, name: str) -> tuple[User, str | None]:
    row = (
        await connection.execute(
            select(
                schema.users.c.id,
                schema.users.c.name,
                schema.users.c.is_admin,
                schema.users.c.password_hash,
            ).where(schema.users.c.name == name)
        )
    ).first()
    if row is None:
        raise NotFound(f"no user named {name!r}", code="user_not_found")
    return User(row.id, row.name, row.is_admin), row.password_hash


async def stored_hash(connection: AsyncConnection, user_id: int) -> str | None:
    return await connection.scalar(
        select(schema.users.c.password_hash).where(schema.users.c.id == user_id)
    )


async def set_password_hash(connection: AsyncConnection, user_id: int, password_hash: str) -> None:
    await connection.execute(
        update(schema.users)
        .where(schema.users.c.id == user_id)
        .values(password_hash=password_hash)
    )


def needs_rehash(password_hash: str) -> bool:
    """Tell whether the hash was made with other parameters than ``hasher``'s."""
    try:
        return hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


async def create_user(
    connection: AsyncConnection, name: str, password_hash: str | None, is_admin: bool
) -> dict[str, Any]:
    now = time.time()
    try:
        result = await connection.execute(
            schema.users.insert().values(
                name=name, is_admin=is_admin, created_at=now, password_hash=password_hash
            )
        )
    except IntegrityError:
        raise Conflict(f"a user named {name!r} already exists", code="user_exists") from None
    user_id = result.inserted_primary_key[0]  # type: ignore[index]
    return {
        "id": user_id,
        "name": name,
        "is_admin": is_admin,
        "created_at": now,
        "has_password": password_hash is not None,
    }


async def list_users(connection: AsyncConnection) -> list[dict[str, Any]]:
    rows = await connection.execute(
        select(
            schema.users.c.id,
            schema.users.c.name,
            schema.users.c.is_admin,
            schema.users.c.created_at,
            schema.users.c.password_hash.is_not(None).label("has_password"),
        ).order_by(schema.users.c.id)
    )
    return [
        {
            "id": row.id,
            "name": row.name,
            "is_admin": bool(row.is_admin),
            "created_at": row.created_at,
            "has_password": bool(row.has_password),
        }
        for row in rows
    ]


async def end_sessions(
    connection: AsyncConnection, user_id: int, keep_token: str | None = None
) -> None:
    """Delete the user's browser sessions, except the one whose token is ``keep_token``."""
    statement = delete(schema.sessions).where(schema.sessions.c.user_id == user_id)
    if keep_token is not None:
        statement = statement.where(schema.sessions.c.token_hash != hash_key(keep_token))
    await connection.execute(statement)


async def create_key(
    connection: AsyncConnection, user_id: int, name: str
) -> tuple[KeyRecord, str]:
    """Create an API key; return its record and the key, which is never stored."""
    key = new_api_key()
    now = time.time()
    result = await connection.execute(
        schema.api_keys.insert().values(
            user_id=user_id, name=name, key_hash=hash_key(key), prefix=key[:10], created_at=now
        )
    )
    key_id = result.inserted_primary_key[0]  # type: ignore[index]
    return KeyRecord(key_id, name, key[:10], now, None), key


def _key_columns() -> list[Any]:
    keys = schema.api_keys.c
    return [keys.id, keys.name, keys.prefix, keys.created_at, keys.revoked_at]


async def list_keys(connection: AsyncConnection, user_id: int) -> list[KeyRecord]:
    rows = await connection.execute(
        select(*_key_columns())
        .where(schema.api_keys.c.user_id == user_id)
        .order_by(schema.api_keys.c.id)
    )
    return [KeyRecord(*row) for row in rows]


async def revoke_key(connection: AsyncConnection, user_id: int, key_id: int) -> KeyRecord:
    """Revoke one of the user's keys; revoking a revoked key keeps its first revocation time."""
    if not 0 <= key_id < 2**63:
        # The id column is a 64-bit integer. SQLite and asyncpg fail to bind a larger
        # number, and no key can have such an id.
        raise NotFound(f"you have no API key with id {key_id}", code="key_not_found")
    owned = (schema.api_keys.c.id == key_id) & (schema.api_keys.c.user_id == user_id)
    await connection.execute(
        update(schema.api_keys)
        .where(owned, schema.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=time.time())
    )
    row = (await connection.execute(select(*_key_columns()).where(owned))).first()
    if row is None:
        raise NotFound(f"you have no API key with id {key_id}", code="key_not_found")
    return KeyRecord(*row)
