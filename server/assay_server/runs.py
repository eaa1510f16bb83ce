"""Projects and runs: creation, resume, state changes and reads."""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assay.protocol import tag_floats, untag_floats
from assay_server import access, filters, schema
from assay_server.auth import User
from assay_server.errors import BadRequest, Conflict, Forbidden, NotFound
from assay_server.sql import insert_or_ignore

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CRASHED = "crashed"
STATES = (RUNNING, FINISHED, FAILED, CRASHED)


@dataclass(frozen=True)
class RunSpec:
    """The run an SDK's ``hello`` describes, and how it may be resumed."""

    project: str
    run_id: str
    name: str | None
    config: dict[str, Any]
    tags: list[str]
    group: str | None
    notes: str | None
    resume: str
    session: int
    #: The original start time, when an importer recreates a past run.
    created_at: float | None = None


@dataclass(frozen=True)
class AttachedRun:
    pk: int
    project_id: int
    project: str
    run_id: str
    created: bool
    previous_state: str | None
    next_step: int
    #: The state after the hello: running, or the ended state it kept.
    state: str = RUNNING
    #: Of a resumed run, its stored summary: the last value of each metric and
    #: the keys set through ``run.summary``.
    summary: dict[str, Any] = field(default_factory=dict)


async def ensure_project(
    connection: AsyncConnection, name: str, owner_id: int, is_sqlite: bool
) -> int:
    await connection.execute(
        insert_or_ignore(schema.projects, is_sqlite).values(
            name=name, owner_id=owner_id, created_at=time.time()
        )
    )
    project_id = await connection.scalar(
        select(schema.projects.c.id).where(schema.projects.c.name == name)
    )
    assert project_id is not None
    return int(project_id)


async def check_can_log(
    connection: AsyncConnection, user: User, project_id: int, project: str
) -> None:
    """Raise ``Forbidden`` unless ``user`` may add runs to the project."""
    row = (
        await connection.execute(
            select(schema.projects.c.owner_id, schema.projects.c.visibility).where(
                schema.projects.c.id == project_id
            )
        )
    ).one()
    role = await access.role_in_project(
        connection, user, project_id, row.owner_id, row.visibility == "public"
    )
    if role is None or role < access.Role.EDITOR:
        raise Forbidden(
            f"user {user.name!r} may not log runs to project {project!r}; a project admin "
            "can add them as an editor, or log to a project of your own",
            code="project_forbidden",
        )


async def attach_run(
    connection: AsyncConnection, spec: RunSpec, user: User, is_sqlite: bool
) -> AttachedRun:
    """Create the run of ``spec`` or resume it, as its ``resume`` mode allows.

    A new project is created with ``user`` as its owner; an existing one needs
    the editor role.
    """
    project_id = await ensure_project(connection, spec.project, user.id, is_sqlite)
    await check_can_log(connection, user, project_id, spec.project)
    query = select(schema.runs).where(
        schema.runs.c.project_id == project_id, schema.runs.c.run_id == spec.run_id
    )
    if not is_sqlite:
        query = query.with_for_update()
    existing = (await connection.execute(query)).first()
    now = time.time()
    if existing is None:
        if spec.resume == "must":
            raise NotFound(
                f"run {spec.run_id!r} does not exist in project {spec.project!r}; "
                "resume='must' only continues an existing run, use resume='allow' to create it",
                code="run_not_found",
            )
        result = await connection.execute(
            schema.runs.insert().values(
                project_id=project_id,
                run_id=spec.run_id,
                name=spec.name or spec.run_id,
                state=RUNNING,
                config=tag_floats(spec.config),
                summary={},
                tags=spec.tags,
                group_name=spec.group,
                notes=spec.notes,
                created_at=now if spec.created_at is None else spec.created_at,
                heartbeat_at=now,
                next_step=0,
                session=spec.session,
            )
        )
        pk = int(result.inserted_primary_key[0])  # type: ignore[index]
        return AttachedRun(pk, project_id, spec.project, spec.run_id, True, None, 0)

    if spec.resume == "never" and existing.session != spec.session:
        raise Conflict(
            f"run {spec.run_id!r} already exists in project {spec.project!r}; "
            "pass resume='allow' or resume='must' to continue it, or choose another id",
            code="run_exists",
        )
    # A session that has already finished the run sends a hello only from a
    # connection its SDK gave up on, or to resend a finish whose reply it lost.
    # Reviving the run then would undo the finish.
    ended = existing.session == spec.session and existing.state in (FINISHED, FAILED)
    if not ended:
        await _resume(connection, existing, spec, now)
    logged = (await _summaries(connection, [existing.pk])).get(existing.pk, {})
    return AttachedRun(
        existing.pk,
        project_id,
        spec.project,
        spec.run_id,
        False,
        existing.state,
        int(existing.next_step),
        existing.state if ended else RUNNING,
        {**logged, **untag_floats(existing.summary)},
    )


