"""One open report: its document, its clients and their awareness states.

A room is transport-agnostic and synchronous. Clients are ``Peer`` objects
whose ``send`` queues a frame without waiting, and the edges (the websocket
endpoint, the store and the Redis relay) read the room's ``pending`` updates
and ``on_local`` hook. Every update a client sends is applied to a shadow copy
of the document first and checked there, so a rejected update never touches
the real document.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pycrdt import Array, Doc, Subscription, TransactionEvent

from assay_server.reports import wire
from assay_server.reports.document import BLOCKS, SchemaError, check_blocks, check_document

log = logging.getLogger(__name__)

#: The largest frame a client may send; larger ones are rejected whole.
MAX_MESSAGE_BYTES = 1024 * 1024
#: The largest awareness message a client may send.
MAX_AWARENESS_BYTES = 64 * 1024


class Peer(Protocol):
    """A connected client, as the room addresses it."""

    id: str
    #: The signed-in user; awareness states belong to the user's connections.
    user_name: str
    #: True for a view-only connection, whose document updates are rejected.
    read_only: bool

    def send(self, frame: bytes) -> None:
        """Queue ``frame`` for the client without waiting."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Queue a close of the connection with a websocket close code."""
        ...


class RejectedUpdate(ValueError):
    """An update or message the room did not apply; the text is sent to its sender."""


class MissingEdits(ValueError):
    """An update that builds on edits of a client that the document does not have."""


