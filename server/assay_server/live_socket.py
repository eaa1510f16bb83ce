"""The browser's live websocket, ``/api/v1/projects/{project}/live``; see ``docs/live.md``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from assay import protocol
from assay.protocol import ProtocolError
from assay_server import access, logs, metrics, runs, schema
from assay_server.api import context, error_response
from assay_server.bus import BUS_ERRORS
from assay_server.errors import AssayError, NotFound
from assay_server.ingest import CLOSE_ABNORMAL
from assay_server.live import (
    RUN_CREATED,
    STREAMS_LOST,
    Chunk,
    LiveHub,
    ResyncNeeded,
    Subscriber,
    batch_frame,
    chunk_messages,
)
from assay_server.membership_socket import MembershipWatch
from assay_server.rechecks import credential_key, recheck_pauses
from assay_server.reports.follow import ReportFollow
from assay_server.reports.socket import RECHECK_INTERVAL, close_reason
from assay_server.revocations import CLOSE_ACCESS_LOST, LINK_ENDED
from assay_server.socket_limits import socket_owner

log = logging.getLogger(__name__)

#: A stream entry id as Redis writes it: milliseconds, a dash, a sequence number.
ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
MAX_ENTRY_PART = 2**64 - 1

#: Close code when the database or the bus is unreachable; the client reconnects.
CLOSE_UNAVAILABLE = 1011
#: The close code of a close frame without a code, and uvicorn's for a lost connection.
CLOSE_NO_STATUS = 1005
#: The messages a browser may send; each one checks the credentials again.
MESSAGE_TYPES = ("subscribe", "watch", "follow")
#: Longer than any report id the server hands out.
MAX_REPORT_ID_LENGTH = 64


class LiveConnection:
    def __init__(
        self,
        websocket: WebSocket,
        hub: LiveHub,
        project_id: int,
        scope: access.ReportScope | None = None,
        share: access.ShareGrant | None = None,
        project: str = "",
    ) -> None:
        self.websocket = websocket
        self.hub = hub
        self.project_id = project_id
        self.project = project
        #: For a share link: its report's run sets, which narrow what the socket may watch.
        self.scope = scope
        self.share = share
        self.closer: asyncio.Task[None] | None = None
        self.subscriber = Subscriber(hub.queue_limit, hub.queue_bytes)
        self.id = logs.connection_id()
        self.events = hub.bus.event_stream(project_id)
        self.watched: set[str] = set()
        # Control messages and stream entries come from two tasks; one send at a time.
        self.send_lock = asyncio.Lock()
        self.membership: MembershipWatch | None = None
        self.follow: ReportFollow | None = None

    async def serve(self) -> None:
        await self.websocket.accept()
        log.info("live connection %s opened for project %s", self.id, self.project_id)
        metrics.SOCKETS.labels("live").inc()
        sender = asyncio.create_task(self._send_forever())
        forget, expiry = self._end_with_share()
        # A share link's socket closes when the link ends, so only other
        # sockets check their access again.
        recheck = None if self.share else asyncio.create_task(self._recheck_forever())
        # The code of the disconnect the handler received, if one came.
        close_code: int | None = None
        try:
            while True:
                await self._next_message()
        except WebSocketDisconnect as exc:
            close_code = exc.code
        except RuntimeError:
            pass
        except (*BUS_ERRORS, SQLAlchemyError):
            log.exception("live connection %s failed to subscribe", self.id)
            await self._close(CLOSE_UNAVAILABLE, "live streams unavailable; reconnect later")
        finally:
            forget()
            if expiry is not None:
                expiry.cancel()
            if recheck is not None:
                recheck.cancel()
            self.hub.remove(self.subscriber)
            if self.membership is not None:
                await self.membership.close()
            if self.follow is not None:
                await self.follow.stop()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            metrics.SOCKETS.labels("live").dec()
            log_closed(self.id, close_code)

    async def _next_message(self) -> None:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        frame = message.get("bytes")
        if frame is None:
            await self._send(
                {
                    "type": "error",
                    "code": "malformed",
                    "message": "frames must be binary msgpack, not text",
                }
            )
            return
        await self._handle(frame)

    async def _handle(self, frame: bytes) -> None:
        try:
            message = protocol.unpack(frame)
        except ProtocolError as exc:
            await self._send({"type": "error", "code": exc.code, "message": exc.message})
            return
        if message["type"] in MESSAGE_TYPES and not await self._still_allowed():
            return
        if message["type"] == "watch":
            await self._watch_runsets(message)
            return
        if message["type"] == "follow":
            await self._follow(message)
            return
        if message["type"] != "subscribe":
            await self._send(
                {
                    "type": "error",
                    "code": "unknown_type",
                    "message": f"unknown message type {message['type']!r}; "
                    "expected subscribe, watch or follow",
                }
            )
            return
        cursors = message.get("cursors") or {}
        if not isinstance(cursors, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in cursors.items()
        ):
            await self._send(
                {
                    "type": "error",
                    "code": "invalid_subscribe",
                    "message": "subscribe 'cursors' must map stream names to entry ids",
                }
            )
            return
        bad = next((c for c in cursors.items() if not is_entry_id(c[1])), None)
        if bad is not None:
            await self._send(
                {
                    "type": "error",
                    "code": "invalid_subscribe",
                    "message": f"cursor {bad[1]!r:.60} of stream {bad[0]!r:.100} is not an "
                    "entry id such as '1764855600000-0'; send the 'id' of the last entry "
                    "received from that stream",
                }
            )
            return
        await self._subscribe(cursors)

    def _end_with_share(self) -> tuple[Callable[[], None], asyncio.TimerHandle | None]:
        """Arrange to close the socket when its share link is revoked or expires.

        Return the function that cancels the revocation hook, and the expiry timer.
        """
        if self.share is None:
            return (lambda: None), None

        def close() -> None:
            self.closer = asyncio.create_task(self._close(CLOSE_ACCESS_LOST, LINK_ENDED))

        revocations = self.websocket.app.state.revocations
        forget: Callable[[], None] = revocations.register(self.share.share_id, close)
        expiry = None
        if self.share.expires_at is not None:
            delay = max(0.0, self.share.expires_at - time.time())
            expiry = asyncio.get_running_loop().call_later(delay, close)
        return forget, expiry

    async def _recheck_forever(self) -> None:
        """Close the socket once its credentials no longer open the project, checking often.

        This covers a member removed from the project, a project made private,
        a revoked API key and a session that ended, on a socket that sends nothing.
        """
        for pause in recheck_pauses(RECHECK_INTERVAL):
            await asyncio.sleep(pause)
            try:
                if not await self._still_allowed(shared=True):
                    return
            except (SQLAlchemyError, OSError):
                log.exception("live connection %s: checking access failed", self.id)

    async def _still_allowed(self, shared: bool = False) -> bool:
        """Check the credentials again, so a removed member or revoked link loses the socket.

        A share link's report may have changed too, so its scope is read again.
        With ``shared``, as in the periodic recheck, the outcome of a check made
        for another socket with the same credentials within a second is used.
        """
        check = partial(access.project_access, self.websocket, allow_share=True)
        try:
            if shared:
                key = credential_key(self.websocket, f"project\0{self.websocket.url.path}")
                granted = await self.websocket.app.state.rechecks.run(key, check)
            else:
                granted = await check()
        except AssayError as exc:
            log.info("live connection %s lost its access: %s", self.id, exc.message)
            await self._close(CLOSE_ACCESS_LOST, close_reason(exc.message))
            return False
        self.scope = granted.scope
        return True

    async def _watch_runsets(self, message: dict[str, Any]) -> None:
        runsets = message.get("runsets")
        if self.scope is not None and isinstance(runsets, dict):
            outside = [text for text in runsets.values() if not self.scope.allows_filter(text)]
            if outside:
                await self._send(
                    {
                        "type": "error",
                        "code": "outside_report",
                        "message": "this share link watches only its report's run sets; "
                        f"no run set of the report has the filter {outside[0]!r:.200}",
                    }
                )
                return
        if self.membership is None:
            app_state = self.websocket.app.state
            self.membership = MembershipWatch(
                app_state.membership,
                self.project_id,
                self._send,
                self.id,
                app_state.context.settings.max_filter_length,
            )
        await self.membership.handle(message)

    async def _follow(self, message: dict[str, Any]) -> None:
        report_id = message.get("report")
        if report_id is not None and not (
            isinstance(report_id, str) and 0 < len(report_id) <= MAX_REPORT_ID_LENGTH
        ):
            await self._send(
                {
                    "type": "error",
                    "code": "invalid_follow",
                    "message": f"follow 'report' must be a report id of 1 to "
                    f"{MAX_REPORT_ID_LENGTH} characters, or null to stop following; "
                    f"got {report_id!r:.80}",
                }
            )
            return
        if self.follow is None:
            app_state = self.websocket.app.state
            self.follow = ReportFollow(
                app_state.membership,
                app_state.reports,
                context(self.websocket).db,
                self.project_id,
                self.project,
                self._send,
                self.id,
                context(self.websocket).settings.max_filter_length,
                scoped=self.scope is not None,
            )
        if report_id is None:
            await self.follow.stop()
            return
        if self.scope is not None and report_id != self.scope.report_id:
            await self._send(
                {
                    "type": "error",
                    "code": "outside_report",
                    "message": f"this share link follows only its own report, not {report_id!r}",
                }
            )
            return
        try:
            await self.follow.start(report_id)
        except NotFound as exc:
            log.info("live connection %s cannot follow report %r: %s", self.id, report_id, exc)
            await self._send({"type": "error", "code": exc.code, "message": exc.message})

    async def _subscribe(self, cursors: dict[str, str]) -> None:
        self.hub.remove(self.subscriber)
        self.subscriber.reset()
        self.watched.clear()
        # A share link gets no project events: they would name runs outside its report.
        events = [] if self.scope is not None else [self.events]
        streams = events + [
            self.hub.bus.live_stream(self.project_id, run_id) for run_id in await self._run_ids()
        ]
        starts: dict[str, str] = {}
        try:
            for stream in streams:
                start = await self._watch(stream, cursors.get(stream))
                if stream not in cursors:
                    starts[stream] = start
        except ResyncNeeded as exc:
            await self._resync(str(exc))
            return
        await self._send(
            {"type": "subscribed", "events": events[0] if events else None, "cursors": starts}
        )

    async def _watch(self, stream: str, after: str | None, announce: bool = False) -> str:
        self.watched.add(stream)
        return await self.hub.add(self.subscriber, stream, after, announce)

    async def _run_ids(self) -> list[str]:
        if self.scope is not None:
            return await self._scope_run_ids(self.scope)
        async with context(self.websocket).db.reading() as connection:
            rows = await connection.execute(
                select(schema.runs.c.run_id).where(schema.runs.c.project_id == self.project_id)
            )
            return [row.run_id for row in rows]

    async def _scope_run_ids(self, scope: access.ReportScope) -> list[str]:
        """Return the ids of the runs that the share link's run sets select now."""
        limit = context(self.websocket).settings.max_filter_length
        async with context(self.websocket).db.reading() as connection:
            found = await runs.scope_run_ids(connection, self.project_id, scope.filters, limit)
        return sorted(found)

    async def _send_forever(self) -> None:
        try:
            await self._send_frames()
        except (WebSocketDisconnect, RuntimeError):
            # The client went away during a send (starlette raises RuntimeError
            # once the socket is closed). serve() sees the disconnect and cleans up.
            log.debug("live connection %s closed during a send", self.id)

    async def _send_frames(self) -> None:
        while True:
            chunks = await self.subscriber.next_chunks()
            if chunks is None:
                self.hub.remove(self.subscriber)
                await self._resync(self.subscriber.resync_reason)
                continue
            async with self.send_lock:
                await self.websocket.send_bytes(batch_frame(chunks))
            for chunk in chunks:
                await self._follow_new_runs(chunk)

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self.websocket.close(code, reason)

    async def _follow_new_runs(self, chunk: Chunk) -> None:
        # A run created after the subscription gets its live stream watched
        # from its first entry.
        if not chunk.creates_runs or RUN_CREATED not in chunk.body:
            return
        streams = []
        for message in chunk_messages(chunk):
            if message["type"] == "event" and message["event"] == "run.created":
                stream = self.hub.bus.live_stream(self.project_id, message["run_id"])
                if stream not in self.watched and stream not in streams:
                    streams.append(stream)
        if not streams:
            return
        self.watched.update(streams)
        try:
            await self.hub.add_many(self.subscriber, streams, "0-0", announce=True)
        except ResyncNeeded as exc:
            await self._resync(str(exc))
        except BUS_ERRORS:
            log.exception("live connection %s failed to follow %s", self.id, ", ".join(streams))
            self.hub.remove(self.subscriber)
            await self._resync(STREAMS_LOST)

    async def _resync(self, reason: str) -> None:
        self.subscriber.reset()
        self.watched.clear()
        await self._send({"type": "resync", "reason": reason})

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "error":
            metrics.ERRORS.labels(message["code"]).inc()
        async with self.send_lock:
            await self.websocket.send_bytes(protocol.pack(message))


