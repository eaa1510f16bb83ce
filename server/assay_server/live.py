"""Fan-out of the live streams to browser sockets.

Each server instance runs one ``LiveHub``. Its reader task reads every stream
that at least one local socket watches, in one blocking call, encodes each
entry once and offers the bytes to every subscriber of that stream. A
subscriber's queue is bounded: when it is full, the hub drops the subscriber
and its socket sends a resync message, so a slow browser never delays the
others or ingest. When reading the streams fails (Redis went away), entries may
have been published and lost meanwhile, so every subscriber gets a resync.

The hub hands each subscriber all its entries of one read in one piece, a
``Chunk``: the frames joined into one bytes object, which subscribers that take
the whole read share. The socket's sender sends whatever chunks have queued up
while it was busy as one ``batch`` message. So the work per socket grows with
the reads and the sends, not with the entries: 1,000 sockets watching 200
entries a second cost 200,000 queue operations a second when each entry was
offered alone. For the same reason the reader spaces its reads by the number
of sockets the last one reached (``READ_SPACING``): fewer, larger writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any, NamedTuple

import msgpack
import numpy as np

from assay import protocol
from assay_server.bus import Bus, StreamEntry, id_key

log = logging.getLogger(__name__)

#: Frames one socket may have queued before it is asked to resync.
QUEUE_LIMIT = 1000
#: Bytes of frames one socket may have queued before it is asked to resync. A
#: frame larger than this is still queued when the queue is empty, so a batch
#: of any size reaches a socket that keeps up.
QUEUE_BYTES = 32 * 1024 * 1024
BLOCK_MS = 200
#: Seconds between the starts of two reads of the streams, per subscriber that
#: the first read reached, up to ``READ_SPACING_MAX``. Each read costs a
#: websocket write per socket it reaches, so with many sockets the hub reads
#: less often and each write carries more entries. An entry waits at most the
#: spacing for its read: 50 ms with 1,000 sockets, 1 ms with 20. In
#: bench/load.py with 1,000 sockets and 40 runs this took the server from 0.71
#: to 0.50 of a core, and the p99 latency from 122 to 73 ms.
READ_SPACING = 50e-6
READ_SPACING_MAX = 0.05
#: Subscribers the hub queues a read for before it yields to the event loop.
#: Each queued chunk wakes a socket's sender, and the loop runs every callback
#: that is ready before it polls the sockets again. Queued all at once, a read
#: for 1,000 sockets was a burst of 1,000 sends, an estimated 25 ms, and each
#: step of an ingest batch (receive, store, publish, acknowledge) could wait
#: behind one.
DISPATCH_SLICE = 32
#: Entries, and bytes of them, that the hub keeps of each stream it reads.
TAIL_LENGTH = 32
TAIL_BYTES = 64 * 1024
FELL_BEHIND = "the connection fell behind the live streams"
STREAMS_LOST = "the live streams were unreachable, so entries may be missing"
#: A batch message stops growing at this size; the frames after it wait for the next one.
BATCH_BYTES = 1024 * 1024
#: The event name that makes a socket watch a new run's stream.
RUN_CREATED = b"run.created"
# The start of the msgpack map {"type": "batch", "messages": [...]} up to the array.
_BATCH_HEAD: bytes = msgpack.packb({"type": "batch", "messages": None})[:-1]


class ResyncNeeded(Exception):
    """The subscriber must reload through the HTTP API and subscribe afresh."""


class Chunk(NamedTuple):
    """Encoded messages joined back to back: ``frame_count`` msgpack maps in ``body``.

    Every socket that takes a whole read gets the same chunk, so the hub
    works out once what each socket would otherwise work out again.
    ``creates_runs`` is False when ``body`` contains no ``run.created`` event.
    ``message`` is the chunk's ``batch`` message, when the hub built it.
    """

    frame_count: int
    body: bytes
    creates_runs: bool = True
    message: bytes | None = None


class Subscriber:
    """One socket's view of the hub: a queue of chunks, bounded in frames and bytes.

    The queue itself is unbounded so that a None can always follow the last
    chunk to wake the sender; ``limit`` and ``max_bytes`` are enforced in
    ``put``.
    """

    def __init__(self, limit: int = QUEUE_LIMIT, max_bytes: int = QUEUE_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.queued_frames = 0
        self.queued_bytes = 0
        # A deque and one future instead of an asyncio.Queue, because the sender
        # is the only reader. In a profile with 1,000 sockets, the Queue's
        # bookkeeping on each put and get took about 5 % of the event loop.
        self.queue: collections.deque[Chunk | None] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        #: Per stream watched, the id of the newest entry queued when it was added.
        self.cursors: dict[str, str] = {}
        # The cursors parsed, since every entry offered is compared with one.
        self.cursor_keys: dict[str, tuple[int, int]] = {}
        #: Streams whose entries up to this key were queued already, though the
        #: hub's reader has yet to read them: the backlog of a new watch.
        self.ahead: dict[str, tuple[int, int]] = {}
        #: The number of streams whose watchers in the hub include this subscriber.
        self.watching = 0
        self.overflowed = False
        self.resync_reason = FELL_BEHIND

    def start(self, stream: str, after: str, announce: bool) -> None:
        """Set the cursor of ``stream``; with ``announce``, queue it for the client too.

        The client stores the announced cursor like an entry's id, so that a
        reconnect resumes a stream it has received no entry of yet.
        """
        self.cursors[stream] = after
        self.cursor_keys[stream] = id_key(after)
        if announce:
            frame = protocol.pack({"type": "watch", "stream": stream, "id": after})
            self.queued_frames += 1
            self.queued_bytes += len(frame)
            self._push(Chunk(1, frame, creates_runs=False))

    def interrupt(self, reason: str) -> None:
        """Stop delivery; the socket tells its client to resync for ``reason``."""
        self.overflowed = True
        self.resync_reason = reason
        self._push(None)

    def offer(
        self, stream: str, entry_id: str, frame: bytes, key: tuple[int, int] | None = None
    ) -> bool:
        """Queue one entry's ``frame`` unless it is not newer than the cursor.

        Returns False on overflow. ``key`` is ``id_key(entry_id)`` when the
        caller parsed it already.
        """
        if key is None:
            key = id_key(entry_id)
        if key <= self.cursor_keys.get(stream, (0, 0)):
            return True
        if not self.put(Chunk(1, frame)):
            return False
        self.cursors[stream] = entry_id
        self.cursor_keys[stream] = key
        return True

    def take(self, group: StreamGroup) -> list[bytes]:
        """Return the frames of ``group`` that this subscriber has not had yet."""
        cursor = self.ahead.get(group.stream)
        if cursor is None:
            return group.frames
        if cursor >= group.keys[-1]:
            if cursor == group.keys[-1]:
                del self.ahead[group.stream]
            return []
        del self.ahead[group.stream]
        return [f for k, f in zip(group.keys, group.frames, strict=True) if k > cursor]

    def put(self, chunk: Chunk) -> bool:
        """Queue ``chunk``, or ask for a resync and return False when it does not fit.

        A chunk over the limits still goes to a subscriber with nothing
        queued, so that a read of any size reaches a socket that keeps up.
        """
        if self.overflowed:
            return False
        if self.queued_frames and (
            self.queued_frames + chunk.frame_count > self.limit
            or self.queued_bytes + len(chunk.body) > self.max_bytes
        ):
            self.interrupt(FELL_BEHIND)
            return False
        self.queued_frames += chunk.frame_count
        self.queued_bytes += len(chunk.body)
        self._push(chunk)
        return True

    def _push(self, chunk: Chunk | None) -> None:
        self.queue.append(chunk)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def next_chunks(self, max_bytes: int = BATCH_BYTES) -> list[Chunk] | None:
        """Wait for the next chunk, and take the ones queued behind it up to ``max_bytes``.

        Returns None when the subscriber fell behind.
        """
        if self.overflowed:
            return None
        while not self.queue:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        chunk = self.queue.popleft()
        if chunk is None or self.overflowed:
            return None
        chunks = [chunk]
        size = len(chunk.body)
        count = chunk.frame_count
        while size < max_bytes and self.queue:
            chunk = self.queue.popleft()
            if chunk is None:
                return None
            chunks.append(chunk)
            size += len(chunk.body)
            count += chunk.frame_count
        self.queued_frames -= count
        self.queued_bytes -= size
        return chunks

    def reset(self) -> None:
        self.cursors.clear()
        self.cursor_keys.clear()
        self.ahead.clear()
        self.overflowed = False
        self.resync_reason = FELL_BEHIND
        self.queued_frames = 0
        self.queued_bytes = 0
        self.queue.clear()


class StreamTail:
    """The newest entries of one stream that the hub read, encoded.

    It contains every entry after ``start_key`` up to the hub's position in
    the stream. A subscriber that starts from a cursor at or after
    ``start_key`` therefore catches up from memory, without reading the bus.
    When all sockets follow a new run at once, that makes one read of the bus
    instead of one per socket.
    """

    def __init__(self, start_key: tuple[int, int]) -> None:
        self.start_key = start_key
        self.entries: collections.deque[tuple[tuple[int, int], str, bytes]] = collections.deque()
        self.size = 0

    def covers(self, key: tuple[int, int]) -> bool:
        return key >= self.start_key

    def append(self, key: tuple[int, int], entry_id: str, frame: bytes) -> None:
        self.entries.append((key, entry_id, frame))
        self.size += len(frame)
        while len(self.entries) > TAIL_LENGTH or self.size > TAIL_BYTES:
            dropped_key, _, dropped = self.entries.popleft()
            self.size -= len(dropped)
            self.start_key = dropped_key

    def after(self, key: tuple[int, int]) -> list[tuple[tuple[int, int], str, bytes]]:
        """Return the entries newer than ``key``, oldest first."""
        newer = []
        for entry in reversed(self.entries):
            if entry[0] <= key:
                break
            newer.append(entry)
        newer.reverse()
        return newer


class StreamGroup(NamedTuple):
    """The entries of one stream in one read, encoded, oldest first."""

    stream: str
    ids: list[str]
    keys: list[tuple[int, int]]
    frames: list[bytes]


class LiveHub:
    def __init__(
        self,
        bus: Bus,
        queue_limit: int = QUEUE_LIMIT,
        queue_bytes: int = QUEUE_BYTES,
        read_spacing: float = READ_SPACING,
        read_spacing_max: float = READ_SPACING_MAX,
        dispatch_slice: int = DISPATCH_SLICE,
    ) -> None:
        self.bus = bus
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self.read_spacing = read_spacing
        self.read_spacing_max = read_spacing_max
        self.dispatch_slice = dispatch_slice
        self.topics: dict[str, set[Subscriber]] = {}
        self.positions: dict[str, str] = {}
        self.tails: dict[str, StreamTail] = {}
        self.lock = asyncio.Lock()
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def add(
        self, subscriber: Subscriber, stream: str, after: str | None, announce: bool = False
    ) -> str:
        """Watch ``stream`` from just after ``after``, or from now when it is None.

        Returns the cursor it starts from. With ``announce``, a ``watch`` frame
        with that cursor goes to the client before the stream's entries.

        Raises ``ResyncNeeded`` when entries after ``after`` were trimmed away or
        lost, and the bus's errors when it is unreachable.
        """
        async with self.lock:
            start = await self._add(subscriber, stream, after, announce)
        self._start_reader()
        self.changed.set()
        return start

    async def add_many(
        self, subscriber: Subscriber, streams: list[str], after: str, announce: bool = False
    ) -> None:
        """Watch each of ``streams`` from just after ``after``, as ``add`` does.

        It takes the hub's lock once for all of them. When a hundred runs
        start together, every socket follows each of them, and a turn of the
        lock per stream and socket kept senders from draining their queues.
        """
        async with self.lock:
            for stream in streams:
                await self._add(subscriber, stream, after, announce)
        self._start_reader()
        self.changed.set()

    async def _add(
        self, subscriber: Subscriber, stream: str, after: str | None, announce: bool
    ) -> str:
        start = self._start_from_tail(subscriber, stream, after, announce)
        if start is not None:
            self._watch(subscriber, stream)
            return start
        if after is None:
            after = await self.bus.last_id(stream)
        elif await self.bus.trimmed_after(stream, after):
            raise ResyncNeeded(f"stream {stream} no longer contains entries after {after}")
        subscriber.start(stream, after, announce)

        # Entries already in the stream go out now, under the lock, so the
        # reader cannot deliver a newer one first.
        backlog = [
            (id_key(entry[1]), entry[1], encode_entry(entry))
            for entry in await self.bus.read_many({stream: after}, 0)
        ]
        _queue_backlog(subscriber, stream, backlog)
        if stream not in self.topics:
            tail = self.tails[stream] = StreamTail(id_key(after))
            for key, entry_id, frame in backlog:
                tail.append(key, entry_id, frame)

        # A stream already read keeps its position: other subscribers may
        # still wait for entries older than this subscriber's cursor.
        position = self.positions.setdefault(stream, subscriber.cursors[stream])
        if subscriber.cursor_keys[stream] > id_key(position):
            subscriber.ahead[stream] = subscriber.cursor_keys[stream]
        else:
            subscriber.ahead.pop(stream, None)
        self._watch(subscriber, stream)
        return after

    def _watch(self, subscriber: Subscriber, stream: str) -> None:
        watchers = self.topics.setdefault(stream, set())
        if subscriber not in watchers:
            watchers.add(subscriber)
            subscriber.watching += 1

    def _start_from_tail(
        self, subscriber: Subscriber, stream: str, after: str | None, announce: bool
    ) -> str | None:
        """Start ``subscriber`` on ``stream`` from the hub's tail, when it covers ``after``.

        Returns the cursor it starts from. Returns None when the stream is not
        read yet, or when ``after`` lies before the tail or beyond the hub's
        position, so that the caller reads the bus instead.
        """
        tail = self.tails.get(stream)
        if tail is None or stream not in self.topics:
            return None
        position = self.positions[stream]
        if after is None:
            after = position
        key = id_key(after)
        if not tail.covers(key) or key > id_key(position):
            return None
        subscriber.start(stream, after, announce)
        _queue_backlog(subscriber, stream, tail.after(key))
        subscriber.ahead.pop(stream, None)
        return after

    def remove(self, subscriber: Subscriber) -> None:
        subscriber.watching = 0
        for stream in list(self.topics):
            watchers = self.topics[stream]
            watchers.discard(subscriber)
            if not watchers:
                del self.topics[stream]
                self.positions.pop(stream, None)
                self.tails.pop(stream, None)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

    def _start_reader(self) -> None:
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.topics:
                self.changed.clear()
                await self.changed.wait()
                continue
            cursors = {stream: self.positions[stream] for stream in self.topics}
            started = loop.time()
            try:
                entries = await self.bus.read_many(cursors, BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading the live streams failed; retrying in 1 s")
                self._interrupt_all(STREAMS_LOST)
                await asyncio.sleep(1)
                continue
            if entries:
                async with self.lock:
                    reached = await self._dispatch(entries)
                spacing = min(self.read_spacing_max, reached * self.read_spacing)
                pause = started + spacing - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)

    def _interrupt_all(self, reason: str) -> None:
        subscribers = {s for watchers in self.topics.values() for s in watchers}
        for subscriber in subscribers:
            subscriber.interrupt(reason)
            self.remove(subscriber)
        if subscribers:
            log.info("%d live subscribers asked to resync: %s", len(subscribers), reason)

    async def _dispatch(self, entries: list[StreamEntry]) -> int:
        """Queue the entries for their subscribers and return the number of subscribers reached.

        It yields to the event loop after every ``dispatch_slice`` subscribers.
        It holds the hub's lock, so no subscriber is added meanwhile. A
        subscriber that left the hub meanwhile, because its socket closed or
        subscribed again, gets nothing.
        """
        groups = self._group(entries)
        if not groups:
            return 0
        read = {group.stream for group in groups}
        whole = shared_chunk(
            sum(len(g.frames) for g in groups), b"".join(f for g in groups for f in g.frames)
        )
        every = len(self.topics)
        reached = set().union(*(self.topics[stream] for stream in read))
        for index, subscriber in enumerate(reached, 1):
            if index % self.dispatch_slice == 0:
                await asyncio.sleep(0)
            if not subscriber.watching:
                continue
            # Most subscribers watch every stream read and are not ahead of the
            # reader on any: they share the read's bytes, with no work per entry.
            # A subscriber that watches every stream the hub reads needs no
            # check of the streams in this read.
            if subscriber.ahead or (
                subscriber.watching != every and not read <= subscriber.cursor_keys.keys()
            ):
                chunk = self._chunk_for(subscriber, groups)
            else:
                chunk = whole
            if chunk.frame_count and not subscriber.put(chunk):
                log.info("live subscriber fell behind; asking it to resync")
                self.remove(subscriber)
        return len(reached)

    def _group(self, entries: list[StreamEntry]) -> list[StreamGroup]:
        """Encode the entries of watched streams once, grouped by stream in read order."""
        groups: dict[str, StreamGroup] = {}
        for entry in entries:
            stream, entry_id, _ = entry
            if stream not in self.topics:
                continue
            group = groups.get(stream)
            if group is None:
                group = groups[stream] = StreamGroup(stream, [], [], [])
            key = id_key(entry_id)
            frame = encode_entry(entry)
            group.ids.append(entry_id)
            group.keys.append(key)
            group.frames.append(frame)
            tail = self.tails.get(stream)
            if tail is not None and (not tail.entries or key > tail.entries[-1][0]):
                tail.append(key, entry_id, frame)
        for group in groups.values():
            if group.keys[-1] > id_key(self.positions.get(group.stream, "0-0")):
                self.positions[group.stream] = group.ids[-1]
        return list(groups.values())

    @staticmethod
    def _chunk_for(subscriber: Subscriber, groups: list[StreamGroup]) -> Chunk:
        """Join the frames in ``groups`` that ``subscriber`` watches and lacks into its chunk."""
        frames: list[bytes] = []
        for group in groups:
            if group.stream in subscriber.cursor_keys:
                frames += subscriber.take(group)
        return Chunk(len(frames), b"".join(frames))


def _queue_backlog(
    subscriber: Subscriber, stream: str, backlog: list[tuple[tuple[int, int], str, bytes]]
) -> None:
    """Queue the entries a new watch of ``stream`` catches up on, oldest first.

    Raises ``ResyncNeeded`` when they do not fit in the subscriber's queue.
    """
    for key, entry_id, frame in backlog:
        if not subscriber.offer(stream, entry_id, frame, key):
            raise ResyncNeeded("too many entries to catch up")


def shared_chunk(frame_count: int, body: bytes) -> Chunk:
    """Build a chunk that many sockets send as it is, with its ``batch`` message."""
    chunk = Chunk(frame_count, body, RUN_CREATED in body)
    return chunk._replace(message=batch_frame([chunk]))


def batch_frame(chunks: list[Chunk]) -> bytes:
    """Join chunks into one ``batch`` message, or return a lone frame as it is.

    The frames are msgpack already, so they are concatenated behind an array
    header instead of being decoded and encoded again.
    """
    if len(chunks) == 1 and chunks[0].message is not None:
        return chunks[0].message
    count = sum(chunk.frame_count for chunk in chunks)
    if count == 1:
        return next(chunk.body for chunk in chunks if chunk.frame_count)
    header: bytes = msgpack.Packer().pack_array_header(count)
    return _BATCH_HEAD + header + b"".join(chunk.body for chunk in chunks)


def chunk_messages(chunk: Chunk) -> list[dict[str, Any]]:
    """Decode the messages of ``chunk``."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True)
    unpacker.feed(chunk.body)
    return list(unpacker)


