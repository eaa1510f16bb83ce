"""The ``follow`` message of the live socket: a report's run sets and their runs, kept current.

A ``ReportFollow`` joins the report's room as a silent, read-only peer, so
it keeps the room loaded and receives every edit, whether a local client or
another instance made it. It watches the run-set filters it reads from the
document with the instance's ``MembershipEngine``, which also reports each
change of a member run. Changes are gathered for ``COALESCE_SECONDS`` and sent
as one ``report_runs`` message; ``docs/live.md`` describes the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc

from assay_server import access, filters
from assay_server.database import Database
from assay_server.membership import Changes, MembershipEngine
from assay_server.reports import store, wire
from assay_server.reports.room import Room
from assay_server.reports.rooms import ReportRooms

log = logging.getLogger(__name__)

#: Changes arriving within this many seconds go out in one message.
COALESCE_SECONDS = 0.25
#: The start of every frame that carries a document update to a peer.
UPDATE_PREFIX = bytes([wire.SYNC, wire.SYNC_UPDATE])
#: The close code a room sends its peers when its report is deleted.
REPORT_DELETED = 4404

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RunSetSpec:
    """The fields of one report run set that the follow reads.

    ``filter`` and ``frozen`` decide its members. ``grouping``, ``sort`` and
    ``active`` are passed on as the document stores them, so that a page learns
    of an edit that changes how the run set is drawn once the server has
    applied it: the server draws a grid's figures from its own copy.
    """

    filter: str
    frozen: bool
    grouping: Any = None
    sort: Any = None
    active: bool = True

    def membership(self) -> tuple[str, bool]:
        """Return the fields that decide the run set's members."""
        return (self.filter, self.frozen)


#: Per panel-grid block id, its run sets by run-set id.
Grids = dict[str, dict[str, RunSetSpec]]


def read_grids(doc: Doc[Any]) -> Grids:
    """Return the run sets of every panel-grid block of a report document."""
    grids: Grids = {}
    for block in doc.get("blocks", type=Array).to_py() or []:
        if not isinstance(block, dict) or block.get("type") != "panel_grid":
            continue
        block_id = block.get("id")
        if not isinstance(block_id, str):
            continue
        specs: dict[str, RunSetSpec] = {}
        for run_set in block.get("run_sets") or []:
            if isinstance(run_set, dict) and isinstance(run_set.get("id"), str):
                text = run_set.get("filter")
                specs[run_set["id"]] = RunSetSpec(
                    text if isinstance(text, str) else "",
                    run_set.get("frozen") is True,
                    run_set.get("grouping"),
                    run_set.get("sort"),
                    run_set.get("active") is not False,
                )
        grids[block_id] = specs
    return grids


def memberships(grids: Grids) -> dict[str, dict[str, tuple[str, bool]]]:
    """Return the fields of every run set in ``grids`` that decide its members."""
    return {
        block_id: {runset_id: spec.membership() for runset_id, spec in specs.items()}
        for block_id, specs in grids.items()
    }


def watch_key(block_id: str, runset_id: str) -> str:
    """Return the key under which the engine watches one run set of one grid."""
    return json.dumps([block_id, runset_id])


