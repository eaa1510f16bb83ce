"""The state every request handler shares: settings, database, bus, writer and compactor."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from assay_server.batch_store import BatchWrite, StoredBatch, store_batches
from assay_server.bus import Bus
from assay_server.compactor import Compactor
from assay_server.database import Database
from assay_server.settings import Settings
from assay_server.writer import GroupWriter


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    bus: Bus
    writer: GroupWriter[BatchWrite, StoredBatch | None] = field(init=False)
    compactor: Compactor = field(init=False)

    def __post_init__(self) -> None:
        # SQLite takes one writer at a time; PostgreSQL runs a few groups side by side.
        concurrency = 1 if self.db.is_sqlite else max(1, self.settings.db_pool_size // 4)
        write_group = partial(store_batches, is_sqlite=self.db.is_sqlite)
        self.writer = GroupWriter(self.db, write_group, concurrency)
        self.compactor = Compactor(self.db)
