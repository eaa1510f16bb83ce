"""The open rooms of one instance: loading, batched writes, relaying and unloading."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, merge_updates

from assay_server import metrics
from assay_server.database import Database
from assay_server.errors import NotFound
from assay_server.reports import store, wire
from assay_server.reports.document import read_title
from assay_server.reports.relay import Relay
from assay_server.reports.room import Room

log = logging.getLogger(__name__)

#: Seconds between messages to every peer; y-websocket closes a socket after 30 s of silence.
KEEPALIVE_INTERVAL = 15.0


@dataclass(frozen=True)
class RoomSettings:
    idle_timeout: float
    flush_interval: float
    max_document_bytes: int
    compact_rows: int = store.COMPACT_ROWS
    keepalive_interval: float = KEEPALIVE_INTERVAL


@dataclass
class OpenRoom:
    room: Room
    users: int = 0
    flusher: asyncio.Task[None] | None = None
    unloader: asyncio.TimerHandle | None = None
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ReportRooms:
    """Every report open on this instance, keyed by report id.

    ``use`` keeps a room loaded. A room with no users is unloaded after
    ``idle_timeout`` seconds, once its pending updates are written.
    """

    def __init__(self, database: Database, settings: RoomSettings, relay: Relay | None) -> None:
        self.database = database
        self.settings = settings
        self.relay = relay
        self.open: dict[str, OpenRoom] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.keepalive = asyncio.get_running_loop().create_task(self._keep_alive())
        if relay is not None:
            relay.on_deleted = self._deleted_elsewhere

    @contextlib.asynccontextmanager
    async def use(self, report_id: str) -> AsyncIterator[Room]:
        """Yield the report's room, loading it first if needed; raise ``NotFound``."""
        entry = await self._acquire(report_id)
        try:
            yield entry.room
        finally:
            self._release(report_id, entry)

    async def read_document(self, report_id: str) -> Doc[Any]:
        """Return the report's document: the open room's, else a copy loaded from the store."""
        entry = self.open.get(report_id)
        if entry is not None:
            return entry.room.doc
        async with self.database.reading() as connection:
            updates = await store.load_updates(connection, report_id)
        doc: Doc[Any] = Doc()
        for update in updates:
            doc.apply_update(update)
        return doc

    async def _acquire(self, report_id: str) -> OpenRoom:
        lock = self.locks.setdefault(report_id, asyncio.Lock())
        async with lock:
            entry = self.open.get(report_id)
            if entry is None:
                entry = await self._load(report_id)
            entry.users += 1
            if entry.unloader is not None:
                entry.unloader.cancel()
                entry.unloader = None
            return entry

    async def _load(self, report_id: str) -> OpenRoom:
        async with self.database.reading() as connection:
            await store.find_report(connection, report_id)
            updates = await store.load_updates(connection, report_id)
        room = Room(report_id, updates, self.settings.max_document_bytes)
        entry = OpenRoom(room)
        if self.relay is not None:
            relay = self.relay
            room.on_local = lambda frame: relay.publish(report_id, frame)
            # Without its channel the room would miss other instances' edits,
            # so a failed subscription fails the load.
            await relay.subscribe(report_id, room)
        entry.flusher = asyncio.create_task(self._flush_forever(report_id, entry))
        self.open[report_id] = entry
        metrics.OPEN_REPORTS.inc()
        log.info("report %s loaded: %d stored updates", report_id, len(updates))
        return entry

    def _release(self, report_id: str, entry: OpenRoom) -> None:
        entry.users -= 1
        if entry.users > 0 or self.open.get(report_id) is not entry:
            return
        loop = asyncio.get_running_loop()
        entry.unloader = loop.call_later(
            self.settings.idle_timeout,
            lambda: loop.create_task(self._unload_if_idle(report_id, entry)),
        )

    async def _unload_if_idle(self, report_id: str, entry: OpenRoom) -> None:
        async with self.locks.setdefault(report_id, asyncio.Lock()):
            if entry.users > 0 or self.open.get(report_id) is not entry:
                return
            await self._unload(report_id, entry, 1001, "report unloaded")
            self.locks.pop(report_id, None)
        log.info("report %s unloaded after %.0f s idle", report_id, self.settings.idle_timeout)

    async def _unload(self, report_id: str, entry: OpenRoom, code: int, reason: str) -> None:
        # The room stays open until its last updates are written: a document
        # read meanwhile would otherwise load from the store without them.
        # Its channel closes first, so no relayed update arrives after the flush.
        if entry.flusher is not None:
            entry.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry.flusher
        if self.relay is not None:
            await self.relay.unsubscribe(report_id)
        await self.flush(report_id, entry)
        del self.open[report_id]
        metrics.OPEN_REPORTS.dec()
        entry.room.close(code, reason)

    async def _flush_forever(self, report_id: str, entry: OpenRoom) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval)
            await self.flush(report_id, entry)

    async def flush(self, report_id: str, entry: OpenRoom) -> None:
        """Write the room's pending updates in one transaction, compacting when due."""
        async with entry.write_lock:
            room = entry.room
            updates, room.pending = room.pending, []
            if not updates:
                return
            if len(updates) > 1:
                # One log row per flush keeps the log short, so the compaction,
                # which replays the log in the event loop, runs rarely.
                updates = [merge_updates(*updates)]
            try:
                async with self.database.transaction() as connection:
                    rows = await store.append_updates(
                        connection, report_id, updates, read_title(room.doc)
                    )
            except NotFound:
                log.warning(
                    "report %s: %d updates dropped, report deleted", report_id, len(updates)
                )
                return
            except asyncio.CancelledError:
                # An unload cancels the periodic flush and flushes again. A write
                # that did commit is then stored twice, which changes nothing,
                # since applying an update twice leaves a Yjs document as it was.
                room.pending[:0] = updates
                raise
            except Exception:
                room.pending[:0] = updates
                log.exception(
                    "report %s: writing %d updates failed; retrying", report_id, len(updates)
                )
                return
            if rows >= self.settings.compact_rows:
                await self._compact(report_id)

    async def flush_now(self, report_id: str) -> None:
        """Write the open room's pending updates now, so a response can promise them."""
        entry = self.open.get(report_id)
        if entry is not None:
            await self.flush(report_id, entry)

    async def _compact(self, report_id: str) -> None:
        try:
            folded = await store.compact(self.database, report_id)
        except Exception:
            log.exception("report %s: compaction failed; the log is kept", report_id)
            return
        log.info("report %s: compacted %d log rows into its snapshot", report_id, folded)

    def _deleted_elsewhere(self, report_id: str) -> None:
        log.info("report %s deleted on another instance; closing its room", report_id)
        asyncio.get_running_loop().create_task(self.delete(report_id, announce=False))

    async def delete(self, report_id: str, announce: bool = True) -> None:
        """Close the report's sockets with 4404 and forget its room without writing it.

        With ``announce``, other instances are told through Redis to do the same.
        """
        if announce and self.relay is not None:
            self.relay.announce_deleted(report_id)
        entry = self.open.pop(report_id, None)
        if entry is None:
            return
        metrics.OPEN_REPORTS.dec()
        entry.room.pending.clear()
        if entry.flusher is not None:
            entry.flusher.cancel()
        if self.relay is not None:
            await self.relay.unsubscribe(report_id)
        entry.room.close(4404, "report deleted")

    async def close(self) -> None:
        """Write every room and close every socket with 1012, for a clean shutdown."""
        self.keepalive.cancel()
        for report_id, entry in list(self.open.items()):
            if entry.unloader is not None:
                entry.unloader.cancel()
            await self._unload(report_id, entry, 1012, "server restart")
        if self.relay is not None:
            await self.relay.close()

    async def _keep_alive(self) -> None:
        # Waking every second lets a changed interval take effect at once.
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(min(1.0, self.settings.keepalive_interval))
            if loop.time() - last < self.settings.keepalive_interval:
                continue
            last = loop.time()
            for entry in self.open.values():
                for peer in entry.room.peers:
                    peer.send(wire.KEEPALIVE)
