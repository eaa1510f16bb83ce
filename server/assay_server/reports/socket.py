"""The websocket ``/yjs/reports/{report_id}``: a y-websocket endpoint for one report."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from functools import partial

from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from assay_server import access, logs, metrics
from assay_server.api import context, error_response
from assay_server.errors import AssayError
from assay_server.rechecks import credential_key, recheck_pauses
from assay_server.reports import wire
from assay_server.reports.room import RejectedUpdate, Room
from assay_server.reports.rooms import ReportRooms
from assay_server.revocations import CLOSE_ACCESS_LOST, LINK_ENDED
from assay_server.socket_limits import socket_owner

log = logging.getLogger(__name__)

#: Frames queued for one socket; a client that falls this far behind is closed.
MAX_QUEUED_FRAMES = 10_000
#: Queued frames a sender takes at once, merging the consecutive updates among them.
MAX_FRAMES_PER_WAKE = 64
#: The close code for a client that reads too slowly (1013, "try again later").
TOO_SLOW = 1013
#: Seconds between database checks that a socket's credentials still open the report.
RECHECK_INTERVAL = 5.0
#: A close reason is at most 123 bytes of UTF-8; longer messages are cut.
MAX_REASON_BYTES = 123


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


class SocketPeer:
    """A websocket as a room peer: frames are queued and sent by a task of its own."""

    def __init__(self, websocket: WebSocket, granted: access.ReportAccess) -> None:
        self.websocket = websocket
        if granted.user is not None:
            self.user_name = granted.user.name
        elif granted.share is not None:
            self.user_name = f"share link {granted.share.share_id}"
        else:
            self.user_name = "anonymous"
        self.read_only = not granted.can_edit
        self.id = logs.connection_id()
        # A deque and one future per wait cost less per frame than an
        # asyncio.Queue, and a room queues each update for every peer.
        self.frames: collections.deque[bytes] = collections.deque()
        #: The close that ``close`` requested, sent once ``frames`` is empty.
        self.close_request: Close | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.closing = False

    def send(self, frame: bytes) -> None:
        if self.closing:
            return
        if len(self.frames) >= MAX_QUEUED_FRAMES:
            self.close(TOO_SLOW, "the connection fell behind; reconnect")
            return
        self.frames.append(frame)
        self._wake()

    def close(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.close_request = Close(code, reason)
            self._wake()

    def _wake(self) -> None:
        wakeup = self._wakeup
        # A cancelled sender leaves its future cancelled, and so done.
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def send_forever(self) -> None:
        loop = asyncio.get_running_loop()
        frames = self.frames
        send_bytes = self.websocket.send_bytes
        while True:
            while not frames and self.close_request is None:
                self._wakeup = loop.create_future()
                await self._wakeup
            if len(frames) == 1:
                # The usual case under load: one frame per wake, nothing to merge.
                await send_bytes(frames.popleft())
            elif frames:
                count = min(len(frames), MAX_FRAMES_PER_WAKE)
                batch = [frames.popleft() for _ in range(count)]
                for frame in wire.merge_update_messages(batch):
                    await send_bytes(frame)
            # ``send`` queues nothing after ``close``, so every frame queued
            # before the close is sent first.
            if not frames and self.close_request is not None:
                await self.websocket.close(self.close_request.code, self.close_request.reason)
                return


async def serve(websocket: WebSocket, room: Room, peer: SocketPeer) -> None:
    """Feed the socket's frames to ``room`` until the client leaves or is closed."""
    sender = asyncio.create_task(peer.send_forever())
    room.join(peer)
    try:
        while not sender.done():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            frame = message.get("bytes")
            if frame is None:
                metrics.ERRORS.labels("malformed").inc()
                peer.close(1003, "report sockets take binary y-websocket messages only")
                break
            receive(room, peer, frame)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        room.leave(peer)
        # Only a close by the server leaves frames worth sending. After the
        # client left, the sender would wait for a frame that never comes.
        if peer.closing:
            with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                async with asyncio.timeout(5):
                    await sender
        sender.cancel()


def receive(room: Room, peer: SocketPeer, frame: bytes) -> None:
    try:
        room.receive(peer, frame)
    except RejectedUpdate as exc:
        log.info("report %s connection %s: %s", room.report_id, peer.id, exc)
        metrics.ERRORS.labels("rejected_update").inc()
        peer.send(wire.permission_denied(str(exc)))
    except Exception:
        log.exception(
            "report %s connection %s: handling a message failed", room.report_id, peer.id
        )
        metrics.ERRORS.labels("internal").inc()
        peer.send(wire.permission_denied("internal server error; see the server log"))


