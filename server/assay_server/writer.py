"""Group commit: the ingest connections' write jobs share transactions.

Each stored batch used to be a transaction of its own, so a hundred runs
logging ten steps a second meant a thousand commits a second, and on SQLite
those queue up behind one write lock. ``GroupWriter`` collects the jobs that
arrive while a transaction is running and runs them together in the next one.

A job is a coroutine function of the connection. It may run twice: when a
shared transaction fails, every job in it runs again alone, so that one bad
batch cannot fail the others. Jobs must therefore change nothing outside the
database until their result comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server.database import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[Any]]

#: The maximum number of jobs in one transaction; more wait for the next.
MAX_JOBS = 256


class GroupWriter:
    """Runs write jobs in shared transactions, ``concurrency`` transactions at a time."""

    def __init__(self, db: Database, concurrency: int = 1, max_jobs: int = MAX_JOBS) -> None:
        self.db = db
        self.concurrency = concurrency
        self.max_jobs = max_jobs
        self.pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self.arrived = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []

    async def write(self, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``job`` in a committed transaction and return its result.

        Raises what the job raised, or the database error, when it failed alone.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.pending.append((job, future))
        self.arrived.set()
        self._start_workers()
        return await future

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        for worker in self.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self.workers.clear()
        for _, future in self.pending:
            future.cancel()
        self.pending.clear()

    def _start_workers(self) -> None:
        self.workers = [worker for worker in self.workers if not worker.done()]
        while len(self.workers) < self.concurrency:
            self.workers.append(asyncio.create_task(self._work_forever()))

    async def _work_forever(self) -> None:
        while True:
            if not self.pending:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            group = self.pending[: self.max_jobs]
            del self.pending[: self.max_jobs]
            try:
                await self._run_group(group)
            except asyncio.CancelledError:
                for _, future in group:
                    future.cancel()
                raise

    async def _run_group(self, group: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        try:
            async with self.db.transaction() as connection:
                results = [await job(connection) for job, _ in group]
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exception=exc)
                return
            log.warning(
                "a shared transaction of %d writes failed; retrying each alone", len(group)
            )
            for job, future in group:
                await self._run_alone(job, future)
            return
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result)

    async def _run_alone(self, job: Job, future: asyncio.Future[Any]) -> None:
        try:
            async with self.db.transaction() as connection:
                result = await job(connection)
        except Exception as exc:
            _settle(future, exception=exc)
            return
        _settle(future, result)


def _settle(
    future: asyncio.Future[Any], result: Any = None, exception: Exception | None = None
) -> None:
    # The writer of a future may have gone away (its socket closed) meanwhile.
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
