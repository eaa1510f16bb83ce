"""Extra users with API keys, stored straight in a running server's database."""

from __future__ import annotations

import time

import pytest

from assay_server import schema
from assay_server.auth import hash_key, new_api_key
from assay_server.database import Database
from conftest import RunningServer, run_in_thread

#: The password that ``record_prompts`` types at every prompt.
PASSWORD = "correct horse battery"


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


def record_prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make ``getpass`` return PASSWORD on a terminal and return the list of prompts shown."""
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", getpass)
    return prompts