async def recheck_share(websocket: WebSocket, peer: SocketPeer, share_id: str) -> None:
    """Close ``peer`` once its share link is revoked or expired, checking every few seconds.

    This covers a revocation whose Redis message this instance missed.
    """
    for pause in recheck_pauses(RECHECK_INTERVAL):
        await asyncio.sleep(pause)
        try:
            live = await websocket.app.state.rechecks.run(
                b"share\0" + share_id.encode(), partial(share_is_live, websocket, share_id)
            )
        except (SQLAlchemyError, OSError):
            log.exception("connection %s: checking share link %s failed", peer.id, share_id)
            continue
        if not live:
            log.info("connection %s: share link %s no longer valid; closing", peer.id, share_id)
            peer.close(CLOSE_ACCESS_LOST, LINK_ENDED)
            return


async def share_is_live(websocket: WebSocket, share_id: str) -> bool:
    """Read whether the share link ``share_id`` is neither revoked nor expired."""
    async with context(websocket).db.reading() as connection:
        return await access.share_is_live(connection, share_id)


async def recheck_member(
    websocket: WebSocket, peer: SocketPeer, granted: access.ReportAccess
) -> None:
    """Close ``peer`` once its credentials lose the access they opened it with.

    Checked every few seconds, this covers a member removed from the project
    or given a role that cannot edit, a project made private, a revoked API
    key and a session that ended. The client may reconnect with what is left.
    """
    for pause in recheck_pauses(RECHECK_INTERVAL):
        await asyncio.sleep(pause)
        try:
            key = credential_key(websocket, f"report\0{granted.report_id}")
            current = await websocket.app.state.rechecks.run(
                key, partial(access.report_access, websocket, granted.report_id)
            )
        except AssayError as exc:
            log.info(
                "report %s connection %s: %s; closing", granted.report_id, peer.id, exc.message
            )
            peer.close(CLOSE_ACCESS_LOST, close_reason(exc.message))
            return
        except (SQLAlchemyError, OSError):
            log.exception(
                "report %s connection %s: checking access failed", granted.report_id, peer.id
            )
            continue
        if granted.can_edit and not current.can_edit:
            log.info(
                "report %s connection %s: may no longer edit; closing", granted.report_id, peer.id
            )
            peer.close(
                CLOSE_ACCESS_LOST, "this connection may no longer edit the report; reconnect"
            )
            return


def close_reason(message: str) -> str:
    """Return ``message`` cut to fit a websocket close frame."""
    return message.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def close_at_expiry(peer: SocketPeer, granted: access.ReportAccess) -> asyncio.TimerHandle | None:
    """Schedule closing a share link's socket when the link expires; None for no expiry."""
    if granted.share is None or granted.share.expires_at is None:
        return None
    loop = asyncio.get_running_loop()
    delay = max(0.0, granted.share.expires_at - time.time())
    return loop.call_later(delay, peer.close, CLOSE_ACCESS_LOST, LINK_ENDED)


async def report_socket(websocket: WebSocket) -> None:
    report_id = websocket.path_params["report_id"]
    rooms: ReportRooms = websocket.app.state.reports
    limits = websocket.app.state.sockets
    try:
        granted = await access.report_access(websocket, report_id)
        share_id = None if granted.share is None else granted.share.share_id
        owner = socket_owner(websocket, granted.user, share_id)
        limits.acquire(owner)
    except AssayError as exc:
        # Rejecting the handshake, rather than accepting and closing, keeps
        # y-websocket from reconnecting at once in a loop.
        await websocket.send_denial_response(error_response(websocket, exc))
        return
    try:
        await serve_report(websocket, rooms, granted)
    finally:
        limits.release(owner)


async def serve_report(
    websocket: WebSocket, rooms: ReportRooms, granted: access.ReportAccess
) -> None:
    """Accept the socket and serve it in the report's room until it closes."""
    report_id = granted.report_id
    async with rooms.use(report_id) as room:
        await websocket.accept()
        peer = SocketPeer(websocket, granted)
        log.info(
            "report %s connection %s opened by %s%s",
            report_id,
            peer.id,
            peer.user_name,
            "" if granted.can_edit else " (view only)",
        )
        metrics.SOCKETS.labels("report").inc()
        expiry = close_at_expiry(peer, granted)
        forget = None
        recheck = None
        if granted.share is not None:
            forget = websocket.app.state.revocations.register(
                granted.share.share_id, lambda: peer.close(CLOSE_ACCESS_LOST, LINK_ENDED)
            )
            recheck = asyncio.create_task(recheck_share(websocket, peer, granted.share.share_id))
        elif granted.user is not None or granted.role is not None:
            recheck = asyncio.create_task(recheck_member(websocket, peer, granted))
        try:
            await serve(websocket, room, peer)
        finally:
            if expiry is not None:
                expiry.cancel()
            if forget is not None:
                forget()
            if recheck is not None:
                recheck.cancel()
            metrics.SOCKETS.labels("report").dec()
            log.info("report %s connection %s closed", report_id, peer.id)


routes = [WebSocketRoute("/yjs/reports/{report_id}", report_socket)]
