"""Live run-set membership: which runs each watched filter selects, updated on run events.

Each server instance runs one ``MembershipEngine``. For every project that a
local browser watches, it keeps the project's runs in memory (``run_cache``)
and one ``WatchedFilter`` per distinct filter, shared by every socket and run
set that watch the same filter. A reader task follows the watched projects'
event streams. On each event it updates the run, evaluates the run against
each distinct filter once, with the filter compiled by
``filters.compile_predicate``, and hands the runs that entered or left to
the watchers of the filters whose members changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgpack

from assay_server import filters, metrics, run_cache
from assay_server.bus import Bus, StreamEntry
from assay_server.database import Database
from assay_server.filters.tree import SummaryField, conditions

log = logging.getLogger(__name__)

BLOCK_MS = 200
#: Events that change the row fields ``run_cache.load_run`` reads.
RELOADED_EVENTS = ("run.created", "run.state")

#: Per run set id, the run ids that entered and left.
Changes = dict[str, dict[str, list[str]]]


class Watcher(Protocol):
    """A socket's side of the engine: receives membership changes without blocking."""

    def deliver(self, changes: Changes, event_time: float) -> None: ...

    def run_changed(self, run_id: str) -> None:
        """Note that an event changed the run, whether or not its memberships changed."""
        ...


@dataclass(eq=False)
class WatchedFilter:
    """One distinct filter of a project, its current members and who watches it."""

    node: filters.Node | None
    members: set[str] = field(default_factory=set)
    #: Per watcher, the run set ids under which it watches this filter.
    watchers: dict[Watcher, set[str]] = field(default_factory=dict)

    @functools.cached_property
    def statistic_metrics(self) -> frozenset[str]:
        """Return the metrics whose statistics (``summary.loss.min``) the filter reads."""
        if self.node is None:
            return frozenset()
        return frozenset(
            found.field.metric
            for found in conditions(self.node)
            if isinstance(found.field, SummaryField) and found.field.statistic is not None
        )

    @functools.cached_property
    def predicate(self) -> filters.predicate.Predicate | None:
        """Return the filter compiled once, as every run event evaluates it again."""
        return None if self.node is None else filters.compile_predicate(self.node)

    def selects(self, cached: run_cache.CachedRun) -> bool:
        return self.predicate is None or self.predicate(cached.run, cached.stats)


@dataclass(eq=False)
class ProjectMembership:
    """The runs of one project and its watched filters, keyed by canonical filter text."""

    project_id: int
    stream: str
    cursor: str
    runs: dict[str, run_cache.CachedRun]
    filters: dict[str, WatchedFilter] = field(default_factory=dict)


def filter_key(node: filters.Node | None) -> str:
    """Return the canonical text of ``node``, so equal filters share one evaluation."""
    return "" if node is None else filters.format_filter(node)


