"""The event bus: per-run live streams and per-project run events.

With Redis configured, every committed batch is appended to the run's stream
``{prefix}live:{project_id}:{run_id}`` and every run event to the project's
stream ``{prefix}events:{project_id}``, both trimmed to an approximate length.
Without Redis, ``LocalBus`` keeps the same streams in memory for one process.
Stream entries carry the fields documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Protocol

import redis.asyncio as redis

from assay import protocol

log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, Any]]


class Bus(Protocol):
    async def publish_batch(
        self, project_id: int, run_id: str, fields: dict[str, Any]
    ) -> None: ...

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None: ...

    async def read(self, stream: str, after: str, block_ms: int = 0) -> list[Entry]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    def live_stream(self, project_id: int, run_id: str) -> str: ...

    def event_stream(self, project_id: int) -> str: ...


def event_fields(kind: str, run_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "run_id": run_id, "data": protocol.pack(data), "time": time.time()}


class StreamNames:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def live_stream(self, project_id: int, run_id: str) -> str:
        return f"{self.prefix}live:{project_id}:{run_id}"

    def event_stream(self, project_id: int) -> str:
        return f"{self.prefix}events:{project_id}"


class LocalBus(StreamNames):
    """In-memory streams with Redis stream semantics, for a single instance."""

    def __init__(self, prefix: str, live_length: int, event_length: int) -> None:
        super().__init__(prefix)
        self.live_length = live_length
        self.event_length = event_length
        self.streams: dict[str, deque[Entry]] = {}
        self.changed = asyncio.Condition()
        self.last_ms = 0
        self.sequence = 0

    async def publish_batch(self, project_id: int, run_id: str, fields: dict[str, Any]) -> None:
        await self._append(self.live_stream(project_id, run_id), fields, self.live_length)

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None:
        await self._append(self.event_stream(project_id), event, self.event_length)

    async def read(self, stream: str, after: str, block_ms: int = 0) -> list[Entry]:
        found = self._after(stream, after)
        if found or block_ms <= 0:
            return found
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: bool(self._after(stream, after))),
                    block_ms / 1000,
                )
            except TimeoutError:
                return []
        return self._after(stream, after)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.streams.clear()

    async def _append(self, stream: str, fields: dict[str, Any], length: int) -> None:
        entries = self.streams.get(stream)
        if entries is None:
            entries = self.streams[stream] = deque(maxlen=length)
        entries.append((self._next_id(), fields))
        async with self.changed:
            self.changed.notify_all()

    def _next_id(self) -> str:
        now = int(time.time() * 1000)
        if now <= self.last_ms:
            self.sequence += 1
        else:
            self.last_ms, self.sequence = now, 0
        return f"{self.last_ms}-{self.sequence}"

    def _after(self, stream: str, after: str) -> list[Entry]:
        threshold = _id_key(after)
        return [e for e in self.streams.get(stream, ()) if _id_key(e[0]) > threshold]


class RedisBus(StreamNames):
    """Streams in Redis, shared by every instance of the server."""

    def __init__(self, url: str, prefix: str, live_length: int, event_length: int) -> None:
        super().__init__(prefix)
        # Timeouts keep a hung Redis from holding up acknowledgements forever.
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.live_length = live_length
        self.event_length = event_length

    async def publish_batch(self, project_id: int, run_id: str, fields: dict[str, Any]) -> None:
        await self.client.xadd(
            self.live_stream(project_id, run_id),
            fields,  # type: ignore[arg-type]
            maxlen=self.live_length,
            approximate=True,
        )

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None:
        await self.client.xadd(
            self.event_stream(project_id),
            event,  # type: ignore[arg-type]
            maxlen=self.event_length,
            approximate=True,
        )

    async def read(self, stream: str, after: str, block_ms: int = 0) -> list[Entry]:
        response: Any = await self.client.xread({stream: after}, block=block_ms or None)
        entries: list[Entry] = []
        for _name, items in response or []:
            for entry_id, fields in items:
                decoded = {key.decode(): value for key, value in fields.items()}
                entries.append((entry_id.decode(), decoded))
        return entries

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()


def _id_key(entry_id: str) -> tuple[int, int]:
    if entry_id in ("0", "0-0", ""):
        return (0, 0)
    millis, _, sequence = entry_id.partition("-")
    return (int(millis), int(sequence or 0))