class ReportFollow:
    """The report one live socket follows, if any, and what was last sent about it.

    Arguments:
        engine: the instance's membership engine.
        rooms: the instance's open reports.
        database: for the check that a report belongs to the project.
        project_id, project: the socket's project.
        send: sends one message on the socket.
        connection_id: the live socket's id, for logs.
        max_filter_length: the maximum length of a filter text.
        scoped: True for a share link, whose runs are narrowed to the fields
            its report draws.
    """

    #: A follower never edits the document, so the room treats it as a viewer.
    read_only = True

    def __init__(
        self,
        engine: MembershipEngine,
        rooms: ReportRooms,
        database: Database,
        project_id: int,
        project: str,
        send: Send,
        connection_id: str,
        max_filter_length: int,
        scoped: bool,
    ) -> None:
        self.engine = engine
        self.rooms = rooms
        self.database = database
        self.project_id = project_id
        self.project = project
        self.send_message = send
        self.id = f"follow-{connection_id}"
        self.user_name = ""
        self.max_filter_length = max_filter_length
        self.scoped = scoped
        self.report_id: str | None = None
        self.room: Room | None = None
        self.resources = contextlib.AsyncExitStack()
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self._reset()

    def _reset(self) -> None:
        self.grids: Grids = {}
        self.errors: dict[str, dict[str, Any]] = {}
        #: Per frozen run set, the filter it was frozen with and its members then.
        self.frozen: dict[str, tuple[str, list[str]]] = {}
        self.scope: access.ReportScope | None = None
        #: Per run id, the row last sent, so that only changed rows are sent again.
        self.sent: dict[str, dict[str, Any]] = {}
        self.last_grids: dict[str, Any] | None = None
        self.document_changed = True
        self.changed_runs: set[str] = set()

    # -- the socket's side --------------------------------------------------

    async def start(self, report_id: str) -> None:
        """Follow ``report_id`` in place of any report followed before; raise ``NotFound``."""
        await self.stop()
        async with self.database.reading() as connection:
            await store.find_report(connection, report_id, self.project_id)
        room = await self.resources.enter_async_context(self.rooms.use(report_id))
        room.join(self)
        self.resources.callback(room.leave, self)
        self.resources.callback(self.engine.unwatch, self)
        self.report_id = report_id
        self.room = room
        self._reset()
        await self._refresh(full=True)
        self.task = asyncio.create_task(self._refresh_forever())
        log.info("live connection %s follows report %s", self.id, report_id)

    async def stop(self) -> None:
        """Stop following: leave the room, stop watching and forget what was sent."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        await self.resources.aclose()
        if self.report_id is not None:
            log.info("live connection %s stopped following report %s", self.id, self.report_id)
        self.report_id = None
        self.room = None

    # -- the room's side (the Peer protocol) --------------------------------

    def send(self, frame: bytes) -> None:
        if frame.startswith(UPDATE_PREFIX):
            self.document_changed = True
            self.wake.set()

    def close(self, code: int, reason: str) -> None:
        # The room calls this when it is deleted or the server shuts down; the
        # live socket itself stays open.
        report_id = self.report_id
        self.room = None
        asyncio.get_running_loop().create_task(self._room_closed(report_id, code, reason))

    # -- the engine's side (the Watcher protocol) ---------------------------

    def deliver(self, changes: Changes, event_time: float) -> None:
        self.wake.set()

    def run_changed(self, run_id: str) -> None:
        if run_id in self.sent:
            self.changed_runs.add(run_id)
            self.wake.set()

    # -- work ---------------------------------------------------------------

    async def _room_closed(self, report_id: str | None, code: int, reason: str) -> None:
        await self.stop()
        if code == REPORT_DELETED:
            await self.send_message(
                {
                    "type": "error",
                    "code": "report_not_found",
                    "message": f"report {report_id!r} was deleted; it is no longer followed",
                }
            )
        log.info("live connection %s: followed report %s closed (%s)", self.id, report_id, reason)

    async def _refresh_forever(self) -> None:
        while True:
            await self.wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)
            self.wake.clear()
            try:
                await self._refresh(full=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Everything is read again on the next try.
                log.exception(
                    "live connection %s: refreshing report %s failed; retrying in 1 s",
                    self.id,
                    self.report_id,
                )
                self.document_changed = True
                await asyncio.sleep(1)
                self.wake.set()

    async def _refresh(self, full: bool) -> None:
        room = self.room
        if room is None:
            return
        if self.document_changed:
            self.document_changed = False
            await self._read_document(room.doc)
        changed, self.changed_runs = self.changed_runs, set()

        grids = self._grid_message()
        members = {
            run_id
            for specs in grids.values()
            for entry in specs.values()
            for run_id in entry["members"]
        }
        rows: dict[str, dict[str, Any]] = {}
        for run_id in sorted(members):
            if run_id in self.sent and run_id not in changed:
                continue
            row = self._row(run_id)
            if row is not None and row != self.sent.get(run_id):
                rows[run_id] = row
                self.sent[run_id] = row
        for run_id in set(self.sent) - members:
            del self.sent[run_id]

        if not full and not rows and grids == self.last_grids:
            return
        self.last_grids = grids
        await self.send_message(
            {
                "type": "report_runs",
                "report": self.report_id,
                "full": full,
                "grids": grids,
                "runs": rows,
            }
        )

    async def _read_document(self, doc: Doc[Any]) -> None:
        if self.scoped and self.report_id is not None:
            scope = access.report_scope(self.report_id, doc)
            if self.scope is not None and scope.fields != self.scope.fields:
                # Rows were narrowed to the old fields, so every one is sent again.
                self.sent.clear()
            self.scope = scope
        grids = read_grids(doc)
        if grids == self.grids:
            return
        if memberships(grids) == memberships(self.grids):
            # Only a grouping, a sort or whether a run set is drawn changed, so
            # the members stay. The next message carries the new values.
            self.grids = grids
            return
        nodes: dict[str, filters.Node | None] = {}
        self.errors = {}
        for block_id, specs in grids.items():
            for runset_id, spec in specs.items():
                key = watch_key(block_id, runset_id)
                try:
                    nodes[key] = self._parse(spec.filter)
                except filters.FilterError as exc:
                    self.errors[key] = {
                        "code": exc.code,
                        "message": f"invalid filter: {exc}",
                        "column": exc.column,
                    }
        if nodes:
            members = await self.engine.watch(self, self.project_id, nodes)
        else:
            self.engine.unwatch(self)
            members = {}
        self.grids = grids
        frozen: dict[str, tuple[str, list[str]]] = {}
        for block_id, specs in grids.items():
            for runset_id, spec in specs.items():
                key = watch_key(block_id, runset_id)
                if not spec.frozen:
                    continue
                earlier = self.frozen.get(key)
                if earlier is not None and earlier[0] == spec.filter:
                    frozen[key] = earlier
                else:
                    frozen[key] = (spec.filter, members.get(key, []))
        self.frozen = frozen

    def _parse(self, text: str) -> filters.Node | None:
        if not text.strip():
            return None
        return filters.parse_filter(text, self.max_filter_length)

    def _grid_message(self) -> dict[str, Any]:
        current = self.engine.members(self, self.project_id)
        grids: dict[str, Any] = {}
        for block_id, specs in self.grids.items():
            entries: dict[str, Any] = {}
            for runset_id, spec in specs.items():
                key = watch_key(block_id, runset_id)
                frozen_at = self.frozen.get(key)
                entries[runset_id] = {
                    "filter": spec.filter,
                    "frozen": spec.frozen,
                    "members": frozen_at[1] if frozen_at is not None else current.get(key, []),
                    "error": self.errors.get(key),
                    "grouping": spec.grouping,
                    "sort": spec.sort,
                    "active": spec.active,
                }
            grids[block_id] = entries
        return grids

    def _row(self, run_id: str) -> dict[str, Any] | None:
        run = self.engine.run(self.project_id, run_id)
        if run is None:
            return None
        row = {**run, "project": self.project}
        return self.scope.narrow_run(row) if self.scoped and self.scope is not None else row
