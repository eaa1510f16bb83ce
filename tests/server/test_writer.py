"""The group writer shares transactions between items and keeps their failures apart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

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

    async def __call__(self, connection: AsyncConnection, names: Sequence[str]) -> list[str]:
        self.groups.append(list(names))
        await connection.execute(
            schema.users.insert(), [{"name": name, "created_at": 0.0} for name in names]
        )
        if "broken" in names:
            await connection.execute(text("SELECT * FROM no_such_table"))
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


async def test_close_cancels_waiting_items(database: Database) -> None:
    started = asyncio.Event()

    async def slow(connection: AsyncConnection, names: Sequence[str]) -> list[None]:
        started.set()
        await asyncio.sleep(30)
        return [None for _ in names]

    writer = GroupWriter(database, slow)
    first = asyncio.create_task(writer.write("first"))
    await started.wait()
    second = asyncio.create_task(writer.write("second"))
    await asyncio.sleep(0)
    await writer.close()

    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