async def _resume(
    connection: AsyncConnection, existing: Row[Any], spec: RunSpec, now: float
) -> None:
    """Set an existing run running again, merging the hello's config and metadata."""
    changes: dict[str, Any] = {"state": RUNNING, "heartbeat_at": now, "session": spec.session}
    changes.update(
        finished_at=None,
        exit_code=None,
        config=tag_floats({**untag_floats(existing.config), **spec.config}),
    )
    if spec.name:
        changes["name"] = spec.name
    if spec.tags:
        changes["tags"] = spec.tags
    if spec.group is not None:
        changes["group_name"] = spec.group
    if spec.notes is not None:
        changes["notes"] = spec.notes
    await connection.execute(
        update(schema.runs).where(schema.runs.c.pk == existing.pk).values(**changes)
    )


# Built once: ingest runs them for every group of batches, and a statement
# built per call left its bound parameters as cyclic garbage, 700 to 900
# objects between two collections under bench/load.py.
_REVIVE = (
    update(schema.runs)
    .where(
        schema.runs.c.pk.in_(bindparam("run_pks", expanding=True)),
        schema.runs.c.state == CRASHED,
    )
    .values(state=RUNNING)
    .returning(schema.runs.c.pk)
)
_HEARTBEAT = (
    update(schema.runs)
    .where(schema.runs.c.pk.in_(bindparam("run_pks", expanding=True)))
    .values(heartbeat_at=bindparam("now"))
)


def touch_many(connection: Connection, run_pks: Sequence[int]) -> set[int]:
    """Record a heartbeat for each run; return the runs this revives from crashed."""
    if not run_pks:
        return set()
    pks = {"run_pks": list(run_pks)}
    revived_pks = set(connection.execute(_REVIVE, pks).scalars())
    connection.execute(_HEARTBEAT, {**pks, "now": time.time()})
    return revived_pks


async def finish_run(
    connection: AsyncConnection, run_pk: int, exit_code: int, finished_at: float | None = None
) -> str:
    state = FINISHED if exit_code == 0 else FAILED
    now = time.time() if finished_at is None else finished_at
    await connection.execute(
        update(schema.runs)
        .where(schema.runs.c.pk == run_pk)
        .values(state=state, exit_code=exit_code, finished_at=now, heartbeat_at=now)
    )
    return state


async def mark_crashed(connection: AsyncConnection, timeout: float) -> list[Row[Any]]:
    """Mark running runs without a heartbeat for ``timeout`` seconds as crashed.

    The UPDATE selects and changes the rows in one statement, so when several
    instances run it at once each run is reported by exactly one of them.
    """
    now = time.time()
    result = await connection.execute(
        update(schema.runs)
        .where(
            schema.runs.c.state == RUNNING,
            schema.runs.c.heartbeat_at < now - timeout,
        )
        .values(state=CRASHED, finished_at=now)
        .returning(schema.runs.c.project_id, schema.runs.c.run_id)
    )
    return list(result.all())


