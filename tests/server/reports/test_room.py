"""The transport-agnostic room, driven with peers that record their frames."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, merge_updates

from assay_server.reports import wire
from assay_server.reports.document import set_title
from assay_server.reports.room import RejectedUpdate, Room
from reports.support import add_markdown


class RecordingPeer:
    """A peer whose connection is a list: the room's frames and close codes land in it."""

    def __init__(
        self,
        name: str,
        user_name: str = "alice",
        read_only: bool = False,
    ) -> None:
        self.id = name
        self.user_name = user_name
        self.read_only = read_only
        self.frames: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def titled(title: str) -> bytes:
    doc: Doc[Any] = Doc()
    set_title(doc, title)
    return doc.get_update()


def markdown_update(block_id: str, text: str) -> bytes:
    doc: Doc[Any] = Doc()
    add_markdown(doc, block_id, text)
    return doc.get_update()


def test_join_sends_state_vector() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    peer = RecordingPeer("a")

    room.join(peer)

    assert peer.frames == [wire.sync_message(wire.SYNC_STEP1, room.doc.get_state())]


def test_client_update_goes_to_others_and_pending() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    relayed: list[bytes] = []
    room.on_local = relayed.append
    sender, other = RecordingPeer("a"), RecordingPeer("b")
    room.join(sender)
    room.join(other)
    sender.frames.clear()
    other.frames.clear()

    room.receive(sender, wire.update_message(markdown_update("b1", "text")))

    assert sender.frames == []
    assert len(other.frames) == 1
    assert other.frames[0][:2] == b"\x00\x02"
    assert len(room.pending) == 1
    assert relayed == other.frames
    assert room.doc.get("blocks", type=Array).to_py()[0]["text"] == "text"


@pytest.mark.parametrize("sync_type", [wire.SYNC_STEP2, wire.SYNC_UPDATE])
def test_read_only_update_rejected(sync_type: int) -> None:
    room = Room("r", [titled("Findings")], 10**6)
    relayed: list[bytes] = []
    room.on_local = relayed.append
    viewer, editor = RecordingPeer("v", read_only=True), RecordingPeer("e")
    room.join(viewer)
    room.join(editor)
    before = room.doc.get_state()
    editor.frames.clear()

    with pytest.raises(RejectedUpdate, match="may only view"):
        room.receive(viewer, wire.sync_message(sync_type, markdown_update("b1", "vandal")))

    assert room.doc.get_state() == before
    assert room.pending == []
    assert editor.frames == []
    assert relayed == []


def test_read_only_may_sync_and_send_empty_step2() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    viewer = RecordingPeer("v", read_only=True)
    room.join(viewer)
    viewer.frames.clear()

    room.receive(viewer, wire.sync_message(wire.SYNC_STEP1, Doc().get_state()))
    room.receive(viewer, wire.sync_message(wire.SYNC_STEP2, wire.EMPTY_UPDATE))

    assert len(viewer.frames) == 1
    replica: Doc[Any] = Doc()
    replica.apply_update(wire.decode(viewer.frames[0]).payload)
    assert str(replica.get("title", type=Text)) == "Findings"


def test_known_update_is_not_stored_again() -> None:
    update = markdown_update("b1", "text")
    room = Room("r", [titled("Findings"), update], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)

    room.receive(peer, wire.update_message(update))

    assert room.pending == []


def test_relayed_update_is_sent_and_stored() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    relayed: list[bytes] = []
    room.on_local = relayed.append
    peers = [RecordingPeer("a"), RecordingPeer("b")]
    for peer in peers:
        room.join(peer)
        peer.frames.clear()

    update = markdown_update("b1", "from elsewhere")
    room.apply_relayed(wire.update_message(update))
    room.apply_relayed(wire.update_message(update))

    assert [len(peer.frames) for peer in peers] == [1, 1]
    # Stored once, so it survives the crash of the instance that accepted it.
    assert len(room.pending) == 1
    assert relayed == []
    assert room.shadow.get("blocks", type=Array).to_py()[0]["text"] == "from elsewhere"


