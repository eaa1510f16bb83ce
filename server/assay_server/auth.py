"""API keys: generation, hashing, the first admin account and authentication."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import schema

KEY_PREFIX = "assay_"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    is_admin: bool


def new_api_key() -> str:
    """A key with 256 random bits, prefixed so that secret scanners can spot it."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough; a slow password
    # hash would only add latency to every request.
    return hashlib.sha256(key.encode()).hexdigest()


async def bootstrap_admin(connection: AsyncConnection, bootstrap_key: str | None) -> str | None:
    """Create the admin account when there are no users.

    Returns the admin's API key when this call generated it, so the caller can
    print it once; returns None when users existed or the key was supplied.
    """
    if await connection.scalar(select(func.count()).select_from(schema.users)):
        return None
    now = time.time()
    result = await connection.execute(
        schema.users.insert().values(name="admin", is_admin=True, created_at=now)
    )
    user_id = result.inserted_primary_key[0]  # type: ignore[index]
    key = bootstrap_key or new_api_key()
    await connection.execute(
        schema.api_keys.insert().values(
            user_id=user_id,
            name="bootstrap",
            key_hash=hash_key(key),
            prefix=key[:10],
            created_at=now,
        )
    )
    return None if bootstrap_key else key


async def authenticate(connection: AsyncConnection, key: str) -> User | None:
    row = (
        await connection.execute(
            select(schema.users.c.id, schema.users.c.name, schema.users.c.is_admin)
            .join(schema.api_keys, schema.api_keys.c.user_id == schema.users.c.id)
            .where(
                schema.api_keys.c.key_hash == hash_key(key),
                schema.api_keys.c.revoked_at.is_(None),
            )
        )
    ).first()
    return None if row is None else User(row.id, row.name, row.is_admin)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
