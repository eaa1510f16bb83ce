"""The group writer shares transactions between items and keeps their failures apart."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from assay_server import schema
from assay_server.database import Database
from assay_server.writer import GroupWriter


class UserWrites:
    """A ``write_group`` that inserts user names, one statement per group.

    The name ``broken`` makes the statement fail, and ``invalid`` raises after
    the insert, so the tests can see what a failure leaves behind.
    """

    def __init__(self) -> None:
        self.groups: list[list[str]] = []

    def __call__(self, connection: Connection, names: Sequence[str]) -> list[str]:
        self.groups.append(list(names))
        connection.execute(
            schema.users.insert(), [{"name": name, "created_at": 0.0} for name in names]
        )
        if "broken" in names:
            connection.execute(text("SELECT * FROM no_such_table"))
        if "invalid" in names:
            raise ValueError("batch 7 is invalid")
        return [name.upper() for name in names]


async def user_names(db: Database) -> set[str]:
    async with db.reading() as connection:
        return set((await connection.scalars(select(schema.users.c.name))).all())


async def test_concurrent_items_share_transactions(database: Database) -> None:
    writes = UserWrites()
    writer = GroupWriter(database, writes)

    results = await asyncio.gather(*(writer.write(f"user-{i}") for i in range(40)))
    await writer.close()

    assert results == [f"USER-{i}" for i in range(40)]
    assert await user_names(database) == {f"user-{i}" for i in range(40)}
    # Items that arrive before the worker starts, or while it writes, share a group.
    assert len(writes.groups) < 40
    assert sorted(name for group in writes.groups for name in group) == sorted(
        f"user-{i}" for i in range(40)
    )


async def test_group_size_is_bounded(database: Database) -> None:
    writes = UserWrites()
    writer = GroupWriter(database, writes, max_items=8)

    await asyncio.gather(*(writer.write(f"user-{i}") for i in range(40)))
    await writer.close()

    assert max(len(group) for group in writes.groups) == 8


async def test_failing_item_leaves_others_committed(database: Database) -> None:
    writes = UserWrites()
    writer = GroupWriter(database, writes)
    names = [f"user-{i}" for i in range(10)]
    names.insert(5, "broken")

    results = await asyncio.gather(*(writer.write(name) for name in names), return_exceptions=True)
    await writer.close()

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 1
    assert "no_such_table" in str(failures[0])
    assert results[5] is failures[0]
    assert await user_names(database) == {f"user-{i}" for i in range(10)}


async def test_item_error_reaches_its_caller(database: Database) -> None:
    writer = GroupWriter(database, UserWrites())

    with pytest.raises(ValueError, match="batch 7 is invalid"):
        await writer.write("invalid")
    await writer.close()

    async with database.reading() as connection:
        count = await connection.scalar(select(func.count()).select_from(schema.users))
    assert count == 0  # the insert before the error was rolled back


def block(connection: Connection, release: threading.Event) -> None:
    """Hold the transaction until ``release`` is set (SQLite) or it is cancelled.

    On SQLite the function runs on the writer thread, where waiting is fine.
    On PostgreSQL it runs on the event loop, so it waits in the database.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_sleep(30)"))
    else:
        release.wait(30)


async def test_close_cancels_waiting_items(database: Database) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(connection: Connection, names: Sequence[str]) -> list[None]:
        started.set()
        block(connection, release)
        return [None for _ in names]

    writer = GroupWriter(database, slow)
    first = asyncio.create_task(writer.write("first"))
    assert await asyncio.to_thread(started.wait, 30)
    second = asyncio.create_task(writer.write("second"))
    await asyncio.sleep(0)
    # A transaction on SQLite's writer thread cannot be interrupted: it ends
    # when released.
    asyncio.get_running_loop().call_later(0.2, release.set)
    await writer.close()

    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_cancelled_write_keeps_lock_until_it_ends(database: Database) -> None:
    started = threading.Event()
    release = threading.Event()

    def insert_when_released(connection: Connection, name: str) -> None:
        started.set()
        block(connection, release)
        connection.execute(schema.users.insert(), [{"name": name, "created_at": 0.0}])

    def insert(connection: Connection, name: str) -> None:
        connection.execute(schema.users.insert(), [{"name": name, "created_at": 0.0}])

    cancelled = asyncio.create_task(database.write_sync(insert_when_released, "cancelled"))
    assert await asyncio.to_thread(started.wait, 30)
    cancelled.cancel()
    after = asyncio.create_task(database.write_sync(insert, "after"))
    await asyncio.sleep(0.2)
    waited = not after.done()
    release.set()
    await after

    with pytest.raises(asyncio.CancelledError):
        await cancelled
    if database.is_sqlite:
        # The next write waited for the cancelled one's thread, which committed.
        assert waited
        assert await user_names(database) == {"cancelled", "after"}
    else:
        # The cancelled transaction rolled back and the next one did not wait.
        assert not waited
        assert await user_names(database) == {"after"}
