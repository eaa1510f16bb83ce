"""Storing the ingest batches of a writer group with one statement per table.

At a hundred runs logging ten steps a second, each batch carries one step,
so a transaction contains a few hundred small batches. Writing each with its own
statements made every batch four or five round trips between the event loop
and the database driver. Here a group is claimed, stored and summarised with
a statement per table, and only the rare batches that add metric keys or
carry config and summary updates take statements of their own. The functions
are plain, not async, so that ``Database.write_sync`` can run a whole group on
SQLite's writer thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from assay_server import history, runs
from assay_server.batch import Batch


@dataclass(frozen=True)
class BatchWrite:
    """One decoded batch of a run, with the state its connection keeps for the run."""

    run_pk: int
    session: int
    batch: Batch
    #: The metric ids the connection has seen, by key; the write adds missing ones.
    metric_ids: dict[str, int]
    #: Whether to record a heartbeat with the batch.
    touch: bool


@dataclass(frozen=True)
class StoredBatch:
    """The outcome of a batch that was stored now rather than before."""

    #: Every metric id of the run's keys in this batch and those known before.
    metric_ids: dict[str, int]
    #: The run's previous state when this batch revived it from crashed.
    revived: str | None


def store_batches(
    connection: Connection, writes: Sequence[BatchWrite], is_sqlite: bool
) -> list[StoredBatch | None]:
    """Store ``writes`` inside an open transaction.

    Returns, for each write in order, its outcome, or None when its batch
    number was stored before (a resent batch) and nothing was written.
    """
    claimed = history.claim_batches(
        connection, [(w.run_pk, w.session, w.batch.seq) for w in writes], is_sqlite
    )
    # The metric ids of each claimed write, by its index in ``writes``.
    fresh: dict[int, dict[str, int]] = {}
    for index, write in enumerate(writes):
        key = (write.run_pk, write.session, write.batch.seq)
        if key in claimed:
            claimed.discard(key)
            fresh[index] = _with_metric_ids(connection, write, is_sqlite)
    history.write_batches(
        connection, [(writes[i].run_pk, writes[i].batch, ids) for i, ids in fresh.items()]
    )
    for index in fresh:
        batch = writes[index].batch
        if batch.config or batch.summary:
            runs.merge_documents(connection, writes[index].run_pk, batch.config, batch.summary)
    revived = runs.touch_many(
        connection, sorted({writes[i].run_pk for i in fresh if writes[i].touch})
    )
    outcomes: list[StoredBatch | None] = []
    for index, write in enumerate(writes):
        ids = fresh.get(index)
        if ids is None:
            outcomes.append(None)
            continue
        # A run revived by this group is reported once, by its first batch.
        previous = runs.CRASHED if write.run_pk in revived else None
        revived.discard(write.run_pk)
        outcomes.append(StoredBatch(ids, previous))
    return outcomes


def _with_metric_ids(connection: Connection, write: BatchWrite, is_sqlite: bool) -> dict[str, int]:
    missing = [c.key for c in write.batch.columns if c.key not in write.metric_ids]
    if not missing:
        return write.metric_ids
    created = history.ensure_metrics(connection, write.run_pk, missing, is_sqlite)
    return {**write.metric_ids, **created}