class MembershipEngine:
    def __init__(self, bus: Bus, database: Database) -> None:
        self.bus = bus
        self.database = database
        self.projects: dict[int, ProjectMembership] = {}
        self.lock = asyncio.Lock()
        self.changed = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def watch(
        self, watcher: Watcher, project_id: int, runsets: dict[str, filters.Node | None]
    ) -> dict[str, list[str]]:
        """Replace what ``watcher`` watches in the project; return each run set's members."""
        self.unwatch(watcher)
        project = await self._project(project_id)
        members: dict[str, list[str]] = {}
        for runset_id, node in runsets.items():
            watched = self._watched_filter(project, node)
            watched.watchers.setdefault(watcher, set()).add(runset_id)
            members[runset_id] = sorted(watched.members)
        self._start_reader()
        self.changed.set()
        return members

    def members(self, watcher: Watcher, project_id: int) -> dict[str, list[str]]:
        """Return the current members of every run set ``watcher`` watches in the project."""
        project = self.projects.get(project_id)
        found: dict[str, list[str]] = {}
        for watched in project.filters.values() if project else ():
            for runset_id in watched.watchers.get(watcher, ()):
                found[runset_id] = sorted(watched.members)
        return found

    def run(self, project_id: int, run_id: str) -> dict[str, Any] | None:
        """Return the run from the engine's copy, with ``project`` left empty, or None."""
        project = self.projects.get(project_id)
        cached = project.runs.get(run_id) if project is not None else None
        return cached.run if cached is not None else None

    def unwatch(self, watcher: Watcher) -> None:
        for project_id, project in list(self.projects.items()):
            for key, watched in list(project.filters.items()):
                watched.watchers.pop(watcher, None)
                if not watched.watchers:
                    del project.filters[key]
            if not project.filters:
                # The runs are loaded again when a socket watches the project next.
                del self.projects[project_id]

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

    async def _project(self, project_id: int) -> ProjectMembership:
        async with self.lock:
            project = self.projects.get(project_id)
            if project is not None:
                return project
            stream = self.bus.event_stream(project_id)
            # Events after this cursor are applied again on top of the load,
            # which is harmless: each one sets values rather than adding to them.
            cursor = await self.bus.last_id(stream)
            started = time.perf_counter()
            async with self.database.reading() as connection:
                loaded = await run_cache.load_project(connection, project_id)
            log.info(
                "loaded %s runs of project %s for live run sets in %.3f s",
                len(loaded),
                project_id,
                time.perf_counter() - started,
            )
            project = ProjectMembership(project_id, stream, cursor, loaded)
            self.projects[project_id] = project
            return project

    def _watched_filter(
        self, project: ProjectMembership, node: filters.Node | None
    ) -> WatchedFilter:
        key = filter_key(node)
        watched = project.filters.get(key)
        if watched is None:
            watched = WatchedFilter(node)
            metrics.RUNSET_EVALUATIONS.labels("initial").inc()
            watched.members = {
                run_id for run_id, cached in project.runs.items() if watched.selects(cached)
            }
            project.filters[key] = watched
        return watched

    def _start_reader(self) -> None:
        if self.reader is None or self.reader.done():
            self.reader = asyncio.create_task(self._read_forever())

    async def _read_forever(self) -> None:
        while True:
            if not self.projects:
                self.changed.clear()
                await self.changed.wait()
                continue
            cursors = {project.stream: project.cursor for project in self.projects.values()}
            try:
                entries = await self.bus.read_many(cursors, BLOCK_MS)
                for entry in entries:
                    await self.apply(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("updating live run-set membership failed; retrying in 1 s")
                await asyncio.sleep(1)

    async def apply(self, entry: StreamEntry) -> None:
        """Apply one event-stream entry and deliver the membership changes it causes."""
        stream, entry_id, fields = entry
        project = next((p for p in self.projects.values() if p.stream == stream), None)
        if project is None:
            return
        project.cursor = entry_id
        run_id = _text(fields["run_id"])
        cached = await self._updated_run(project, _text(fields["type"]), run_id, fields)
        if cached is None or self.projects.get(project.project_id) is not project:
            return
        self._evaluate(project, run_id, cached, float(fields["time"]))

    async def _updated_run(
        self, project: ProjectMembership, kind: str, run_id: str, fields: dict[str, Any]
    ) -> run_cache.CachedRun | None:
        cached = project.runs.get(run_id)
        if kind in RELOADED_EVENTS or cached is None:
            async with self.database.reading() as connection:
                cached = await run_cache.load_run(connection, project.project_id, run_id)
            if cached is not None:
                project.runs[run_id] = cached
            return cached
        data = msgpack.unpackb(fields["data"], raw=False)
        if kind == "run.config":
            run_cache.merge_config(cached, data.get("config") or {})
        elif kind == "run.summary":
            summary = data.get("summary") or {}
            run_cache.merge_summary(cached, summary)
            # Statistics are read again only when a watched filter reads those of a
            # metric in this event.
            if any(
                not watched.statistic_metrics.isdisjoint(summary)
                for watched in project.filters.values()
            ):
                async with self.database.reading() as connection:
                    cached.stats = await run_cache.load_stats(connection, cached.pk)
        return cached

    def _evaluate(
        self,
        project: ProjectMembership,
        run_id: str,
        cached: run_cache.CachedRun,
        event_time: float,
    ) -> None:
        outgoing: dict[Watcher, Changes] = {}
        metrics.RUNSET_EVALUATIONS.labels("incremental").inc(len(project.filters))
        for watched in project.filters.values():
            selected = watched.selects(cached)
            if selected == (run_id in watched.members):
                continue
            change = "entered" if selected else "left"
            if selected:
                watched.members.add(run_id)
            else:
                watched.members.discard(run_id)
            for watcher, runset_ids in watched.watchers.items():
                changes = outgoing.setdefault(watcher, {})
                for runset_id in runset_ids:
                    changes[runset_id] = {"entered": [], "left": [], change: [run_id]}
        for watcher, changes in outgoing.items():
            watcher.deliver(changes, event_time)
        for watcher in {w for watched in project.filters.values() for w in watched.watchers}:
            watcher.run_changed(run_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
