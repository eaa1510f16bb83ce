"""The ingest websocket: one connection per SDK run, speaking ``assay.protocol``."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from assay import protocol
from assay.protocol import ProtocolError
from assay_server import logs, metrics, runs
from assay_server.auth import User
from assay_server.batch import Batch, decode_batch
from assay_server.batch_store import BatchWrite
from assay_server.bus import event_fields
from assay_server.context import ServerContext
from assay_server.errors import AssayError

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
COMPACT_EVERY = 64
#: A run's ``run.summary`` events go out at most this often, in seconds. The
#: values of the batches in between are merged into the next event, because
#: every event goes to every live socket of the project.
SUMMARY_INTERVAL = 0.25
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TAGS = 100
MAX_TAG_LENGTH = 128
MAX_NOTES_LENGTH = 65_536

# Close codes: 1008 for a protocol violation, 1011 when the server failed.
CLOSE_PROTOCOL = 1008
CLOSE_SERVER_ERROR = 1011
#: The close code for a connection that ended without a close frame from the client.
CLOSE_ABNORMAL = 1006


class IngestConnection:
    """One SDK connection: a ``hello``, then batches, heartbeats and a ``finish``."""

    def __init__(self, websocket: WebSocket, context: ServerContext, user: User) -> None:
        self.websocket = websocket
        self.context = context
        self.user = user
        self.id = logs.connection_id()
        self.run: runs.AttachedRun | None = None
        self.session = 0
        self.metric_ids: dict[str, int] = {}
        self.batches_written = 0
        # A heartbeat is recorded with a batch at most this often: a run is
        # only marked crashed after a whole crash timeout without one.
        self.touch_interval = context.settings.crash_timeout / 8
        self.touched_at = -math.inf
        self.summary_pending: dict[str, Any] = {}
        self.summary_sent_at = -math.inf
        self.summary_later: asyncio.Task[None] | None = None

    async def serve(self) -> None:
        await self.websocket.accept()
        log.info("ingest connection %s opened by user %s", self.id, self.user.name)
        metrics.SOCKETS.labels("ingest").inc()
        try:
            await self._hello()
            while True:
                await self._next_message()
        except WebSocketDisconnect:
            pass
        except ProtocolError as exc:
            await self._fail(exc.code, exc.message, CLOSE_PROTOCOL)
        except AssayError as exc:
            await self._fail(exc.code, exc.message, CLOSE_PROTOCOL)
        except (SQLAlchemyError, OSError):
            log.exception("ingest connection %s of run %s failed", self.id, self._run_label())
            await self._fail(
                "unavailable", "the server could not store data; retry later", CLOSE_SERVER_ERROR
            )
        finally:
            await self._publish_summary(now=True)
            metrics.SOCKETS.labels("ingest").dec()
            log.info("ingest connection %s of run %s closed", self.id, self._run_label())

    async def _next_message(self) -> None:
        """Handle one frame; a bad frame gets an error and the connection goes on."""
        try:
            message = protocol.unpack(await self._receive())
        except ProtocolError as exc:
            await self._send_error(exc.code, exc.message)
            return
        await self._dispatch(message)

    async def _receive(self) -> bytes:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if data is None:
            raise ProtocolError("malformed", "frames must be binary msgpack, not text")
        return data  # type: ignore[no-any-return]

    async def _hello(self) -> None:
        try:
            frame = await asyncio.wait_for(self._receive(), HELLO_TIMEOUT)
        except TimeoutError:
            raise ProtocolError(
                "timeout", f"no hello within {HELLO_TIMEOUT:.0f} seconds of connecting"
            ) from None
        message = protocol.unpack(frame)
        if message["type"] != "hello":
            raise ProtocolError(
                "expected_hello", f"the first message must be 'hello', got {message['type']!r}"
            )
        spec = parse_hello(message)
        self.session = spec.session
        async with self.context.db.transaction() as connection:
            self.run = await runs.attach_run(
                connection, spec, self.user, self.context.db.is_sqlite
            )
        await self._announce_attach(spec)
        await self._send(
            {
                "type": "welcome",
                "protocol": protocol.PROTOCOL_VERSION,
                "run_id": self.run.run_id,
                "created": self.run.created,
                "next_step": self.run.next_step,
                "heartbeat_interval": self.context.settings.heartbeat_interval,
                "max_message_bytes": protocol.MAX_MESSAGE_BYTES,
            }
        )
        log.info(
            "ingest connection %s attached run %s/%s (%s)",
            self.id,
            spec.project,
            spec.run_id,
            "created" if self.run.created else "resumed",
        )

    async def _announce_attach(self, spec: runs.RunSpec) -> None:
        assert self.run is not None
        if self.run.created:
            data = {
                "name": spec.name or spec.run_id,
                "state": runs.RUNNING,
                "config": spec.config,
                "tags": spec.tags,
                "group": spec.group,
            }
            await self._publish_event("run.created", data)
            return
        if self.run.previous_state != self.run.state:
            await self._publish_state(self.run.previous_state)
        if self.run.summary:
            # Summary values wait up to SUMMARY_INTERVAL before they go out, and
            # a server that was killed meanwhile never sent them. The stored
            # summary brings live views up to date when the SDK reconnects.
            await self._publish_event("run.summary", {"summary": self.run.summary})

    async def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "batch":
            await self._batch(message)
        elif kind == "heartbeat":
            await self._heartbeat()
        elif kind == "finish":
            await self._finish(message)
        else:
            await self._send_error(
                "unknown_type",
                f"unknown message type {kind!r}; expected batch, heartbeat or finish",
            )

    async def _batch(self, message: dict[str, Any]) -> None:
        assert self.run is not None
        received = time.perf_counter()
        try:
            batch = decode_batch(message)
        except ProtocolError as exc:
            log.info("batch rejected on connection %s: %s", self.id, exc.message)
            metrics.BATCHES.labels("rejected").inc()
            await self._send_error(exc.code, exc.message, seq=message.get("seq"))
            return
        stored = await self._store(batch)
        # A resent batch is published too: the bus appends it only when no
        # connection did, which happens when a server was killed between
        # commit and publish.
        await self._publish_batch(message, batch)
        if stored:
            metrics.POINTS.inc(batch.point_count)
        metrics.BATCHES.labels("stored" if stored else "duplicate").inc()
        await self._send({"type": "ack", "seq": batch.seq})
        metrics.ACK_SECONDS.observe(time.perf_counter() - received)
        if stored:
            self.batches_written += 1
            if self.batches_written % COMPACT_EVERY == 0:
                self.context.compactor.request(self.run.pk, self.run.run_id)

    async def _store(self, batch: Batch) -> bool:
        assert self.run is not None
        run = self.run
        started = time.monotonic()
        touch = started - self.touched_at >= self.touch_interval
        # The write is plain data, and the connection's state changes only
        # after the commit, because a failed group is written again alone.
        stored = await self.context.writer.write(
            BatchWrite(run.pk, self.session, batch, self.metric_ids, touch)
        )
        if stored is None:
            log.debug("batch %s of run %s was stored before", batch.seq, run.run_id)
            return False
        self.metric_ids = stored.metric_ids
        if touch:
            self.touched_at = started
        if stored.revived:
            await self._publish_state(stored.revived)
        log.debug("stored batch %s of run %s: %s points", batch.seq, run.run_id, batch.point_count)
        return True

    async def _publish_batch(self, message: dict[str, Any], batch: Batch) -> None:
        assert self.run is not None
        body = {key: message.get(key) for key in ("steps", "times", "metrics")}
        fields = {"seq": batch.seq, "session": self.session, "body": protocol.pack(body)}
        try:
            appended = await self.context.bus.publish_batch(
                self.run.project_id, self.run.run_id, fields
            )
        except Exception:
            # The batch is already committed; a live view misses it until reload.
            log.warning("live stream of run %s not updated", self.run.run_id, exc_info=True)
            appended = True
        if not appended:
            return
        if batch.config:
            await self._publish_event("run.config", {"config": batch.config})
        self.summary_pending.update({c.key: _last_value(c) for c in batch.columns})
        self.summary_pending.update(batch.summary or {})
        await self._publish_summary()

    async def _publish_summary(self, now: bool = False) -> None:
        """Publish the merged summary values, or leave them for a later call.

        Without ``now``, values wait until ``SUMMARY_INTERVAL`` has passed
        since the last event, and a task publishes them then.
        """
        if not self.summary_pending or self.run is None:
            return
        wait = self.summary_sent_at + SUMMARY_INTERVAL - time.monotonic()
        if wait > 0 and not now:
            if self.summary_later is None:
                self.summary_later = asyncio.create_task(self._publish_summary_after(wait))
            return
        if self.summary_later is not None and self.summary_later is not asyncio.current_task():
            self.summary_later.cancel()
        self.summary_later = None
        summary, self.summary_pending = self.summary_pending, {}
        self.summary_sent_at = time.monotonic()
        await self._publish_event("run.summary", {"summary": summary})

    async def _publish_summary_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._publish_summary(now=True)

    async def _heartbeat(self) -> None:
        assert self.run is not None
        if await self.context.db.write_sync(runs.touch_many, [self.run.pk]):
            await self._publish_state(runs.CRASHED)

    async def _finish(self, message: dict[str, Any]) -> None:
        assert self.run is not None
        exit_code = message.get("exit_code", 0)
        if (
            not isinstance(exit_code, int)
            or isinstance(exit_code, bool)
            or not -(2**63) <= exit_code < 2**63
        ):
            await self._send_error(
                "invalid_finish",
                f"finish 'exit_code' must be an integer within 64 bits, got {exit_code!r:.60}",
            )
            return
        finished_at = message.get("finished_at")
        if finished_at is not None and not _is_time(finished_at):
            await self._send_error(
                "invalid_finish",
                "finish 'finished_at' must be seconds since the epoch, from 0 to a day ahead "
                f"of now, got {finished_at!r}",
            )
            return
        if self.run.state != runs.RUNNING:
            # The hello found the run already ended by this session, because the
            # SDK lost the reply to its finish and sent it again. The run keeps
            # its end time, and the reply repeats its state.
            await self._send({"type": "finished", "state": self.run.state})
            log.info(
                "run %s: repeated finish ignored, run stays %s", self.run.run_id, self.run.state
            )
            return
        async with self.context.db.transaction() as connection:
            state = await runs.finish_run(connection, self.run.pk, exit_code, finished_at)
        await self.context.compactor.compact_now(self.run.pk, self.run.run_id)
        await self._publish_summary(now=True)
        await self._publish_state(runs.RUNNING, state)
        await self._send({"type": "finished", "state": state})
        log.info("run %s finished as %s", self.run.run_id, state)

    async def _publish_state(self, previous: str | None, state: str = runs.RUNNING) -> None:
        await self._publish_event("run.state", {"state": state, "previous": previous})

    async def _publish_event(self, kind: str, data: dict[str, Any]) -> None:
        assert self.run is not None
        try:
            await self.context.bus.publish_event(
                self.run.project_id, event_fields(kind, self.run.run_id, data)
            )
        except Exception:
            log.warning("event %s of run %s not published", kind, self.run.run_id, exc_info=True)

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self.websocket.send_bytes(protocol.pack(message))
        except RuntimeError:
            # uvicorn raises RuntimeError for a send after it closed the socket
            # itself, as it does when a keepalive ping times out. The client is gone.
            # NOTE: seen only under the load benchmark; the tests close sockets
            # in ways that raise ClientDisconnected, so no test reaches this line.
            raise WebSocketDisconnect(CLOSE_ABNORMAL) from None

    async def _send_error(
        self, code: str, message: str, seq: object = None, fatal: bool = False
    ) -> None:
        metrics.ERRORS.labels(code).inc()
        error: dict[str, Any] = {"type": "error", "code": code, "message": message, "fatal": fatal}
        if isinstance(seq, int):
            error["seq"] = seq
        await self._send(error)

    async def _fail(self, code: str, message: str, close_code: int) -> None:
        log.info("ingest connection %s closed with error %s: %s", self.id, code, message)
        if self.websocket.application_state != WebSocketState.CONNECTED:
            # The client is gone, so the error is counted without being sent.
            metrics.ERRORS.labels(code).inc()
            return
        try:
            await self._send_error(code, message, fatal=True)
            await self.websocket.close(close_code, reason=code)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass

    def _run_label(self) -> str:
        return "-" if self.run is None else f"{self.run.project}/{self.run.run_id}"


def parse_hello(message: dict[str, Any]) -> runs.RunSpec:
    """Check a ``hello`` message; raise ``ProtocolError`` naming the bad field."""
    version = message.get("protocol")
    if version != protocol.PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported_protocol",
            f"this server speaks protocol {protocol.PROTOCOL_VERSION}, the client sent "
            f"{version!r}; upgrade the assay package on the client or the server",
        )
    project = message.get("project")
    if not isinstance(project, str) or not NAME_PATTERN.match(project):
        raise ProtocolError(
            "invalid_project",
            f"project name {project!r} is invalid; use 1 to 128 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit",
        )
    run = message.get("run")
    if not isinstance(run, dict):
        raise ProtocolError(
            "invalid_hello", f"hello 'run' must be a map, got {type(run).__name__} {run!r:.60}"
        )
    run_id = run.get("id")
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ProtocolError(
            "invalid_run_id",
            f"run id {run_id!r} is invalid; use 1 to 64 letters, digits, '_' or '-'",
        )
    resume = message.get("resume", "never")
    if resume not in protocol.RESUME_MODES:
        raise ProtocolError(
            "invalid_hello",
            f"hello 'resume' must be one of {', '.join(protocol.RESUME_MODES)}, got {resume!r}",
        )
    session = message.get("session")
    if not isinstance(session, int) or isinstance(session, bool) or not 0 <= session < 2**63:
        raise ProtocolError(
            "invalid_hello", f"hello 'session' must be an integer in [0, 2**63), got {session!r}"
        )
    created_at = run.get("created_at")
    if created_at is not None and not _is_time(created_at):
        raise ProtocolError(
            "invalid_hello",
            f"run created_at must be seconds since the epoch, from 0 to a day ahead of now, "
            f"got {created_at!r}",
        )
    config = run.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ProtocolError(
            "invalid_hello",
            f"run config must be a map, got {type(config).__name__} {config!r:.60}",
        )
    protocol.check_document(config, "config")
    return runs.RunSpec(
        project=project,
        run_id=run_id,
        name=_optional_text(run, "name", 256),
        config=config,
        tags=_tags(run.get("tags")),
        group=_optional_text(run, "group", 256),
        notes=_optional_text(run, "notes", MAX_NOTES_LENGTH),
        resume=resume,
        session=session,
        created_at=created_at,
    )


def _optional_text(run: dict[str, Any], field: str, limit: int) -> str | None:
    value = run.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        shown = (
            repr(value[:40]) + ("..." if len(value) > 40 else "")
            if isinstance(value, str)
            else repr(value)
        )
        raise ProtocolError(
            "invalid_hello",
            f"run {field} must be a string of at most {limit} characters without NUL "
            f"characters, got {type(value).__name__} {shown}",
        )
    return value


def _tags(tags: object) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        shown = f"{len(tags)} tags" if isinstance(tags, list) else repr(tags)[:60]
        raise ProtocolError(
            "invalid_hello", f"run tags must be a list of at most {MAX_TAGS} strings, got {shown}"
        )
    for tag in tags:
        if not isinstance(tag, str) or not 0 < len(tag) <= MAX_TAG_LENGTH or "\x00" in tag:
            raise ProtocolError(
                "invalid_hello",
                f"tag {tag!r} is invalid; tags are strings of 1 to {MAX_TAG_LENGTH} characters "
                "without NUL characters",
            )
    return list(dict.fromkeys(tags))


def _is_time(value: object) -> bool:
    """A float or int time in seconds since the epoch, at most a day ahead of now."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return 0 <= value <= time.time() + 86_400


def _last_value(column: Any) -> float | int | bool | None:
    kind = protocol.KIND_FLOAT if column.kinds is None else int(column.kinds[-1])
    return protocol.decode_value(float(column.values[-1]), kind)
