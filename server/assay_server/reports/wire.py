"""The y-websocket wire protocol: one binary websocket frame is one message.

A message starts with a varUint type: 0 sync, 1 awareness, 2 auth and
3 queryAwareness. A sync message follows with a varUint sub-type (0 step 1,
1 step 2, 2 update) and a length-prefixed payload. ``docs/reports.md`` lists
the bytes.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pycrdt import merge_updates, write_var_uint

SYNC = 0
AWARENESS = 1
AUTH = 2
QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

PERMISSION_DENIED = 0
EMPTY_UPDATE = b"\x00\x00"
#: The first bytes of every update message: a sync message of type update.
UPDATE_PREFIX = bytes([SYNC, SYNC_UPDATE])


class WireError(ValueError):
    """A frame that is not a well-formed y-websocket message."""


#: The largest varUint lib0 writes: JavaScript integers are exact up to 2**53.
MAX_VAR_UINT = 2**53


class Reader:
    """A cursor over a frame that reads lib0 varUints and byte strings."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def read_uint(self, what: str) -> int:
        value = 0
        shift = 0
        while True:
            if self.position >= len(self.data):
                raise WireError(f"truncated message: no {what}")
            byte = self.data[self.position]
            self.position += 1
            value |= (byte & 0x7F) << shift
            if value > MAX_VAR_UINT:
                raise WireError(f"invalid {what}: larger than 2**53")
            if byte < 0x80:
                return value
            shift += 7

    def rest(self) -> int:
        return len(self.data) - self.position


@dataclass(frozen=True)
class Message:
    """A decoded frame: its type, its sync sub-type (sync only) and its payload."""

    type: int
    sync_type: int | None
    payload: bytes


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # the JSON text, kept as it arrived; "null" means the client left


def decode(frame: bytes) -> Message:
    """Decode a frame, or raise ``WireError`` naming what is wrong with it."""
    if not frame:
        raise WireError("empty message")
    decoder = Reader(frame)
    kind = decoder.read_uint("message type")
    if kind == SYNC:
        sync_type = decoder.read_uint("sync message type")
        if sync_type not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
            raise WireError(f"unknown sync message type {sync_type}; expected 0, 1 or 2")
        return Message(kind, sync_type, read_payload(decoder))
    if kind == AWARENESS:
        return Message(kind, None, read_payload(decoder))
    if kind == QUERY_AWARENESS:
        if decoder.rest():
            raise WireError(f"query awareness message has {decoder.rest()} bytes after its type")
        return Message(kind, None, b"")
    if kind == AUTH:
        raise WireError("auth messages go from the server to clients only")
    raise WireError(f"unknown message type {kind}; expected 0, 1, 2 or 3")


def read_payload(decoder: Reader) -> bytes:
    length = decoder.read_uint("payload length")
    if length != decoder.rest():
        raise WireError(
            f"payload length {length} does not match the {decoder.rest()} bytes that follow"
        )
    return decoder.data[decoder.position :]


