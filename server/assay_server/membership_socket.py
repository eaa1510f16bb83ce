"""The ``watch`` message of the live socket: run-set members, then their changes.

The browser sends ``{"type": "watch", "runsets": {RUNSET_ID: FILTER, ...}}``;
the server answers with ``members`` and then sends ``membership`` messages as
runs enter and leave the sets. ``docs/live.md`` describes the messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from assay_server import filters
from assay_server.membership import Changes, MembershipEngine
from assay_server.runsets import MAX_RUNSETS

log = logging.getLogger(__name__)

#: Change messages queued for one socket before it gets a fresh ``members`` instead.
QUEUE_LIMIT = 1000

Send = Callable[[dict[str, Any]], Awaitable[None]]


class MembershipWatch:
    """One live socket's watched run sets; ``deliver`` is called by the engine."""

    def __init__(
        self,
        engine: MembershipEngine,
        project_id: int,
        send: Send,
        connection_id: str,
        max_filter_length: int,
    ) -> None:
        self.engine = engine
        self.project_id = project_id
        self.send = send
        self.connection_id = connection_id
        self.max_filter_length = max_filter_length
        self.queue: asyncio.Queue[Changes | None] = asyncio.Queue()
        self.overflowed = False
        self.sender: asyncio.Task[None] | None = None

    async def handle(self, message: dict[str, Any]) -> None:
        """Handle a ``watch`` message: check its filters, then send the members."""
        runsets = message.get("runsets")
        if not isinstance(runsets, dict) or not _is_runset_map(runsets):
            await self.send(
                {
                    "type": "error",
                    "code": "invalid_watch",
                    "message": f"watch 'runsets' must map up to {MAX_RUNSETS} run-set ids "
                    'to filter texts, such as {"a1": "summary.loss is nan"}',
                }
            )
            return
        nodes, errors = self._parse(runsets)
        self._drain()
        members = await self.engine.watch(self, self.project_id, nodes)
        await self.send({"type": "members", "runsets": members, "errors": errors})
        log.debug("live connection %s watches %s run sets", self.connection_id, len(nodes))
        if self.sender is None:
            self.sender = asyncio.create_task(self._send_forever())

    def deliver(self, changes: Changes, event_time: float) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.overflowed = True
            self._drain()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(changes)

    def run_changed(self, run_id: str) -> None:
        # The browser reads changed runs from the run events it subscribes to.
        pass

    async def close(self) -> None:
        self.engine.unwatch(self)
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender

    def _parse(
        self, runsets: dict[str, str]
    ) -> tuple[dict[str, filters.Node | None], dict[str, dict[str, Any]]]:
        nodes: dict[str, filters.Node | None] = {}
        errors: dict[str, dict[str, Any]] = {}
        for runset_id, text in runsets.items():
            if not text.strip():
                nodes[runset_id] = None
                continue
            try:
                nodes[runset_id] = filters.parse_filter(text, self.max_filter_length)
            except filters.FilterError as exc:
                errors[runset_id] = {
                    "code": exc.code,
                    "message": f"invalid filter: {exc}",
                    "column": exc.column,
                }
        return nodes, errors

    def _drain(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    async def _send_forever(self) -> None:
        while True:
            changes = await self.queue.get()
            if changes is None:
                # The socket fell behind: one full member list replaces the backlog.
                self.overflowed = False
                members = self.engine.members(self, self.project_id)
                await self.send({"type": "members", "runsets": members, "errors": {}})
                continue
            await self.send({"type": "membership", "changes": changes})


def _is_runset_map(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_RUNSETS
        and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    )