def merge_documents(
    connection: Connection,
    run_pk: int,
    config: dict[str, Any] | None,
    summary: dict[str, Any] | None,
) -> None:
    """Apply ``config`` and ``summary`` updates key by key, as ``dict.update`` does."""
    row = connection.execute(
        select(schema.runs.c.config, schema.runs.c.summary).where(schema.runs.c.pk == run_pk)
    ).one()
    values: dict[str, Any] = {}
    if config:
        values["config"] = {**row.config, **tag_floats(config)}
    if summary:
        values["summary"] = {**row.summary, **tag_floats(summary)}
    if values:
        connection.execute(update(schema.runs).where(schema.runs.c.pk == run_pk).values(**values))


async def list_projects(connection: AsyncConnection, user: User | None) -> list[dict[str, Any]]:
    """List the projects ``user`` may view (anonymous: the public ones), by name."""
    run_count = (
        select(func.count())
        .where(schema.runs.c.project_id == schema.projects.c.id)
        .scalar_subquery()
    )
    query = select(
        schema.projects.c.name,
        schema.projects.c.created_at,
        schema.projects.c.visibility,
        run_count.label("runs"),
    ).order_by(schema.projects.c.name)
    if user is None:
        query = query.where(schema.projects.c.visibility == "public")
    elif not user.is_admin:
        query = query.where(access.visible_to(user.id))
    rows = await connection.execute(query)
    return [
        {
            "name": row.name,
            "created_at": row.created_at,
            "visibility": row.visibility,
            "run_count": row.runs,
        }
        for row in rows
    ]


async def project_id(connection: AsyncConnection, name: str) -> int:
    found = await connection.scalar(
        select(schema.projects.c.id).where(schema.projects.c.name == name)
    )
    if found is None:
        raise NotFound(f"project {name!r} does not exist", code="project_not_found")
    return int(found)


async def scope_run_ids(
    connection: AsyncConnection, project_id: int, texts: Iterable[str], max_filter_length: int
) -> set[str]:
    """Return the ids of the project's runs that any of the filter ``texts`` selects.

    A text that does not parse selects nothing, as its run set draws nothing.
    """
    found: set[str] = set()
    for text in texts:
        try:
            run_filter = filters.parse_filter(text, max_filter_length) if text.strip() else None
        except filters.FilterError:
            continue
        query = select(schema.runs.c.run_id).where(schema.runs.c.project_id == project_id)
        if run_filter is not None:
            await filters.prepare_connection(connection, run_filter)
            query = query.where(filters.to_sql(run_filter, connection.dialect.name))
        found.update(row.run_id for row in await connection.execute(query))
    return found


async def list_runs(
    connection: AsyncConnection,
    project: str,
    limit: int,
    offset: int,
    run_filter: filters.Node | None = None,
) -> list[dict[str, Any]]:
    """Return a page of the project's runs, newest first; only those ``run_filter`` selects."""
    found, _ = await list_runs_page(connection, project, limit, offset, run_filter)
    return found


