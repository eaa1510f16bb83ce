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
from assay_server import metrics
from assay_server.settings import LOCAL_BUS_BYTES

log = logging.getLogger(__name__)

#: An entry of ``LocalBus`` with its id parsed for comparisons: (key, id, fields).
KeyedEntry = tuple[tuple[int, int], str, dict[str, Any]]
#: An entry with the name of its stream: (stream, entry id, fields).
StreamEntry = tuple[str, str, dict[str, Any]]

#: The exceptions a bus raises when Redis cannot be reached.
BUS_ERRORS = (redis.RedisError, OSError)


class Bus(Protocol):
    async def publish_batch(self, project_id: int, run_id: str, fields: dict[str, Any]) -> bool:
        """Append a stored batch to its run's live stream, unless it was appended before.

        ``fields`` carries the batch's ``session`` and ``seq``. A batch is
        appended only when its ``seq`` is above the highest one appended for
        its session, so a batch that a client resent while the connection it
        first came on was still publishing it is appended once. Returns
        whether the batch was appended.
        """
        ...

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None: ...

    async def read_many(self, cursors: dict[str, str], block_ms: int) -> list[StreamEntry]:
        """Entries after each stream's cursor, waiting up to ``block_ms`` for the first."""
        ...

    async def last_id(self, stream: str) -> str:
        """The id of the stream's newest entry, or ``0-0`` when it has none."""
        ...

    async def trimmed_after(self, stream: str, after: str) -> bool:
        """Whether entries newer than ``after`` may be gone.

        They are gone when they were trimmed away, or when the stream was lost
        and started again (Redis restarted empty, or this process restarted
        with the in-process bus). ``0-0`` means the start of the stream.
        """
        ...

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
    """In-memory streams with Redis stream semantics, for a single instance.

    Like the Redis streams, a stream is deleted once nothing was appended to it
    for ``idle_ttl`` seconds, so memory grows with the runs of the last
    ``idle_ttl`` seconds and not with every run the server has seen. The
    entries of all streams together take at most about ``max_bytes``: past
    that, the oldest entries go first, whatever their stream, as Redis's
    ``maxmemory`` with LRU eviction does for whole streams. A cursor before a
    dropped entry reads as trimmed, so its socket resyncs.
    """

    def __init__(
        self,
        prefix: str,
        live_length: int,
        event_length: int,
        idle_ttl: int = 86_400,
        max_bytes: int = LOCAL_BUS_BYTES,
    ) -> None:
        super().__init__(prefix)
        self.live_length = live_length
        self.event_length = event_length
        self.idle_ttl = idle_ttl
        self.max_bytes = max_bytes
        #: Every entry appended, oldest first, as (stream, key, size), and the
        #: sum of the sizes. Entries already gone (trimmed by length, or in an
        #: expired stream) stay counted until they reach the front, so the
        #: entries kept take at most ``max_bytes``.
        self.appended: deque[tuple[str, tuple[int, int], int]] = deque()
        self.appended_bytes = 0
        #: Whether the first drop past ``max_bytes`` was logged; later ones are only counted.
        self.drop_logged = False
        self.swept_at = time.monotonic()
        self.streams: dict[str, deque[KeyedEntry]] = {}
        self.trimmed: dict[str, str] = {}
        self.changed = asyncio.Condition()
        self.last_ms = 0
        self.sequence = 0
        #: The highest batch number appended, by (stream, session).
        self.published: dict[tuple[str, int], int] = {}

    async def publish_batch(self, project_id: int, run_id: str, fields: dict[str, Any]) -> bool:
        stream = self.live_stream(project_id, run_id)
        session = (stream, int(fields["session"]))
        if int(fields["seq"]) <= self.published.get(session, -1):
            return False
        self.published[session] = int(fields["seq"])
        await self._append(stream, fields, self.live_length)
        return True

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None:
        await self._append(self.event_stream(project_id), event, self.event_length)

    async def read_many(self, cursors: dict[str, str], block_ms: int) -> list[StreamEntry]:
        found = self._after_all(cursors)
        if found or block_ms <= 0:
            return found
        thresholds = {stream: id_key(after) for stream, after in cursors.items()}
        async with self.changed:
            try:
                await asyncio.wait_for(
                    self.changed.wait_for(lambda: self._has_newer(thresholds)),
                    block_ms / 1000,
                )
            except TimeoutError:
                return []
        return self._after_all(cursors)

    async def last_id(self, stream: str) -> str:
        entries = self.streams.get(stream)
        return entries[-1][1] if entries else "0-0"

    async def trimmed_after(self, stream: str, after: str) -> bool:
        trimmed = self.trimmed.get(stream)
        if trimmed is not None:
            return id_key(trimmed) > id_key(after)
        if id_key(after) == (0, 0):
            return False
        entries = self.streams.get(stream)
        if not entries:
            # A cursor of a stream this process never wrote comes from a
            # process that ran before it, with streams that died with it.
            return True
        return entries[0][0] > id_key(after)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.streams.clear()

    async def _append(self, stream: str, fields: dict[str, Any], length: int) -> None:
        self._expire_idle()
        entries = self.streams.get(stream)
        if entries is None:
            entries = self.streams[stream] = deque(maxlen=length)
        if len(entries) == length:
            self.trimmed[stream] = entries[0][1]
        entry_id = self._next_id()
        key = id_key(entry_id)
        entries.append((key, entry_id, fields))
        size = entry_size(fields)
        self.appended.append((stream, key, size))
        self.appended_bytes += size
        self._drop_oldest()
        async with self.changed:
            self.changed.notify_all()

    def _drop_oldest(self) -> None:
        """Drop the oldest entries of all streams until the rest fit ``max_bytes``."""
        dropped = 0
        while self.appended_bytes > self.max_bytes and len(self.appended) > 1:
            stream, key, size = self.appended.popleft()
            self.appended_bytes -= size
            entries = self.streams.get(stream)
            if entries and entries[0][0] == key:
                self.trimmed[stream] = entries.popleft()[1]
                dropped += 1
        metrics.LOCAL_BUS_HELD_BYTES.set(self.appended_bytes)
        if not dropped:
            return
        metrics.LOCAL_BUS_DROPPED.inc(dropped)
        if not self.drop_logged:
            # A long-lived server stays at the bound once it reaches it, so
            # only the first drop is logged, and the counter counts the rest.
            self.drop_logged = True
            log.info(
                "the in-process bus reached ASSAY_LOCAL_BUS_BYTES (%d bytes); it now drops "
                "the oldest entries, and a live socket behind them resyncs",
                self.max_bytes,
            )

    def _expire_idle(self) -> None:
        """Delete the streams idle for ``idle_ttl`` seconds.

        The streams are looked at no more often than once a minute, or once
        per ``idle_ttl`` when that is shorter.
        """
        now = time.monotonic()
        if now - self.swept_at < min(self.idle_ttl, 60):
            return
        self.swept_at = now
        oldest_kept = (int(time.time() * 1000) - self.idle_ttl * 1000, 0)
        idle = {name for name, entries in self.streams.items() if entries[-1][0] < oldest_kept}
        for name in idle:
            del self.streams[name]
            self.trimmed.pop(name, None)
        for session in [session for session in self.published if session[0] in idle]:
            del self.published[session]

    def _next_id(self) -> str:
        now = int(time.time() * 1000)
        if now <= self.last_ms:
            self.sequence += 1
        else:
            self.last_ms, self.sequence = now, 0
        return f"{self.last_ms}-{self.sequence}"

    def _after_all(self, cursors: dict[str, str]) -> list[StreamEntry]:
        found: list[StreamEntry] = []
        for stream, after in cursors.items():
            threshold = id_key(after)
            newer: list[StreamEntry] = []
            # Entries are in id order, so only the tail past the cursor is read.
            for key, entry_id, fields in reversed(self.streams.get(stream, ())):
                if key <= threshold:
                    break
                newer.append((stream, entry_id, fields))
            found.extend(reversed(newer))
        return found

    def _has_newer(self, thresholds: dict[str, tuple[int, int]]) -> bool:
        for stream, threshold in thresholds.items():
            entries = self.streams.get(stream)
            if entries and entries[-1][0] > threshold:
                return True
        return False


