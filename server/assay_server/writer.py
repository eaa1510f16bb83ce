"""Group commit: the ingest connections' writes share transactions.

Each stored batch used to be a transaction of its own, so a hundred runs
logging ten steps a second meant a thousand commits a second, and on SQLite
those queue up behind one write lock. ``GroupWriter`` collects the items that
arrive while a transaction is running. The next transaction passes them all
to one call of its ``write_group`` function, which can then write them with
one statement per table instead of a few statements per item.

Items are plain data. ``write_group`` may see an item twice: when a shared
transaction fails, every item in it is written again alone, so that one bad
batch cannot fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from assay_server.database import Database

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")
WriteGroup = Callable[[Connection, Sequence[Item]], Sequence[Result]]

#: The maximum number of items in one transaction; more wait for the next.
MAX_ITEMS = 256


class GroupWriter(Generic[Item, Result]):
    """Writes items in shared transactions, ``concurrency`` transactions at a time.

    ``write_group(connection, items)`` is a plain function that writes a list
    of items inside an open transaction and returns one result per item, in
    order. It runs through ``Database.write_sync``.
    """

    def __init__(
        self,
        db: Database,
        write_group: WriteGroup[Item, Result],
        concurrency: int = 1,
        max_items: int = MAX_ITEMS,
    ) -> None:
        self.db = db
        self.write_group = write_group
        self.concurrency = concurrency
        self.max_items = max_items
        self.pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self.arrived = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []

    async def write(self, item: Item) -> Result:
        """Write ``item`` in a committed transaction and return its result.

        Raises what ``write_group`` raised, or the database error, when the
        item failed alone.
        """
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
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
            group = self.pending[: self.max_items]
            del self.pending[: self.max_items]
            try:
                await self._run_group(group)
            except asyncio.CancelledError:
                for _, future in group:
                    future.cancel()
                raise

    async def _run_group(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in group]
        try:
            results = await self.db.write_sync(self.write_group, items)
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exception=exc)
                return
            log.warning(
                "a shared transaction of %d writes failed; retrying each alone", len(group)
            )
            for item, future in group:
                await self._run_alone(item, future)
            return
        for (_, future), result in zip(group, results, strict=True):
            _settle(future, result)

    async def _run_alone(self, item: Item, future: asyncio.Future[Result]) -> None:
        try:
            (result,) = await self.db.write_sync(self.write_group, [item])
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