def test_server_edit_is_stored_and_sent() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    peer.frames.clear()

    room.edit(lambda doc: set_title(doc, "Renamed"))

    assert str(room.doc.get("title", type=Text)) == "Renamed"
    assert str(room.shadow.get("title", type=Text)) == "Renamed"
    assert len(room.pending) == 1
    assert len(peer.frames) == 1


def test_close_closes_peers_and_frees_room() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    reference = weakref.ref(room)

    room.close(1012, "server restart")
    del room
    gc.collect()

    assert peer.closed == (1012, "server restart")
    assert reference() is None


def awareness_frame(client_id: int, clock: int, state: str) -> bytes:
    return wire.encode_awareness([wire.AwarenessEntry(client_id, clock, state)])


def test_awareness_of_other_connection_rejected() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    alice, mallory = RecordingPeer("a"), RecordingPeer("m", "mallory")
    room.join(alice)
    room.join(mallory)
    room.receive(alice, awareness_frame(7, 1, '{"user":"alice"}'))

    with pytest.raises(RejectedUpdate) as raised:
        room.receive(mallory, awareness_frame(7, 2, "null"))

    assert "client 7, which another user's connection owns" in str(raised.value)
    assert room.awareness[7] == (1, '{"user":"alice"}')


def test_awareness_echo_of_other_user_dropped() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    alice, bob = RecordingPeer("a"), RecordingPeer("b", "bob")
    room.join(alice)
    room.join(bob)
    room.receive(alice, awareness_frame(7, 2, '{"user":"alice"}'))
    sent_to_alice = len(alice.frames)

    room.receive(bob, awareness_frame(7, 2, '{"user":"alice"}'))
    room.receive(bob, awareness_frame(7, 2, '{ "user": "alice" }'))
    room.receive(bob, awareness_frame(7, 1, '{"user":"older"}'))

    assert room.awareness[7] == (2, '{"user":"alice"}')
    assert room.peers[alice] == {7}
    assert room.peers[bob] == set()
    assert len(alice.frames) == sent_to_alice


def test_awareness_echo_of_same_user_not_sent_on() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    first, second, third = RecordingPeer("a"), RecordingPeer("b"), RecordingPeer("c")
    for peer in (first, second, third):
        room.join(peer)
    room.receive(first, awareness_frame(7, 3, '{"user":"alice"}'))
    sent = [len(peer.frames) for peer in (first, second, third)]

    # Every other client of the same user sends the renewed state back.
    room.receive(second, awareness_frame(7, 3, '{"user":"alice"}'))
    room.receive(third, awareness_frame(7, 3, '{"user":"alice"}'))
    room.receive(second, awareness_frame(7, 4, '{"user":"alice","cursor":1}'))

    assert room.awareness[7] == (4, '{"user":"alice","cursor":1}')
    # Only the newer state went out, once to each peer.
    assert [len(peer.frames) for peer in (first, second, third)] == [n + 1 for n in sent]
    assert third.frames[-1] == awareness_frame(7, 4, '{"user":"alice","cursor":1}')


def test_awareness_echo_keeps_own_entries() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    alice, bob, carol = RecordingPeer("a"), RecordingPeer("b", "bob"), RecordingPeer("c", "carol")
    for peer in (alice, bob, carol):
        room.join(peer)
    room.receive(alice, awareness_frame(7, 1, '{"user":"alice"}'))
    echo_and_own = wire.encode_awareness(
        [
            wire.AwarenessEntry(7, 1, '{"user":"alice"}'),
            wire.AwarenessEntry(8, 1, '{"user":"bob"}'),
        ]
    )

    room.receive(bob, echo_and_own)

    assert room.awareness[8] == (1, '{"user":"bob"}')
    assert room.peers[bob] == {8}
    assert carol.frames[-1] == awareness_frame(8, 1, '{"user":"bob"}')