#: Bytes an in-process entry takes besides its fields' values: the entry's
#: tuple, its id, its key and its fields' dict.
ENTRY_OVERHEAD = 512


def entry_size(fields: dict[str, Any]) -> int:
    """Estimate the bytes an in-process stream entry with ``fields`` takes."""
    return ENTRY_OVERHEAD + sum(
        len(value) for value in fields.values() if isinstance(value, bytes | str)
    )


#: Append a batch only when its seq is above the highest one appended for its
#: session, which the hash ``{stream}:published`` stores per session. It is one
#: script so that two connections publishing the same batch cannot both pass the
#: check. Lua compares numbers as doubles, which is exact for every seq below 2**53.
#: Each append restarts both keys' expiry, so Redis deletes them once the run
#: has been idle for the TTL.
PUBLISH_ONCE = """
local highest = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1')
if tonumber(ARGV[3]) <= highest then
    return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


#: Connections each Redis client opens at most. A command waits up to
#: ``POOL_WAIT`` seconds for one of them to be free.
POOL_CONNECTIONS = 100
POOL_WAIT = 5.0


def redis_client(url: str, socket_timeout: float = 5.0) -> redis.Redis:
    """Open a client whose commands wait for a free pooled connection.

    redis-py's default pool fails a command at once with "Too many
    connections" when all of its 100 connections are busy, as when 200 runs
    start together. Timeouts keep a hung Redis from holding anything up
    forever.
    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_CONNECTIONS,
        timeout=POOL_WAIT,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5,
    )
    # The client owns its pool, so closing the client closes the connections.
    return redis.Redis.from_pool(pool)