def decode_awareness(payload: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update: a count, then client id, clock and JSON state each."""
    decoder = Reader(payload)
    count = decoder.read_uint("awareness entry count")
    entries = []
    for _ in range(count):
        client_id = decoder.read_uint("awareness client id")
        clock = decoder.read_uint("awareness clock")
        entries.append(AwarenessEntry(client_id, clock, read_state(decoder)))
    if decoder.rest():
        raise WireError("awareness update has bytes after its last entry")
    return entries


def read_state(decoder: Reader) -> str:
    length = decoder.read_uint("awareness state length")
    if length > decoder.rest():
        raise WireError("truncated message: an awareness state runs past the end")
    start = decoder.position
    decoder.position += length
    try:
        text = decoder.data[start : decoder.position].decode()
        json.loads(text)
    except ValueError:
        raise WireError("awareness state is not valid UTF-8 JSON") from None
    return text


def clients_without_clocks(state: bytes) -> list[int]:
    """Return the clients that an encoded state vector gives clock 0.

    A client's clock counts the structs integrated from it, so clock 0 marks a
    client known only through a gap. pycrdt 0.14 integrates an update that
    starts past clock 0 of a client it has never seen, where Yjs keeps such an
    update pending.
    """
    # A zero byte ends a varUint only when the whole value is 0, so a state
    # vector without one has no clock 0, no client 0 and is not empty. The
    # scan for that byte runs in C, far faster than decoding the vector here.
    if b"\x00" not in state:
        return []
    decoder = Reader(state)
    found = []
    for _ in range(decoder.read_uint("state vector length")):
        client = decoder.read_uint("client id")
        if decoder.read_uint("clock") == 0:
            found.append(client)
    return found


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    """Encode entries as a complete awareness message (type 1)."""
    payload = bytearray(write_var_uint(len(entries)))
    for entry in entries:
        state = entry.state.encode()
        payload += write_var_uint(entry.client_id) + write_var_uint(entry.clock)
        payload += write_var_uint(len(state)) + state
    return frame(AWARENESS, bytes(payload))


def sync_message(sync_type: int, payload: bytes) -> bytes:
    return bytes([SYNC]) + write_var_uint(sync_type) + write_var_uint(len(payload)) + payload


def update_message(update: bytes) -> bytes:
    return sync_message(SYNC_UPDATE, update)


def merge_update_messages(frames: list[bytes]) -> list[bytes]:
    """Merge each run of consecutive update messages in ``frames`` into one.

    Other messages keep their place between the runs, and a run of one
    update message is returned as it is. A y-websocket client reads one
    message per websocket frame, so a peer that fell behind by several
    updates gets them as one merged update and one frame, which costs the
    server one send instead of several. The frames must be well-formed, as
    the server's own are: update payloads are sliced out without checks.
    """
    merged: list[bytes] = []
    run: list[bytes] = []
    for message in frames:
        if message.startswith(UPDATE_PREFIX):
            run.append(message)
            continue
        if run:
            merged.append(_merged_run(run))
            run = []
        merged.append(message)
    if run:
        merged.append(_merged_run(run))
    return merged


#: Merged runs kept by ``_merged_run``, keyed by the run's messages.
_MERGED_RUNS: OrderedDict[tuple[bytes, ...], bytes] = OrderedDict()
#: The maximum number of runs ``_merged_run`` keeps.
MAX_MERGED_RUNS = 16
#: The largest run, in bytes of messages, that ``_merged_run`` keeps. With its
#: merge, a kept run takes about twice that, so the cache stays near 2 MiB.
MAX_MERGED_RUN_BYTES = 64 * 1024


def _merged_run(run: list[bytes]) -> bytes:
    """Return one update message with the updates of ``run``, reusing a recent merge of it.

    A room queues the same frame objects for every peer, so peers that fell
    behind together usually hold the same run. Keeping the last few results
    lets them share one merge. Hashing a run is cheap, because ``bytes``
    caches its hash.
    """
    if len(run) == 1:
        return run[0]
    key = tuple(run)
    merged = _MERGED_RUNS.get(key)
    if merged is not None:
        return merged
    merged = update_message(merge_updates(*(update_payload(message) for message in run)))
    if sum(len(message) for message in run) <= MAX_MERGED_RUN_BYTES:
        if len(_MERGED_RUNS) >= MAX_MERGED_RUNS:
            # popitem is one call under the GIL, so servers that run event
            # loops in several threads of one process (as tests do) can share
            # the cache. The oldest run may already be gone from another thread.
            with contextlib.suppress(KeyError):
                _MERGED_RUNS.popitem(last=False)
        _MERGED_RUNS[key] = merged
    return merged


def update_payload(message: bytes) -> bytes:
    """Return the update in a well-formed update message, skipping its length prefix."""
    # The prefix is two bytes, then the length: varUint bytes below 0x80 end it.
    end = len(UPDATE_PREFIX)
    while message[end] & 0x80:
        end += 1
    return message[end + 1 :]


def frame(kind: int, payload: bytes) -> bytes:
    return write_var_uint(kind) + write_var_uint(len(payload)) + payload


def permission_denied(reason: str) -> bytes:
    """Encode an auth message that y-websocket clients log as "Permission denied"."""
    text = reason.encode()
    return bytes([AUTH, PERMISSION_DENIED]) + write_var_uint(len(text)) + text


#: An awareness update with no entries: it changes nothing, but it resets a
#: y-websocket client's 30 s timer that closes a silent socket.
KEEPALIVE = frame(AWARENESS, write_var_uint(0))


def is_null_state(entry: AwarenessEntry) -> bool:
    return entry.state == "null"


def state_json(state: Any) -> str:
    return json.dumps(state, separators=(",", ":"))