@pytest.mark.parametrize(
    ("clock", "state"), [(1, '{"user":"forged"}'), (2, '{"user":"alice"}'), (2, "null")]
)
def test_awareness_change_of_other_user_rejected(clock: int, state: str) -> None:
    room = Room("r", [titled("Findings")], 10**6)
    alice, mallory = RecordingPeer("a"), RecordingPeer("m", "mallory")
    room.join(alice)
    room.join(mallory)
    room.receive(alice, awareness_frame(7, 1, '{"user":"alice"}'))

    with pytest.raises(RejectedUpdate) as raised:
        room.receive(mallory, awareness_frame(7, clock, state))

    assert "client 7, which another user's connection owns" in str(raised.value)
    assert room.awareness[7] == (1, '{"user":"alice"}')


def test_reconnect_takes_over_awareness() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    old, new = RecordingPeer("old"), RecordingPeer("new")
    room.join(old)
    room.join(new)
    room.receive(old, awareness_frame(7, 1, '{"user":"alice"}'))

    room.receive(new, awareness_frame(7, 2, '{"user":"alice"}'))
    room.leave(old)

    assert room.awareness[7] == (2, '{"user":"alice"}')
    assert room.peers[new] == {7}


def grid_update() -> tuple[Doc[Any], bytes]:
    doc: Doc[Any] = Doc()
    run_set = Map(
        {
            "id": "r1",
            "name": "baseline",
            "filter": "",
            "grouping": [],
            "sort": None,
            "colour": "#1f77b4",
            "active": True,
            "frozen": False,
        }
    )
    grid = Map({"id": "g", "type": "panel_grid", "run_sets": Array([run_set]), "panels": Array()})
    add_markdown(doc, "m", "text")
    doc.get("blocks", type=Array).append(grid)
    return doc, doc.get_update()


