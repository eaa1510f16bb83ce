"""The background sender: batches logged rows and delivers each batch exactly once.

A daemon thread cuts the run's buffer into numbered batches (at once when a row
comes after a quiet ``flush_interval``, else ``flush_interval`` seconds after
the last cut, or when the buffer contains ``batch_rows`` rows), keeps
every batch until the server acknowledges it as committed, and sends the
unacknowledged ones again after a reconnect. The server skips a batch number
it has stored before, so a resent batch is never stored twice. While the server
stays unreachable for ``spool_after`` seconds, or too many bytes wait, batches
move to the spool directory on disk; whatever is left when the run ends stays
there for ``assay sync``.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay import protocol
from assay._connection import IngestClient, TransientError, fatal_or_transient
from assay._credentials import Credentials
from assay._errors import AssayError
from assay._spool import Spool

log = logging.getLogger("assay")

Rows = list[tuple[int, float, dict[str, Any]]]
#: Returns the rows logged since the last call, and config and summary updates.
TakeFunction = Callable[[], tuple[Rows, dict[str, Any], dict[str, Any]]]


#: Bounds, in seconds, of one wait between cuts.
MIN_RECEIVE_WAIT = 0.001
MAX_RECEIVE_WAIT = 0.05
#: Maximum wait of an idle sender, so that a closed connection is noticed within a second.
MAX_IDLE_WAIT = 1.0


@dataclass(frozen=True)
class SenderOptions:
    #: Minimum seconds between two batches. A row logged after a quiet
    #: interval is sent at once, and the rows after it wait up to this long,
    #: so a longer interval sends fewer, larger batches.
    flush_interval: float = 0.05
    batch_rows: int = 10_000
    window: int = 32
    spool_after: float = 30.0
    max_memory_bytes: int = 64 * 1024 * 1024
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    open_timeout: float = 10.0
    #: Batches are split until their frame fits; the server takes at most 16 MiB.
    max_frame_bytes: int = protocol.MAX_MESSAGE_BYTES * 3 // 4


@dataclass
class Pending:
    seq: int
    frame: bytes | None
    path: Path | None = None

    def load(self) -> bytes:
        if self.frame is not None:
            return self.frame
        assert self.path is not None
        return self.path.read_bytes()


class Sender(threading.Thread):
    """Delivers one run session's batches; ``credentials`` None means offline."""

    def __init__(
        self,
        take: TakeFunction,
        hello: dict[str, Any],
        credentials: Credentials | None,
        spool: Spool,
        options: SenderOptions,
    ) -> None:
        super().__init__(name=f"assay-sender-{hello['run']['id']}", daemon=True)
        self.take = take
        self.hello = hello
        self.credentials = credentials
        self.spool = spool
        self.options = options
        #: Set when something should be cut now: a row after a quiet flush
        #: interval, a full buffer, or finish().
        self.wake = threading.Event()
        #: When the last cut that took anything happened.
        self.last_cut = -math.inf
        self.first_attempt = threading.Event()
        self.done = threading.Event()
        self.welcome: dict[str, Any] | None = None
        self.fatal: AssayError | None = None
        #: True until ``assay.init`` has returned the run. A fatal error received
        #: before that is raised by ``init``, so the sender does not log it.
        self.starting = True
        self.fatal_lock = threading.Lock()
        self.unacked: OrderedDict[int, Pending] = OrderedDict()
        self.memory_bytes = 0
        self.next_seq = 0
        self.dropped_batches = 0
        self.client: IngestClient | None = None
        self.sent_up_to = -1
        self.attempts = 0
        self.next_attempt = 0.0
        self.disconnected_since = time.monotonic()
        self.last_sent = 0.0
        self.heartbeat_interval = 5.0
        self.finish_code: int | None = None
        #: The time of the finish request, saved with a spooled finish so that
        #: ``assay sync`` sets the run's end time to it rather than to the upload's.
        self.finished_at = 0.0
        self.finish_deadline = 0.0
        #: Whether the finish was sent on this connection. A new connection sends it again.
        self.finish_sent = False
        self.final_state: str | None = None
        #: Set by abandon(), when ``assay.init`` raised instead of returning the run.
        self.abandoned = False

    # Calls from the run's thread.

    def queued(self) -> None:
        """Wake the sender when the run queued a row or a change after a quiet flush interval."""
        quiet = time.monotonic() - self.last_cut >= self.options.flush_interval
        if quiet and not self.wake.is_set():
            self.wake.set()

    def end_start(self) -> AssayError | None:
        """Mark the start as over unless a fatal error came first, and return that error.

        After the start, the sender logs a fatal error itself, because no caller raises it.
        """
        with self.fatal_lock:
            if self.fatal is None:
                self.starting = False
            return self.fatal

    def request_finish(self, exit_code: int, timeout: float) -> None:
        self.finished_at = time.time()
        self.finish_code = exit_code
        self.finish_deadline = time.monotonic() + timeout
        self.wake.set()

    def abandon(self) -> None:
        """Stop without sending a finish or writing a spool, because ``init`` raised.

        The caller never got the run, so it logged nothing. A finish would
        change the state of the run that ``init`` tried to resume, and
        ``assay sync`` of a spool containing that finish would do the same later.
        """
        self.abandoned = True
        self.wake.set()

    # The thread.

    def run(self) -> None:
        if self.credentials is None:
            self.spool.write_meta(self.hello)
            self.first_attempt.set()
        try:
            while not self._step_safely():
                pass
        finally:
            if self.client is not None:
                self.client.close()
            self.first_attempt.set()
            self.done.set()

    def _step_safely(self) -> bool:
        try:
            return self._step()
        except Exception:
            # An unforeseen error must not end delivery, so the batches stay
            # queued and the sender reconnects after a back-off.
            log.exception("assay sender of run %s failed; retrying", self._run_id)
            self._disconnected("unexpected error")
            self.wake.wait(self._until_attempt())
            return False

    def _step(self) -> bool:
        """One pass of the loop; True when the sender is done."""
        if self.abandoned:
            # NOTE: a connection that opened after init gave up has already
            # created or resumed the run on the server. Closing it without a
            # finish leaves the run running until the crash timeout marks it crashed.
            return True
        # Read the finish request before taking rows: rows logged before
        # finish() are then all in this take, and none is left behind.
        finishing = self.finish_code is not None
        self._cut_when_due(finishing)
        if self.credentials is None or self.fatal is not None:
            self._spool_all()
            if finishing:
                self._spool_finish()
                return True
            self.wake.wait(self.options.flush_interval)
            return False
        if finishing and time.monotonic() > self.finish_deadline:
            self._give_up()
            return True
        if self.client is None:
            self._connect_when_due()
        if self.client is None:
            self._spool_if_away()
            self.wake.wait(min(self.options.flush_interval, self._until_attempt()))
            return False
        try:
            return self._exchange(finishing)
        except TransientError as exc:
            self._apply_received_acks()
            self._disconnected(str(exc))
            return False

    def _exchange(self, finishing: bool) -> bool:
        assert self.client is not None
        self._send_pending()
        if finishing and not self.unacked and not self.finish_sent:
            # The server's clock sets the end time, so a client clock that is off
            # cannot make the server reject the finish.
            self.client.send(protocol.pack({"type": "finish", "exit_code": self.finish_code}))
            self.finish_sent = True
        elif time.monotonic() - self.last_sent > self.heartbeat_interval:
            self.client.send(protocol.pack({"type": "heartbeat"}))
            self.last_sent = time.monotonic()
        if finishing or self._window_full():
            message = self.client.receive(0.2 if finishing else self._until_cut())
        else:
            message = self.client.receive(0)
        while message is not None:
            if self._handle(message):
                return True
            if self.client is None:
                # A fatal error closed the connection, and the next pass spools.
                return False
            message = self.client.receive(0)
        if not finishing and not self._window_full():
            # Acknowledgements wait in the socket until the next pass. The wait
            # ends early when the run queues a row after a quiet interval.
            self.wake.wait(self._until_cut())
        return False

    def _in_flight(self) -> int:
        """Count the batches sent on this connection and not yet acknowledged."""
        return sum(1 for seq in self.unacked if seq <= self.sent_up_to)

    def _window_full(self) -> bool:
        return self._in_flight() >= self.options.window

    def _apply_received_acks(self) -> None:
        """Apply the acks that arrived before the connection failed.

        A server that shuts down sends the acks of the batches it committed
        and then closes. When sending fails first, those acks are still in
        the socket's buffer, and without this the batches would be resent.
        """
        while self.client is not None:
            try:
                message = self.client.receive(0)
            except TransientError:
                return
            if message is None:
                return
            if message["type"] == "ack":
                self._acknowledged(message.get("seq"))

    def _handle(self, message: dict[str, Any]) -> bool:
        kind = message["type"]
        if kind == "ack":
            self._acknowledged(message.get("seq"))
        elif kind == "finished":
            self.final_state = message.get("state")
            return True
        elif kind == "error":
            if message.get("fatal"):
                error = fatal_or_transient(message)
                if isinstance(error, TransientError):
                    raise error
                assert isinstance(error, AssayError)
                self._stop_on(error)
            elif isinstance(message.get("seq"), int):
                self._rejected(message)
            else:
                log.error("assay server error on run %s: %s", self._run_id, message.get("message"))
        return False

    def _acknowledged(self, seq: object) -> None:
        pending = self.unacked.pop(seq, None) if isinstance(seq, int) else None
        if pending is None:
            return
        if pending.frame is not None:
            self.memory_bytes -= len(pending.frame)
        if pending.path is not None:
            pending.path.unlink(missing_ok=True)

    def _rejected(self, message: dict[str, Any]) -> None:
        # Sending the same bytes again cannot succeed, so the batch is dropped.
        self.dropped_batches += 1
        self._acknowledged(message["seq"])
        log.error(
            "assay server rejected batch %s of run %s: %s",
            message["seq"],
            self._run_id,
            message.get("message"),
        )

    def _connect_when_due(self) -> None:
        if time.monotonic() < self.next_attempt:
            return
        assert self.credentials is not None
        client = IngestClient(
            self.credentials.server, self.credentials.api_key, self.options.open_timeout
        )
        hello = dict(self.hello)
        if self.welcome is not None:
            # The run exists now: a reconnect continues it whatever the first hello asked.
            hello["resume"] = "allow"
        try:
            welcome = client.open(hello)
        except TransientError as exc:
            self._disconnected(str(exc))
            self.first_attempt.set()
            return
        except AssayError as exc:
            self._stop_on(exc)
            self.first_attempt.set()
            return
        self.client = client
        self.welcome = self.welcome or welcome
        # Set after the welcome, because init() reads it once the first attempt is over.
        self.first_attempt.set()
        self.heartbeat_interval = float(welcome.get("heartbeat_interval", 5.0))
        self.sent_up_to = -1
        # A cut between the finish and the server's reply loses the reply, so
        # the new connection sends the finish again. The server finds the run
        # ended by this session, keeps its end time and replies.
        self.finish_sent = False
        self.attempts = 0
        self.last_sent = time.monotonic()
        log.debug("assay run %s connected", self._run_id)

    def _disconnected(self, reason: str) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
            self.disconnected_since = time.monotonic()
            log.warning("assay run %s lost its connection (%s); retrying", self._run_id, reason)
        self.attempts += 1
        # The exponent is capped because past 2**1023 the float product
        # overflows, which stopped the sender after about four hours of outage.
        growth = 2.0 ** min(self.attempts, 60)
        ceiling = min(self.options.backoff_max, self.options.backoff_base * growth)
        self.next_attempt = time.monotonic() + random.uniform(0, ceiling)

    def _stop_on(self, error: AssayError) -> None:
        """Stop sending after ``error`` and keep the run's data in the spool directory."""
        with self.fatal_lock:
            self.fatal = error
            raised_by_init = self.starting
        if self.client is not None:
            self.client.close()
            self.client = None
        if raised_by_init:
            # init() raises the error, and the run has logged nothing yet.
            log.debug("assay server rejected run %s: %s", self._run_id, error)
            return
        self._cut_batches()
        self._spool_all()
        if self.unacked:
            log.error(
                "assay server rejected run %s: %s. The %d batches that the server has not "
                "stored are saved in %s, as is everything the run logs from now on. Fix the "
                "cause, then upload them with `assay sync %s`",
                self._run_id,
                error,
                len(self.unacked),
                self.spool.directory,
                self.spool.directory,
            )
            return
        log.error(
            "assay server rejected run %s: %s. No logged data was waiting to be sent. "
            "Everything the run logs from now on is saved in %s, so fix the cause, then "
            "upload it with `assay sync %s`",
            self._run_id,
            error,
            self.spool.directory,
            self.spool.directory,
        )

    def _until_cut(self) -> float:
        now = time.monotonic()
        due = self.last_cut + self.options.flush_interval - now
        if due <= 0:
            # The pass just made took nothing, so no cut is due: the run's
            # next row wakes the sender (see queued()).
            due = min(MAX_IDLE_WAIT, self.last_sent + self.heartbeat_interval - now)
            return max(MIN_RECEIVE_WAIT, due)
        return min(MAX_RECEIVE_WAIT, max(MIN_RECEIVE_WAIT, due))

    def _until_attempt(self) -> float:
        return max(0.01, self.next_attempt - time.monotonic())

    def _cut_when_due(self, finishing: bool) -> None:
        """Cut batches a flush interval after the last cut, or when woken or finishing."""
        now = time.monotonic()
        if finishing or self.wake.is_set() or now - self.last_cut >= self.options.flush_interval:
            # Clearing before the take keeps a wake for rows the take misses.
            self.wake.clear()
            if self._cut_batches():
                self.last_cut = now

    def _cut_batches(self) -> bool:
        """Cut the queued rows and changes into batches; return False when there were none."""
        rows, config, summary = self.take()
        if not rows and not config and not summary:
            return False
        for start in range(0, max(len(rows), 1), self.options.batch_rows):
            part = rows[start : start + self.options.batch_rows]
            if start == 0:
                self._add_batch(part, config or None, summary or None)
            else:
                self._add_batch(part, None, None)
        return True

    def _add_batch(
        self, rows: Rows, config: dict[str, Any] | None, summary: dict[str, Any] | None
    ) -> None:
        seq = self.next_seq
        body = protocol.encode_rows(rows)
        frame = protocol.pack(
            {"type": "batch", "seq": seq, **body, "config": config, "summary": summary}
        )
        too_wide = len(body["metrics"]) > protocol.MAX_KEYS_PER_BATCH
        if (len(frame) > self.options.max_frame_bytes or too_wide) and len(rows) > 1:
            # Wide rows: halve the batch until each frame fits the server's limits.
            middle = len(rows) // 2
            self._add_batch(rows[:middle], config, summary)
            self._add_batch(rows[middle:], None, None)
            return
        keys = len(config or {}) + len(summary or {})
        if len(frame) > self.options.max_frame_bytes and keys > 1:
            # Updates of several keys, each within MAX_DOCUMENT_BYTES, that
            # together overflow a frame go one key per batch.
            self._add_batch(rows, None, None)
            for key, value in (config or {}).items():
                self._add_batch([], {key: value}, None)
            for key, value in (summary or {}).items():
                self._add_batch([], None, {key: value})
            return
        self.next_seq += 1
        self.unacked[seq] = Pending(seq, frame)
        self.memory_bytes += len(frame)
        if self.memory_bytes > self.options.max_memory_bytes:
            self._spool_all()

    def _send_pending(self) -> None:
        assert self.client is not None
        in_flight = self._in_flight()
        for seq, pending in self.unacked.items():
            if in_flight >= self.options.window:
                break
            if seq <= self.sent_up_to:
                continue
            self.client.send(pending.load())
            self.sent_up_to = seq
            self.last_sent = time.monotonic()
            in_flight += 1

    def _spool_if_away(self) -> None:
        if time.monotonic() - self.disconnected_since > self.options.spool_after:
            self._spool_all()

    def _spool_all(self) -> None:
        """Move every in-memory batch to the spool directory."""
        if not any(p.frame is not None for p in self.unacked.values()):
            return
        if not (self.spool.directory / "run.msgpack").exists():
            self.spool.write_meta(self.hello)
        for pending in self.unacked.values():
            if pending.frame is not None:
                pending.path = self.spool.write_batch(pending.seq, pending.frame)
                self.memory_bytes -= len(pending.frame)
                pending.frame = None

    def _spool_finish(self) -> None:
        assert self.finish_code is not None
        if self.unacked or (self.spool.directory / "run.msgpack").exists():
            self.spool.write_meta(self.hello)
            self.spool.write_finish(self.finish_code, self.finished_at)

    def _give_up(self) -> None:
        self._spool_all()
        self.spool.write_meta(self.hello)
        self.spool.write_finish(self.finish_code or 0, self.finished_at)
        if not self.unacked:
            log.warning(
                "assay run %s: the server did not confirm the finish before the timeout; "
                "every batch is stored, and the finish is saved in %s: upload it with "
                "`assay sync %s`",
                self._run_id,
                self.spool.directory,
                self.spool.directory,
            )
            return
        log.warning(
            "assay run %s: %d batches were not acknowledged before the timeout; they are "
            "saved in %s, upload them with `assay sync %s`",
            self._run_id,
            len(self.unacked),
            self.spool.directory,
            self.spool.directory,
        )

    @property
    def _run_id(self) -> str:
        return str(self.hello["run"]["id"])
