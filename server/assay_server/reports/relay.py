"""Redis pub/sub between instances: one channel per open report.

A message on ``{prefix}report:{report_id}`` is the sender's instance id
(8 bytes), a kind byte and a payload. Kind ``f`` carries a y-websocket frame
(an update or awareness message) that the sender accepted from its own
client. Kind ``s`` carries a state vector, and every instance that has updates
the sender lacks publishes them as an ``f`` frame. Pub/sub drops messages
while a subscriber reconnects, so each room publishes its state vector when it
opens and every ``RESYNC_INTERVAL`` seconds while it has peers. Kind ``x``
(no payload) says the report was deleted, so every instance closes its room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis

from assay_server.reports import wire
from assay_server.reports.room import Room

log = logging.getLogger(__name__)

FRAME = b"f"
STATE_VECTOR = b"s"
DELETED = b"x"
INSTANCE_ID_BYTES = 8
RESYNC_INTERVAL = 5.0
#: Frames waiting to be published; beyond this the newest are dropped and the resync repairs.
MAX_OUTBOX = 10_000


class Relay:
    """Publishes a room's accepted frames and applies other instances' frames to it."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.instance = secrets.token_bytes(INSTANCE_ID_BYTES)
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.pubsub = self.client.pubsub()
        self.rooms: dict[str, Room] = {}
        self.outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(MAX_OUTBOX)
        self.subscribed = asyncio.Event()
        #: Called with the id of a report another instance deleted.
        self.on_deleted: Callable[[str], None] = lambda report_id: None
        self.tasks = [
            asyncio.create_task(self._read_forever()),
            asyncio.create_task(self._publish_forever()),
            asyncio.create_task(self._resync_forever()),
        ]

    def channel(self, report_id: str) -> str:
        return f"{self.prefix}report:{report_id}"

    async def subscribe(self, report_id: str, room: Room) -> None:
        self.rooms[report_id] = room
        try:
            await self.pubsub.subscribe(self.channel(report_id))
        except BaseException:
            self.rooms.pop(report_id, None)
            raise
        self.subscribed.set()
        self._send(report_id, STATE_VECTOR + room.doc.get_state())

    async def unsubscribe(self, report_id: str) -> None:
        self.rooms.pop(report_id, None)
        try:
            await self.pubsub.unsubscribe(self.channel(report_id))
        except (redis.RedisError, OSError):
            log.exception("report %s: unsubscribing from Redis failed", report_id)

    def publish(self, report_id: str, frame: bytes) -> None:
        self._send(report_id, FRAME + frame)

    def announce_deleted(self, report_id: str) -> None:
        self._send(report_id, DELETED)

    def _send(self, report_id: str, body: bytes) -> None:
        try:
            self.outbox.put_nowait((report_id, body))
        except asyncio.QueueFull:
            log.warning(
                "report %s: Redis outbox full; a frame waits for the next resync", report_id
            )

    async def _publish_forever(self) -> None:
        while True:
            report_id, body = await self.outbox.get()
            try:
                await self.client.publish(self.channel(report_id), self.instance + body)
            except (redis.RedisError, OSError):
                log.exception("report %s: publishing to Redis failed", report_id)

    async def _read_forever(self) -> None:
        await self.subscribed.wait()
        while True:
            try:
                message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            except (redis.RedisError, OSError):
                log.exception("reading report channels from Redis failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if message is not None:
                self._receive(message)

    def _receive(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        report_id = channel.removeprefix(f"{self.prefix}report:")
        data: bytes = message["data"]
        room = self.rooms.get(report_id)
        if room is None or data[:INSTANCE_ID_BYTES] == self.instance:
            return
        kind = data[INSTANCE_ID_BYTES : INSTANCE_ID_BYTES + 1]
        payload = data[INSTANCE_ID_BYTES + 1 :]
        try:
            if kind == FRAME:
                room.apply_relayed(payload)
            elif kind == DELETED:
                self.on_deleted(report_id)
            elif kind == STATE_VECTOR:
                missing = room.doc.get_update(payload)
                if missing != wire.EMPTY_UPDATE:
                    self.publish(report_id, wire.update_message(missing))
        except Exception:
            log.exception("report %s: a relayed message could not be applied", report_id)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_INTERVAL)
            for report_id, room in list(self.rooms.items()):
                if room.peers:
                    self._send(report_id, STATE_VECTOR + room.doc.get_state())

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pubsub.aclose()
        await self.client.aclose()
