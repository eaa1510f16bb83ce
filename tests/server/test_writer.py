"""The group writer shares transactions between jobs and keeps their failures apart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import schema
from assay_server.database import Database
from assay_server.writer import GroupWriter


def add_user(
    name: str, seen: list[AsyncConnection]
) -> Callable[[AsyncConnection], Awaitable[str]]:
    async def job(connection: AsyncConnection) -> str:
        # The list keeps each connection alive, so that no two share an id().
        seen.append(connection)
        await connection.execute(schema.users.insert().values(name=name, created_at=0.0))
        return name

    return job


async def user_names(db: Database) -> set[str]:
    async with db.reading() as connection:
        return set((await connection.scalars(select(schema.users.c.name))).all())


async def test_concurrent_jobs_share_transactions(database: Database) -> None:
    writer = GroupWriter(database)
    seen: list[AsyncConnection] = []

    names = await asyncio.gather(*(writer.write(add_user(f"user-{i}", seen)) for i in range(40)))
    await writer.close()

    assert names == [f"user-{i}" for i in range(40)]
    assert await user_names(database) == set(names)
    # The first job runs alone; the 39 that arrive meanwhile share the next one.
    assert len({id(connection) for connection in seen}) < 40


async def test_failing_job_leaves_others_committed(database: Database) -> None:
    writer = GroupWriter(database)
    seen: list[AsyncConnection] = []

    async def broken(connection: AsyncConnection) -> None:
        await connection.execute(text("SELECT * FROM no_such_table"))

    jobs: list[Callable[[AsyncConnection], Awaitable[object]]]
    jobs = [add_user(f"user-{i}", seen) for i in range(10)]
    jobs.insert(5, broken)
    results = await asyncio.gather(
        *(writer.write(job) for job in jobs),
        return_exceptions=True,
    )
    await writer.close()

    failures = [result for result in results if isinstance(result, BaseException)]
    assert len(failures) == 1
    assert "no_such_table" in str(failures[0])
    assert await user_names(database) == {f"user-{i}" for i in range(10)}


async def test_job_error_reaches_its_caller(database: Database) -> None:
    writer = GroupWriter(database)

    async def invalid(connection: AsyncConnection) -> None:
        await connection.execute(schema.users.insert().values(name="half", created_at=0.0))
        raise ValueError("batch 7 is invalid")

    with pytest.raises(ValueError, match="batch 7 is invalid"):
        await writer.write(invalid)
    await writer.close()

    async with database.reading() as connection:
        count = await connection.scalar(select(func.count()).select_from(schema.users))
    assert count == 0  # the insert before the error was rolled back


async def test_close_cancels_waiting_jobs(database: Database) -> None:
    writer = GroupWriter(database)
    started = asyncio.Event()

    async def slow(connection: AsyncConnection) -> None:
        started.set()
        await asyncio.sleep(30)

    first = asyncio.create_task(writer.write(slow))
    await started.wait()
    second = asyncio.create_task(writer.write(slow))
    await asyncio.sleep(0)
    await writer.close()

    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
