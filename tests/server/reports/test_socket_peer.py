"""The socket peer's send queue, driven with a websocket that records what is sent."""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import Doc, Text

from assay_server.access import ReportAccess
from assay_server.reports import socket, wire


class RecordingWebSocket:
    """The two calls ``SocketPeer`` makes on a starlette websocket, recorded in order."""

    def __init__(self) -> None:
        self.sent: list[bytes | tuple[int, str]] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.sent.append((code, reason))


def editor_peer() -> tuple[socket.SocketPeer, RecordingWebSocket]:
    websocket = RecordingWebSocket()
    granted = ReportAccess("r", 1, can_edit=True, user=None, share=None, role=None)
    return socket.SocketPeer(websocket, granted), websocket  # type: ignore[arg-type]


def title_update(title: str) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("title", type=Text).insert(0, title)
    return doc.get_update()


async def test_frames_before_close_sent_first() -> None:
    peer, websocket = editor_peer()
    awareness = [wire.encode_awareness([wire.AwarenessEntry(7, n, "{}")]) for n in range(100)]
    for frame in awareness:
        peer.send(frame)
    peer.close(4403, "link ended")
    peer.send(wire.KEEPALIVE)

    await asyncio.wait_for(peer.send_forever(), 5)

    # More frames than one wake takes, then the close, and nothing queued after it.
    assert websocket.sent == [*awareness, (4403, "link ended")]


async def test_sender_waits_for_frames() -> None:
    peer, websocket = editor_peer()
    sender = asyncio.create_task(peer.send_forever())
    await asyncio.sleep(0.01)
    updates = [wire.update_message(title_update(f"t{n}")) for n in range(3)]

    for frame in updates:
        peer.send(frame)
    await asyncio.sleep(0.01)
    sent_before_close = list(websocket.sent)
    peer.close(1000, "done")
    await asyncio.wait_for(sender, 5)

    # The three updates queued in one turn went out as one merged update.
    assert len(sent_before_close) == 1
    assert sent_before_close == wire.merge_update_messages(updates)
    assert websocket.sent[-1] == (1000, "done")


async def test_slow_reader_closed_with_1013() -> None:
    peer, websocket = editor_peer()
    for _ in range(socket.MAX_QUEUED_FRAMES):
        peer.send(wire.KEEPALIVE)

    peer.send(wire.KEEPALIVE)
    peer.send(wire.KEEPALIVE)
    await asyncio.wait_for(peer.send_forever(), 5)

    assert peer.closing
    assert websocket.sent.count(wire.KEEPALIVE) == socket.MAX_QUEUED_FRAMES
    assert websocket.sent[-1] == (socket.TOO_SLOW, "the connection fell behind; reconnect")


async def test_close_after_sender_cancelled() -> None:
    peer, websocket = editor_peer()
    sender = asyncio.create_task(peer.send_forever())
    await asyncio.sleep(0.01)
    sender.cancel()

    # A share link revoked while the connection ends must not raise.
    peer.close(4403, "link ended")
    peer.send(wire.KEEPALIVE)
    await asyncio.gather(sender, return_exceptions=True)

    assert sender.cancelled()
    assert websocket.sent == []
