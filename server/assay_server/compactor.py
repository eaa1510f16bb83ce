"""Compaction of runs' metric chunks in the background, one run at a time.

Each stored batch adds one small chunk per metric. An ingest connection
requests its run's compaction every so many batches. Compacting inside the
connection held up the connection's next batch, and runs that started
together compacted at the same moment, so the whole server stalled for a
moment every few seconds. Here one worker per server takes the requests in
turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from assay_server import history
from assay_server.database import Database

log = logging.getLogger(__name__)


class Compactor:
    """Compacts the runs it is asked to, one at a time, on a task of its own."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Runs waiting, by primary key, with their run id for log lines.
        self.queued: dict[int, str] = {}
        #: The run the worker compacts now, and a future done when it ends.
        self.current: tuple[int, asyncio.Future[None]] | None = None
        self.arrived = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None

    def request(self, run_pk: int, run_id: str) -> None:
        """Queue the run's compaction; a run already waiting is queued once."""
        self.queued[run_pk] = run_id
        self.arrived.set()
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work_forever())

    async def compact_now(self, run_pk: int, run_id: str) -> None:
        """Compact the whole run before returning, as a finishing run needs.

        Raises the database's error when the compaction fails.
        """
        self.queued.pop(run_pk, None)
        if self.current is not None and self.current[0] == run_pk:
            # Two compactions of one run at once would merge the same chunks twice.
            await asyncio.shield(self.current[1])
        await self._compact(run_pk, run_id, complete=True)

    async def close(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.queued.clear()

    async def _work_forever(self) -> None:
        while True:
            if not self.queued:
                self.arrived.clear()
                await self.arrived.wait()
                continue
            run_pk = next(iter(self.queued))
            run_id = self.queued.pop(run_pk)
            done = asyncio.get_running_loop().create_future()
            self.current = (run_pk, done)
            try:
                await self._compact(run_pk, run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The chunks stay as they were; the run's next request retries.
                log.exception("compaction of run %s failed", run_id)
            finally:
                self.current = None
                done.set_result(None)

    async def _compact(self, run_pk: int, run_id: str, complete: bool = False) -> None:
        # A run that has ended gets every metric with more than one chunk
        # merged whole, since no batch will follow.
        min_chunks = 2 if complete else history.COMPACT_AFTER
        async with self.db.reading() as connection:
            metric_ids = await history.compactable_metrics(connection, run_pk, min_chunks)
        for metric_id in metric_ids:
            removed = await self.db.write_sync(history.compact_metric, metric_id, complete)
            log.debug(
                "compacted metric %s of run %s: %s chunks merged", metric_id, run_id, removed
            )