def test_change_inside_block_is_checked() -> None:
    source, update = grid_update()
    room = Room("r", [titled("Findings"), update], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    run_set = source.get("blocks", type=Array)[1]["run_sets"][0]
    before = source.get_state()
    run_set["active"] = "yes"

    with pytest.raises(RejectedUpdate) as raised:
        room.receive(peer, wire.update_message(source.get_update(before)))

    assert "'active' must be true or false, got 'yes'" in str(raised.value)
    assert room.doc.get("blocks", type=Array)[1]["run_sets"][0]["active"] is True
    assert room.pending == []


def test_valid_toggle_inside_block_accepted() -> None:
    source, update = grid_update()
    room = Room("r", [titled("Findings"), update], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    before = source.get_state()
    source.get("blocks", type=Array)[1]["run_sets"][0]["active"] = False

    room.receive(peer, wire.update_message(source.get_update(before)))

    assert room.doc.get("blocks", type=Array)[1]["run_sets"][0]["active"] is False
    assert len(room.pending) == 1


def test_consecutive_updates_merged_in_order() -> None:
    source: Doc[Any] = Doc()
    blocks = source.get("blocks", type=Array)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(bytes(event.update)))
    text = Text("a")
    blocks.append(Map({"id": "m1", "type": "markdown", "text": text}))
    text.insert(1, "b")
    text.insert(2, "c")
    awareness = awareness_frame(7, 1, '{"user":"alice"}')
    frames = [
        wire.update_message(updates[0]),
        wire.update_message(updates[1]),
        awareness,
        wire.update_message(updates[2]),
    ]

    merged = wire.merge_update_messages(frames)
    target: Doc[Any] = Doc()
    for frame in merged:
        if frame.startswith(wire.UPDATE_PREFIX):
            target.apply_update(wire.decode(frame).payload)

    # Two updates became one, the awareness message kept its place, and the
    # last update, after it, was sent alone.
    assert len(merged) == 3
    assert merged[1] == awareness
    assert merged[2] == frames[3]
    assert str(target.get("blocks", type=Array)[0]["text"]) == "abc"


def test_lone_update_sent_unchanged() -> None:
    frame = wire.update_message(titled("Findings"))

    assert wire.merge_update_messages([frame]) == [frame]
    assert wire.merge_update_messages([frame])[0] is frame
    assert wire.merge_update_messages([]) == []


def test_same_run_merged_once() -> None:
    updates = [titled(f"Findings {n}") for n in range(3)]
    run = [wire.update_message(update) for update in updates]
    copies = [bytes(bytearray(frame)) for frame in run]
    big = [wire.update_message(titled("x" * wire.MAX_MERGED_RUN_BYTES)) for _ in range(2)]

    first, second = wire.merge_update_messages(run), wire.merge_update_messages(run)
    other = wire.merge_update_messages(copies)
    big_first, big_second = wire.merge_update_messages(big), wire.merge_update_messages(big)

    # Peers with the same frames share one merge. Equal frames from
    # other objects share it too, since the merge depends only on the bytes.
    assert second[0] is first[0]
    assert other[0] is first[0]
    assert first[0] == wire.update_message(merge_updates(*updates))
    # A run over the size limit is merged again each time, not kept.
    assert big_second[0] is not big_first[0]
    assert big_second[0] == big_first[0]


def test_merged_runs_kept_are_bounded() -> None:
    for n in range(wire.MAX_MERGED_RUNS * 2):
        wire.merge_update_messages([wire.update_message(titled(f"{n} {k}")) for k in range(2)])

    assert len(wire._MERGED_RUNS) == wire.MAX_MERGED_RUNS


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 20_000])
def test_update_payload_skips_length_prefix(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))

    assert wire.update_payload(wire.update_message(payload)) == payload
    assert wire.decode(wire.update_message(payload)).payload == payload


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (b"\x00", []),
        # Client 5 at clock 3, and client 128 (two bytes) at clock 1.
        (b"\x02\x05\x03\x80\x01\x01", []),
        # Client 0 has clock 7: its zero byte is an id, not a clock.
        (b"\x01\x00\x07", []),
        (b"\x02\x05\x00\x80\x01\x01", [5]),
        (b"\x02\x05\x03\x80\x01\x00", [128]),
        (b"\x01\x00\x00", [0]),
    ],
)
def test_clients_without_clocks(state: bytes, expected: list[int]) -> None:
    assert wire.clients_without_clocks(state) == expected


def test_update_past_unknown_clock_rejected() -> None:
    room = Room("r", [titled("Findings")], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    # Client 6 inserts "x" into the title at clock 64, though its clocks 0 to
    # 63 never arrived: one struct, client 6, clock 64, a string in "title".
    gap = b"\x01\x01\x06\x40\x04\x01\x05title\x01x\x00"

    with pytest.raises(RejectedUpdate, match="starts past the next clock of client 6"):
        room.receive(peer, wire.update_message(gap))

    assert str(room.doc.get("title", type=Text)) == "Findings"
    assert room.pending == []


def test_clock_gap_rejected_beside_client_zero() -> None:
    # Client 0's id puts a zero byte into the state vector, so the room
    # cannot rule out a clock 0 without decoding the whole vector.
    zero: Doc[Any] = Doc(client_id=0)
    add_markdown(zero, "z", "from client zero")
    room = Room("r", [titled("Findings"), zero.get_update()], 10**6)
    peer = RecordingPeer("a")
    room.join(peer)
    room.receive(peer, wire.update_message(markdown_update("b1", "accepted")))
    gap = b"\x01\x01\x06\x40\x04\x01\x05title\x01x\x00"

    with pytest.raises(RejectedUpdate, match="starts past the next clock of client 6"):
        room.receive(peer, wire.update_message(gap))

    assert [block["id"] for block in room.doc.get("blocks", type=Array).to_py()] == ["z", "b1"]
    assert str(room.doc.get("title", type=Text)) == "Findings"
    assert len(room.pending) == 1
