"""Extra users with API keys, stored straight in a running server's database."""

from __future__ import annotations

import time

from assay_server import schema
from assay_server.auth import hash_key, new_api_key
from assay_server.database import Database
from conftest import RunningServer, run_in_thread


def add_user(server: RunningServer, name: str) -> str:
    """Create user ``name`` on ``server``'s database and return a new API key of theirs."""
    key = new_api_key()

    async def insert() -> None:
        database = Database(server.settings.resolved_database_url)
        try:
            async with database.transaction() as connection:
                result = await connection.execute(
                    schema.users.insert().values(name=name, is_admin=False, created_at=time.time())
                )
                await connection.execute(
                    schema.api_keys.insert().values(
                        user_id=result.inserted_primary_key[0],
                        name="test",
                        key_hash=hash_key(key),
                        prefix=key[:10],
                        created_at=time.time(),
                    )
                )
        finally:
            await database.close()

    run_in_thread(insert())
    return key
