"""The SQLAlchemy engine, schema migrations and write transactions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"

# Any constant works; every instance must use the same one.
MIGRATION_LOCK_ID = 0x61737361

P = ParamSpec("P")
T = TypeVar("T")


class Database:
    """An async engine plus what differs between PostgreSQL and SQLite.

    SQLite allows one writer at a time, so on SQLite every write transaction
    takes ``write_lock`` first instead of failing with "database is locked".

    ``write_sync`` runs a plain function in a write transaction. On SQLite it
    runs on a thread of its own with the standard library's driver, so the
    whole transaction costs the event loop one hand-off. Through the async
    driver each statement costs a few hand-offs, and each one waits for its
    turn in a busy event loop.
    """

    def __init__(self, url: str, pool_size: int = 20) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # Pooled connections skip a thread start, a file open and the
            # pragmas on every transaction, which bounded ingest on SQLite.
            self.engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)
            event.listen(self.engine.sync_engine, "connect", _configure_sqlite)
            # One connection, used only by the one thread of ``sync_writes``.
            self.sync_engine = create_engine(
                make_url(url).set(drivername="sqlite+pysqlite"), pool_size=1, max_overflow=0
            )
            event.listen(self.sync_engine, "connect", _configure_sqlite)
            self.sync_writes = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="assay-sqlite-writer"
            )
        else:
            self.engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        self.write_lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Yield a connection inside a transaction that commits on success."""
        if not self.is_sqlite:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self.write_lock, self.engine.begin() as connection:
            yield connection

    async def write_sync(
        self, function: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call ``function(connection, *args, **kwargs)`` in a write transaction.

        The transaction commits when the function returns and rolls back when
        it raises.
        """
        if not self.is_sqlite:
            async with self.engine.begin() as connection:
                return await connection.run_sync(function, *args, **kwargs)

        def in_transaction() -> T:
            with self.sync_engine.begin() as connection:
                return function(connection, *args, **kwargs)

        async with self.write_lock:
            loop = asyncio.get_running_loop()
            # Cancelling the caller cannot stop the thread, so the lock is held
            # until the transaction ends either way.
            future = loop.run_in_executor(self.sync_writes, in_transaction)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                await asyncio.wait([future])
                raise

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that no other instance runs at the same time.

        On PostgreSQL it holds an advisory lock until the transaction ends; on
        SQLite the write lock is enough, since one process owns the file.
        """
        async with self.transaction() as connection:
            if not self.is_sqlite:
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
            yield connection

    async def upgrade(self) -> None:
        """Apply every pending migration; safe when several instances start at once."""
        async with self.exclusive() as connection:
            await connection.run_sync(_upgrade)

    async def revision(self) -> str | None:
        async with self.reading() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def close(self) -> None:
        await self.engine.dispose()
        if self.is_sqlite:
            self.sync_writes.shutdown(wait=True)
            self.sync_engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


def _alembic_config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer, and FULL makes each commit
    # survive a power cut, since an acknowledged batch must never be lost.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