def is_entry_id(value: str) -> bool:
    if value == "0":
        return True
    if not ENTRY_ID.match(value):
        return False
    return all(int(part) <= MAX_ENTRY_PART for part in value.split("-"))


async def live(websocket: WebSocket) -> None:
    limits = websocket.app.state.sockets
    try:
        granted = await access.project_access(websocket, allow_share=True)
        share_id = None if granted.share is None else granted.share.share_id
        owner = socket_owner(websocket, granted.user, share_id)
        limits.acquire(owner)
    except AssayError as exc:
        await websocket.send_denial_response(error_response(websocket, exc))
        return
    hub = websocket.app.state.hub
    connection = LiveConnection(
        websocket, hub, granted.project_id, granted.scope, granted.share, granted.project
    )
    try:
        await connection.serve()
    finally:
        limits.release(owner)


routes = [WebSocketRoute("/api/v1/projects/{project}/live", live)]


def log_closed(connection_id: str, code: int | None) -> None:
    """Log the end of a live connection with the close code its handler received."""
    if code in (CLOSE_NO_STATUS, CLOSE_ABNORMAL):
        # uvicorn 0.55 reports a connection lost without a close frame as 1005,
        # also when it closed the socket itself after an unanswered keepalive
        # ping, which it does not log.
        log.info(
            "live connection %s closed with no close code (%s): the connection dropped, "
            "the client sent none, or it missed the keepalive ping",
            connection_id,
            code,
        )
    elif code is None:
        log.info("live connection %s closed", connection_id)
    else:
        log.info("live connection %s closed with code %s", connection_id, code)