class RedisBus(StreamNames):
    """Streams in Redis, shared by every instance of the server."""

    def __init__(
        self, url: str, prefix: str, live_length: int, event_length: int, idle_ttl: int = 86_400
    ) -> None:
        super().__init__(prefix)
        self.idle_ttl = idle_ttl
        self.client = redis_client(url)
        # Blocking reads get a connection of their own, with room for the block time.
        self.reader = redis_client(url, socket_timeout=30)
        self.live_length = live_length
        self.event_length = event_length
        self._publish_once = self.client.register_script(PUBLISH_ONCE)

    async def publish_batch(self, project_id: int, run_id: str, fields: dict[str, Any]) -> bool:
        stream = self.live_stream(project_id, run_id)
        pairs = [item for pair in fields.items() for item in pair]
        appended: Any = await self._publish_once(
            keys=[stream, stream + ":published"],
            args=[self.live_length, fields["session"], fields["seq"], self.idle_ttl, *pairs],
        )
        return bool(appended)

    async def publish_event(self, project_id: int, event: dict[str, Any]) -> None:
        stream = self.event_stream(project_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, event, maxlen=self.event_length, approximate=True)  # type: ignore[arg-type]
            pipe.expire(stream, self.idle_ttl)
            await pipe.execute()

    async def read_many(self, cursors: dict[str, str], block_ms: int) -> list[StreamEntry]:
        response: Any = await self.reader.xread(cursors, block=block_ms or None)  # type: ignore[arg-type]
        entries: list[StreamEntry] = []
        for name, items in response or []:
            for entry_id, fields in items:
                decoded = {key.decode(): value for key, value in fields.items()}
                entries.append((name.decode(), entry_id.decode(), decoded))
        return entries

    async def last_id(self, stream: str) -> str:
        newest: Any = await self.client.xrevrange(stream, count=1)
        return newest[0][0].decode() if newest else "0-0"

    async def trimmed_after(self, stream: str, after: str) -> bool:
        from_start = id_key(after) == (0, 0)
        try:
            info: Any = await self.client.xinfo_stream(stream)
        except redis.ResponseError:
            # No such stream, yet the client handled an entry of it: Redis lost it.
            return not from_start
        first = info.get("first-entry")
        if info["entries-added"] <= info["length"]:
            # Nothing was trimmed, so an oldest entry newer than the cursor
            # means the stream was lost and started again.
            return not from_start and bool(first) and id_key(_text(first[0])) > id_key(after)
        # Trimming removes the oldest entries, so some entry newer than ``after``
        # may be gone when the oldest one left is newer than ``after``. This
        # also reports a gap when the newest removed entry was ``after`` itself,
        # which costs a reload but loses nothing.
        if not first:
            return id_key(_text(info["last-generated-id"])) > id_key(after)
        return id_key(_text(first[0])) > id_key(after)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (redis.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
        await self.reader.aclose()


def id_key(entry_id: str) -> tuple[int, int]:
    if entry_id in ("0", "0-0", ""):
        return (0, 0)
    millis, _, sequence = entry_id.partition("-")
    return (int(millis), int(sequence or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
