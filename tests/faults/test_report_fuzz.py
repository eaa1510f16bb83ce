"""Fuzz the report socket's y-websocket message handler with Hypothesis.

Frames are random bytes, or valid sync step 1, sync step 2, update and
awareness messages with bit flips, truncations, overflowing varint lengths,
mutated update payloads and repeats. The server must respond to each with
a reply or a permission-denied reason, never close the socket (so never with
1011) and never report an internal error. Afterwards an edit by one Node
client reaches another and the stored document loads and passes the schema.
``ASSAY_FUZZ_EXAMPLES`` sets the number of examples (default 200).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, write_var_uint
from reports.support import (
    PROJECT,
    NodeClient,
    create_report,
    denial_reason,
    wait_for,
    yjs_url,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

import assay
from assay_server.reports import wire
from assay_server.reports.document import check_document, to_json
from conftest import RunningServer
from faults.report_editors import stored_content, stored_doc

EXAMPLES = int(os.environ.get("ASSAY_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: The server's reason for an exception it did not expect while handling a message.
INTERNAL_ERROR = "internal server error"
#: Probes are messages of this unknown type plus a counter: each is denied with its own reason.
PROBE_TYPE = 10**6

texts = st.text(max_size=40)
block_types = st.sampled_from(["markdown", "heading", "panel_grid", "video", ""])


@st.composite
def updates(draw: st.DrawFn) -> bytes:
    """Return an update from a fresh client: a title edit, a block, or a stray root type."""
    # A drawn client id keeps the update's bytes, and so every later draw, repeatable.
    doc: Doc[Any] = Doc(client_id=draw(st.integers(1, 2**32 - 1)))
    kind = draw(st.sampled_from(["title", "block", "root"]))
    if kind == "title":
        doc.get("title", type=Text).insert(0, draw(texts))
    elif kind == "block":
        values: dict[str, Any] = {"id": draw(st.text(max_size=70)), "type": draw(block_types)}
        if draw(st.booleans()):
            values["text"] = Text(draw(texts))
        if draw(st.booleans()):
            values["level"] = draw(st.integers(-1, 9))
        doc.get("blocks", type=Array).append(Map(values))
    else:
        doc.get(draw(st.text(min_size=1, max_size=10)), type=Map)["x"] = draw(texts)
    return doc.get_update()


@st.composite
def valid_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["step1", "step2", "update", "awareness"]))
    if kind == "step1":
        doc: Doc[Any] = Doc()
        doc.apply_update(draw(updates()))
        return wire.sync_message(wire.SYNC_STEP1, doc.get_state())
    if kind == "step2":
        return wire.sync_message(wire.SYNC_STEP2, draw(updates()))
    if kind == "update":
        return wire.update_message(draw(updates()))
    state = draw(
        st.one_of(
            st.just("null"),
            st.builds(lambda name: json.dumps({"user": {"name": name}}), texts),
        )
    )
    entry = wire.AwarenessEntry(draw(st.integers(0, 2**53)), draw(st.integers(0, 2**53)), state)
    return wire.encode_awareness([entry])


def header_length(frame: bytes) -> int:
    """Return the length of the type bytes before the payload's length prefix."""
    return 2 if frame[0] == wire.SYNC else 1


@st.composite
def mutated_messages(draw: st.DrawFn) -> list[bytes]:
    """Return the frames of one mutated valid message, sent one after another."""
    frame = bytearray(draw(valid_messages()))
    mutation = draw(
        st.sampled_from(["flip", "truncate", "length", "payload", "repeat", "concatenate"])
    )
    if mutation == "flip":
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(frame) - 1))
            frame[position] ^= 1 << draw(st.integers(0, 7))
    elif mutation == "truncate":
        frame = frame[: draw(st.integers(0, len(frame) - 1))]
    elif mutation == "length":
        # A length prefix that overflows, runs past the end or falls short.
        length = draw(
            st.one_of(
                st.just(b"\xff" * 10 + b"\x01"),
                st.just(write_var_uint(2**53 + 1)),
                st.just(b"\x80"),
                st.builds(write_var_uint, st.integers(0, 2**64)),
            )
        )
        head = header_length(frame)
        payload = wire.read_payload(wire_reader(bytes(frame), head))
        frame = bytearray(frame[:head] + length + payload)
    elif mutation == "payload":
        # A payload changed inside a correct length prefix reaches the update decoder.
        head = header_length(frame)
        payload = bytearray(wire.read_payload(wire_reader(bytes(frame), head)))
        if payload and draw(st.booleans()):
            for _ in range(draw(st.integers(1, 4))):
                position = draw(st.integers(0, len(payload) - 1))
                payload[position] ^= 1 << draw(st.integers(0, 7))
        else:
            payload = payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
        frame = bytearray(frame[:head] + write_var_uint(len(payload)) + payload)
    elif mutation == "repeat":
        return [bytes(frame)] * draw(st.integers(2, 5))
    else:
        return [bytes(frame) * draw(st.integers(2, 5))]
    return [bytes(frame)]