async def list_runs_page(
    connection: AsyncConnection,
    project: str,
    limit: int,
    offset: int,
    run_filter: filters.Node | None = None,
    after: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Return a page of runs, newest first, and the cursor of the next page or None.

    ``after`` is a cursor from an earlier page: the page starts after the run
    it names, so runs created between two requests shift nothing.
    """
    pid = await project_id(connection, project)
    query = select(schema.runs).where(schema.runs.c.project_id == pid)
    if after is not None:
        created_at, pk = decode_cursor(after)
        query = query.where(
            (schema.runs.c.created_at < created_at)
            | ((schema.runs.c.created_at == created_at) & (schema.runs.c.pk < pk))
        )
    if run_filter is not None:
        await filters.prepare_connection(connection, run_filter)
        query = query.where(filters.to_sql(run_filter, connection.dialect.name))
    rows = (
        await connection.execute(
            query.order_by(schema.runs.c.created_at.desc(), schema.runs.c.pk.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    summaries = await _summaries(connection, [row.pk for row in rows])
    found = [run_dict(project, row, summaries.get(row.pk, {})) for row in rows]
    # A full page may have more runs after it; a short one is the last.
    following = encode_cursor(rows[-1].created_at, rows[-1].pk) if len(rows) == limit else None
    return found, following


def encode_cursor(created_at: float, pk: int) -> str:
    """Return the opaque cursor of the page that starts after the run ``(created_at, pk)``."""
    text = f"{float(created_at)!r}/{pk}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """Return the ``(created_at, pk)`` a cursor names; raise ``BadRequest`` for any other text."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_text, pk_text = base64.urlsafe_b64decode(padded).decode().split("/")
        created_at, pk = float(created_text), int(pk_text)
    except ValueError:
        created_at, pk = math.nan, -1
    if not math.isfinite(created_at) or not 0 <= pk < 2**63:
        raise BadRequest(
            f"invalid cursor {cursor!r:.60}; pass the 'next' value of the previous page "
            "unchanged, or leave the cursor out to start from the newest run",
            code="invalid_cursor",
        )
    return created_at, pk


async def get_run(connection: AsyncConnection, project: str, run_id: str) -> dict[str, Any]:
    row = await run_row(connection, project, run_id)
    summaries = await _summaries(connection, [row.pk])
    return run_dict(project, row, summaries.get(row.pk, {}))


async def run_row(connection: AsyncConnection, project: str, run_id: str) -> Row[Any]:
    pid = await project_id(connection, project)
    row = (
        await connection.execute(
            select(schema.runs).where(
                and_(schema.runs.c.project_id == pid, schema.runs.c.run_id == run_id)
            )
        )
    ).first()
    if row is None:
        raise NotFound(
            f"run {run_id!r} does not exist in project {project!r}", code="run_not_found"
        )
    return row


async def metric_stats(connection: AsyncConnection, run_pk: int) -> dict[str, dict[str, Any]]:
    """Per-metric count, last, min, max and whether NaN, infinity or null was logged."""
    rows = await connection.execute(
        select(schema.metrics).where(schema.metrics.c.run_pk == run_pk).order_by("key")
    )
    return {
        row.key: {
            "count": row.count,
            "last_step": row.last_step,
            "last": sql_value(row.last_value, row.last_kind),
            "min": row.min_value,
            "max": row.max_value,
            "has_nan": row.has_nan,
            "has_inf": row.has_inf,
            "has_null": row.has_null,
        }
        for row in rows
    }


async def _summaries(connection: AsyncConnection, run_pks: list[int]) -> dict[int, dict[str, Any]]:
    if not run_pks:
        return {}
    rows = await connection.execute(
        select(
            schema.metrics.c.run_pk,
            schema.metrics.c.key,
            schema.metrics.c.last_value,
            schema.metrics.c.last_kind,
        ).where(schema.metrics.c.run_pk.in_(run_pks))
    )
    summaries: dict[int, dict[str, Any]] = {}
    for row in rows:
        summaries.setdefault(row.run_pk, {})[row.key] = sql_value(row.last_value, row.last_kind)
    return summaries


def sql_value(value: float | None, kind: int | None) -> float | int | bool | None:
    if kind == schema.SQL_KIND_NAN:
        return float("nan")
    if kind == schema.SQL_KIND_NULL or value is None:
        return None
    if kind == schema.SQL_KIND_INT:
        return int(value)
    if kind == schema.SQL_KIND_BOOL:
        return value != 0
    return float(value)


def run_dict(project: str, row: Row[Any], logged: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.run_id,
        "project": project,
        "name": row.name,
        "state": row.state,
        "config": untag_floats(row.config),
        # Values set through run.summary take precedence over the last logged ones.
        "summary": {**logged, **untag_floats(row.summary)},
        "tags": list(row.tags),
        "group": row.group_name,
        "notes": row.notes,
        "created_at": row.created_at,
        "heartbeat_at": row.heartbeat_at,
        "finished_at": row.finished_at,
        "exit_code": row.exit_code,
        "next_step": row.next_step,
    }