class Room:
    """The document of one report on this instance, and the peers editing it.

    Arguments:
        report_id: the report's id, for logs.
        updates: the stored updates to start from (snapshot, then log rows).
        max_document_bytes: the limit on the encoded document.
    """

    def __init__(self, report_id: str, updates: list[bytes], max_document_bytes: int) -> None:
        self.report_id = report_id
        self.max_document_bytes = max_document_bytes
        self.doc: Doc[Any] = Doc()
        for update in updates:
            self.doc.apply_update(update)
        #: Paths, relative to the shadow's blocks, of what the last update changed.
        self._touched: list[list[Any]] = []
        self._shadow_watch: Subscription | None = None
        self.shadow: Doc[Any] = Doc()
        self._shadow_blocks: Array[Any] = self.shadow.get(BLOCKS, type=Array)
        self._replace_shadow()
        self.document_bytes = len(self.doc.get_update())
        self.peers: dict[Peer, set[int]] = {}
        self.awareness: dict[int, tuple[int, str]] = {}
        #: Updates accepted here and not yet written by the store.
        self.pending: list[bytes] = []
        #: Called with each frame to relay to other instances (an update or awareness).
        self.on_local: Callable[[bytes], None] = lambda frame: None
        self._changes: list[bytes] = []
        self._subscription: Subscription = self.doc.observe(self._collect)

    # -- peers --------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        """Add ``peer`` and start the sync: our state vector, then the awareness states."""
        self.peers[peer] = set()
        peer.send(wire.sync_message(wire.SYNC_STEP1, self.doc.get_state()))
        if self.awareness:
            peer.send(self._all_awareness())

    def leave(self, peer: Peer) -> None:
        """Remove ``peer`` and tell the others that its awareness states are gone."""
        client_ids = self.peers.pop(peer, set())
        removed = []
        for client_id in client_ids:
            clock, _ = self.awareness.pop(client_id, (0, "null"))
            removed.append(wire.AwarenessEntry(client_id, clock + 1, "null"))
        if removed:
            frame = wire.encode_awareness(removed)
            self._broadcast(frame)
            self.on_local(frame)

    # -- messages from peers ------------------------------------------------

    def receive(self, peer: Peer, frame: bytes) -> None:
        """Handle one frame from ``peer``; raise ``RejectedUpdate`` when it is refused."""
        if len(frame) > MAX_MESSAGE_BYTES:
            raise RejectedUpdate(
                f"message of {len(frame)} bytes is over the limit of {MAX_MESSAGE_BYTES}; "
                "split the edit into smaller updates"
            )
        try:
            message = wire.decode(frame)
        except wire.WireError as exc:
            raise RejectedUpdate(f"invalid message: {exc}") from None
        if message.type == wire.SYNC:
            self._receive_sync(peer, message)
        elif message.type == wire.AWARENESS:
            self._receive_awareness(peer, message.payload, frame)
        elif message.type == wire.QUERY_AWARENESS:
            peer.send(self._all_awareness())

    def _receive_sync(self, peer: Peer, message: wire.Message) -> None:
        update = message.payload
        if message.sync_type == wire.SYNC_STEP1:
            try:
                missing = self.doc.get_update(update)
            except ValueError:
                raise RejectedUpdate("invalid state vector in sync step 1") from None
            peer.send(wire.sync_message(wire.SYNC_STEP2, missing))
            return
        if update == wire.EMPTY_UPDATE:
            return
        if peer.read_only:
            raise RejectedUpdate(
                "this connection may only view the report, so its edit was not applied; "
                "open it with an edit link or as a project editor to change it"
            )
        self._check(update)
        for change in self._apply(update):
            self.pending.append(change)
            frame = wire.update_message(change)
            self._broadcast(frame, skip=peer)
            self.on_local(frame)

    def _check(self, update: bytes) -> None:
        try:
            self._touched = []
            self.shadow.apply_update(update)
            self._check_clocks()
            self._check_touched()
            size = self._shadow_bytes(len(update))
        except ValueError as exc:
            self._replace_shadow()
            known = isinstance(exc, (SchemaError, MissingEdits))
            reason = str(exc) if known else f"cannot decode it: {exc}"
            raise RejectedUpdate(f"report update rejected: {reason}") from None
        except RuntimeError as exc:
            # pycrdt 0.14 raises RuntimeError for an update that decodes but does not
            # fit the document, such as one whose client id another client already used.
            self._replace_shadow()
            raise RejectedUpdate(f"report update rejected: cannot apply it: {exc}") from None
        if size > self.max_document_bytes:
            self._replace_shadow()
            raise RejectedUpdate(
                f"report update rejected: the document would be {size} bytes, over the "
                f"limit of {self.max_document_bytes}; remove content or start a new report"
            )

    def _check_clocks(self) -> None:
        gaps = wire.clients_without_clocks(self.shadow.get_state())
        if gaps:
            raise MissingEdits(
                f"it starts past the next clock of client {gaps[0]}, so the edits it "
                "builds on are missing; sync the document and send the update again"
            )

    def _check_touched(self) -> None:
        # Checking every block costs about 0.1 ms per block, so an update that
        # changed only the insides of some blocks gets only those checked. A
        # path shorter than 2 means the block list or a block's own keys changed.
        # One transaction for all the reads saves a commit per read.
        with self.shadow.transaction():
            if any(len(path) < 2 for path in self._touched):
                check_document(self.shadow)
            else:
                check_blocks(self.shadow, {int(path[0]) for path in self._touched})

    def _shadow_bytes(self, added: int) -> int:
        # Encoding the whole document on every keystroke would cost O(size), so
        # the exact size is taken only when the running estimate nears the limit.
        estimate = self.document_bytes + added
        if estimate <= self.max_document_bytes // 2:
            self.document_bytes = estimate
            return estimate
        self.document_bytes = len(self.shadow.get_update())
        return self.document_bytes

    def _receive_awareness(self, peer: Peer, payload: bytes, frame: bytes) -> None:
        if len(frame) > MAX_AWARENESS_BYTES:
            raise RejectedUpdate(
                f"awareness message of {len(frame)} bytes is over the limit of "
                f"{MAX_AWARENESS_BYTES}"
            )
        try:
            entries = wire.decode_awareness(payload)
        except wire.WireError as exc:
            raise RejectedUpdate(f"invalid awareness message: {exc}") from None
        owned = self.peers.setdefault(peer, set())
        accepted = []
        for entry in entries:
            if self._is_echo(entry):
                continue
            owner = self._owner(entry.client_id)
            if owner is None or owner.user_name == peer.user_name:
                accepted.append(entry)
            else:
                raise RejectedUpdate(
                    f"awareness message sets the state of client {entry.client_id}, "
                    "which another user's connection owns; send only your own state"
                )
        if not accepted:
            return
        if len(accepted) < len(entries):
            frame = wire.encode_awareness(accepted)
        for entry in accepted:
            # A reconnecting client takes its states over from its old
            # connection, which may not have been detected as closed yet.
            owner = self._owner(entry.client_id)
            if owner is not None and owner is not peer:
                self.peers[owner].discard(entry.client_id)
            self._store_awareness(entry)
            if wire.is_null_state(entry):
                owned.discard(entry.client_id)
            else:
                owned.add(entry.client_id)
        self._broadcast(frame)
        self.on_local(frame)

    def _is_echo(self, entry: wire.AwarenessEntry) -> bool:
        """Return whether ``entry`` repeats a state the room has, or an older one.

        Stock y-websocket clients send every awareness change they apply,
        other clients' too, so each state a room sends out comes back once
        from every other client. Such an echo changes nothing, so it is
        neither sent on nor rejected. Sending echoes on made every client's
        15-second renewal of its state cost the square of the clients in
        frames: 122,500 frames in 2 s with 50 editors.
        """
        known = self.awareness.get(entry.client_id)
        if known is None:
            return False
        clock, state = known
        if entry.clock != clock:
            return entry.clock < clock
        # The text may differ in spacing from the owner's. Both parse, since decoding checked them.
        return entry.state == state or json.loads(entry.state) == json.loads(state)

    def _owner(self, client_id: int) -> Peer | None:
        for peer, client_ids in self.peers.items():
            if client_id in client_ids:
                return peer
        return None

    def _store_awareness(self, entry: wire.AwarenessEntry) -> None:
        known = self.awareness.get(entry.client_id)
        if known is not None and known[0] > entry.clock:
            return
        if wire.is_null_state(entry):
            self.awareness.pop(entry.client_id, None)
        else:
            self.awareness[entry.client_id] = (entry.clock, entry.state)

    # -- messages from other instances and from the server itself -----------

    def apply_relayed(self, frame: bytes) -> None:
        """Apply a frame another instance accepted: send it on, and store what was new here.

        Storing it here too means the update survives when the instance that
        accepted it crashes before its flush. The log then contains a copy per
        instance until compaction folds them into the snapshot.
        """
        message = wire.decode(frame)
        if message.type == wire.AWARENESS:
            for entry in wire.decode_awareness(message.payload):
                self._store_awareness(entry)
            self._broadcast(frame)
            return
        update = message.payload
        self.shadow.apply_update(update)
        for change in self._apply(update):
            self.pending.append(change)
            self._broadcast(wire.update_message(change))

    def edit(self, change: Callable[[Doc[Any]], None]) -> None:
        """Run a server-side edit of the document, stored and sent like a client's."""
        self._changes = []
        change(self.doc)
        changes, self._changes = self._changes, []
        for update in changes:
            self.shadow.apply_update(update)
            self.pending.append(update)
            frame = wire.update_message(update)
            self._broadcast(frame)
            self.on_local(frame)

    def close(self, code: int, reason: str) -> None:
        """Close every peer's connection with ``code``, then forget the peers."""
        for peer in list(self.peers):
            peer.close(code, reason)
        self.peers.clear()
        self.doc.unobserve(self._subscription)
        self._unwatch_shadow()

    # -- helpers ------------------------------------------------------------

    def _apply(self, update: bytes) -> list[bytes]:
        self._changes = []
        self.doc.apply_update(update)
        changes, self._changes = self._changes, []
        return changes

    def _collect(self, event: TransactionEvent) -> None:
        self._changes.append(bytes(event.update))

    def _replace_shadow(self) -> None:
        """Make the shadow a fresh copy of the document, watching its blocks."""
        self._unwatch_shadow()
        self.shadow = self._copy_doc()
        # pycrdt tracks a subscription on the object that made it, so the
        # same Array object must later unobserve it.
        self._shadow_blocks = self.shadow.get(BLOCKS, type=Array)
        self._shadow_watch = self._shadow_blocks.observe_deep(self._note_touched)

    def _unwatch_shadow(self) -> None:
        if self._shadow_watch is not None:
            self._shadow_blocks.unobserve(self._shadow_watch)
            self._shadow_watch = None

    def _note_touched(self, events: list[Any]) -> None:
        self._touched.extend(list(event.path) for event in events)

    def _copy_doc(self) -> Doc[Any]:
        shadow: Doc[Any] = Doc()
        shadow.apply_update(self.doc.get_update())
        return shadow

    def _broadcast(self, frame: bytes, skip: Peer | None = None) -> None:
        for peer in self.peers:
            if peer is not skip:
                peer.send(frame)

    def _all_awareness(self) -> bytes:
        return wire.encode_awareness(
            [
                wire.AwarenessEntry(client_id, clock, state)
                for client_id, (clock, state) in self.awareness.items()
            ]
        )