def wire_reader(frame: bytes, head: int) -> wire.Reader:
    reader = wire.Reader(frame)
    reader.position = head
    return reader


frame_lists = st.one_of(
    st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=3),
    st.lists(valid_messages(), min_size=1, max_size=3),
    mutated_messages(),
)


class FuzzSocket:
    """A raw report socket that sends frames, then a probe, and collects the replies."""

    def __init__(self, server: RunningServer, report_id: str) -> None:
        self.socket: ClientConnection = connect(
            f"{yjs_url(server)}/{report_id}",
            additional_headers={"Authorization": f"Bearer {server.api_key}"},
            max_size=None,
            legacy=True,
        )
        self.probes = 0
        self.frames = 0
        #: Rejections counted by the start of their reason, up to its first colon.
        self.denials: Counter[str] = Counter()

    def exchange(self, frames: list[bytes]) -> list[bytes]:
        """Send ``frames`` and a probe; return every frame received before the probe's denial."""
        self.probes += 1
        probe = PROBE_TYPE + self.probes
        for frame in frames:
            self.socket.send(frame)
            self.frames += 1
        self.socket.send(write_var_uint(probe))
        received: list[bytes] = []
        while True:
            reply = self.socket.recv(timeout=20)
            assert isinstance(reply, bytes), f"expected a binary frame, got {reply!r}"
            if reply[:2] == b"\x02\x00":
                reason = denial_reason(reply)
                if f"unknown message type {probe};" in reason:
                    return received
                self.denials[reason.split(":")[0]] += 1
            received.append(reply)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def report_id(sqlite_server: RunningServer, tmp_path: Any) -> str:
    server = sqlite_server
    assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return str(create_report(server)["id"])


@pytest.fixture
def fuzz_socket(sqlite_server: RunningServer, report_id: str) -> Iterator[FuzzSocket]:
    socket = FuzzSocket(sqlite_server, report_id)
    yield socket
    socket.close()


def test_fuzz_report_socket(
    sqlite_server: RunningServer, report_id: str, fuzz_socket: FuzzSocket
) -> None:
    server = sqlite_server

    @FUZZ
    @given(frames=frame_lists)
    def exchange(frames: list[bytes]) -> None:
        try:
            received = fuzz_socket.exchange(frames)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            raise AssertionError(f"the server closed the report socket with code {code}") from None
        for reply in received:
            assert reply[0] in (wire.SYNC, wire.AWARENESS, wire.AUTH), reply[:8]
            if reply[0] == wire.AUTH:
                reason = denial_reason(reply)
                assert reason
                assert INTERNAL_ERROR not in reason, reason

    exchange()
    print(
        f"\nfuzz report socket: {fuzz_socket.probes} examples, {fuzz_socket.frames} frames, "
        f"{fuzz_socket.denials.total()} rejected: {dict(fuzz_socket.denials)}"
    )

    url = yjs_url(server)
    writer = NodeClient("write", url, report_id, server.api_key, "after the fuzzing")
    reader = NodeClient("read", url, report_id, server.api_key, "after the fuzzing", "10000")
    try:
        written = writer.next_event()
        seen = reader.next_event()
        reader_exit = reader.wait()
    finally:
        writer.stop()
        reader.stop()
    fuzz_socket.close()
    # NOTE: the stored document is not compared with the room's. pycrdt 0.14 shows
    # some updates with a gap in a client's clocks at once, where Yjs keeps them
    # pending, and the room stores nothing for them (test_bad_input.py has the case).
    wait_for(
        lambda: "after the fuzzing" in str(stored_content(server.settings, report_id)),
        timeout=15,
        what="the Node client's edit to be stored",
    )
    loaded = stored_doc(server.settings, report_id)
    with server.client() as http:
        listed = http.get(f"/api/v1/projects/{PROJECT}/reports")
        report_response = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
        versions = f"/api/v1/projects/{PROJECT}/reports/{report_id}/versions"
        saved = http.post(versions, json={})
        restored = http.post(f"{versions}/{saved.json().get('id')}/restore")
        ready = http.get("/readyz")

    assert fuzz_socket.probes >= min(EXAMPLES, 100)
    assert written == {"event": "written"}
    assert seen["event"] == "seen"
    assert reader_exit == 0
    assert any(block.get("text") == "after the fuzzing" for block in to_json(loaded)["blocks"])
    check_document(loaded)
    assert listed.status_code == 200, listed.text
    assert report_response.status_code == 200, report_response.text
    assert saved.status_code == 201, saved.text
    assert restored.status_code == 200, restored.text
    assert ready.status_code == 200, ready.text