def encode_entry(entry: StreamEntry) -> bytes:
    """Encode one stream entry as the frame browsers receive (see ``docs/live.md``)."""
    stream, entry_id, fields = entry
    if "body" in fields:
        body = msgpack.unpackb(fields["body"], raw=False)
        message: dict[str, Any] = {
            "type": "points",
            "stream": stream,
            "id": entry_id,
            "run_id": stream.rsplit(":", 1)[1],
            "metrics": points(body),
        }
    else:
        message = {
            "type": "event",
            "stream": stream,
            "id": entry_id,
            "run_id": _text(fields["run_id"]),
            "event": _text(fields["type"]),
            "data": msgpack.unpackb(fields["data"], raw=False),
            "time": float(fields["time"]),
        }
    return protocol.pack(message)


def points(body: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Per metric, its steps, times and values from a batch body."""
    steps = np.frombuffer(body["steps"], "<i8")
    times = np.frombuffer(body["times"], "<f8")
    result: dict[str, dict[str, list[Any]]] = {}
    for key, column in body["metrics"].items():
        payloads = np.frombuffer(column["values"], "<f8")
        rows = (
            np.arange(len(steps))
            if column["rows"] is None
            else np.frombuffer(column["rows"], "<u4").astype(np.int64)
        )
        values: list[Any] = payloads.tolist()
        if column["kinds"] is not None:
            kinds = np.frombuffer(column["kinds"], "u1").tolist()
            values = [protocol.decode_value(v, k) for v, k in zip(values, kinds, strict=True)]
        result[key] = {
            "steps": steps[rows].tolist(),
            "times": times[rows].tolist(),
            "values": values,
        }
    return result


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
