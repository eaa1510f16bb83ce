"""Run sets stored per project: one list, in order, shared by every user of the project.

Each row keeps the run-set document of ``runset_shape`` in ``spec`` (all
fields but ``id``, ``name`` and ``position``), so the stored shape is the one
the API sends. The table is created by migration ``0004_runsets``.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import filters, schema
from assay_server.errors import Conflict, NotFound
from assay_server.runset_shape import MAX_NAME_LENGTH, default_runset

runsets = Table(
    "runsets",
    schema.metadata,
    Column("pk", schema.Id, primary_key=True, autoincrement=True),
    Column("project_id", schema.Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("runset_id", String(32), nullable=False),
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("position", Integer, nullable=False),
    Column("spec", schema.Document, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("project_id", "runset_id", name="uq_runsets_project_id_runset_id"),
    UniqueConstraint("project_id", "name", name="uq_runsets_project_id_name"),
)

#: Run sets per project; the sidebar shows them all.
MAX_RUNSETS = 100


def runset_document(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.runset_id, "name": row.name, "position": row.position, **row.spec}


async def list_runsets(connection: AsyncConnection, project_id: int) -> list[dict[str, Any]]:
    rows = await connection.execute(
        select(runsets).where(runsets.c.project_id == project_id).order_by(runsets.c.position)
    )
    return [runset_document(row) for row in rows]


async def get_runset(connection: AsyncConnection, project_id: int, runset_id: str) -> Row[Any]:
    row = (
        await connection.execute(
            select(runsets).where(
                runsets.c.project_id == project_id, runsets.c.runset_id == runset_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(
            f"run set {runset_id!r:.40} does not exist in this project; "
            "list them with GET …/runsets",
            code="runset_not_found",
        )
    return row


async def create_runset(
    connection: AsyncConnection, project_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Insert a run set from ``changes`` over the defaults, at the end of the list."""
    count = await connection.scalar(select(func.count()).where(runsets.c.project_id == project_id))
    if count is not None and count >= MAX_RUNSETS:
        raise Conflict(
            f"the project already has {MAX_RUNSETS} run sets, the maximum; delete one first",
            code="too_many_runsets",
        )
    position = await connection.scalar(
        select(func.coalesce(func.max(runsets.c.position) + 1, 0)).where(
            runsets.c.project_id == project_id
        )
    )
    document = {**default_runset(changes["name"], int(position or 0)), **changes}
    await _check_name_free(connection, project_id, document["name"], None)
    now = time.time()
    runset_id = secrets.token_hex(6)
    await connection.execute(
        runsets.insert().values(
            project_id=project_id,
            runset_id=runset_id,
            name=document.pop("name"),
            position=int(position or 0),
            spec=document,
            created_at=now,
            updated_at=now,
        )
    )
    return runset_document(await get_runset(connection, project_id, runset_id))


async def update_runset(
    connection: AsyncConnection,
    project_id: int,
    runset_id: str,
    changes: dict[str, Any],
    position: int | None = None,
) -> dict[str, Any]:
    """Apply ``changes`` (checked editable fields) and move the run set to ``position``."""
    row = await get_runset(connection, project_id, runset_id)
    values: dict[str, Any] = {"updated_at": time.time()}
    spec = dict(row.spec)
    for field, value in changes.items():
        if field == "name":
            await _check_name_free(connection, project_id, value, row.pk)
            values["name"] = value
        else:
            spec[field] = value
    values["spec"] = spec
    await connection.execute(update(runsets).where(runsets.c.pk == row.pk).values(**values))
    if position is not None:
        await _move(connection, project_id, row.pk, position)
    return runset_document(await get_runset(connection, project_id, runset_id))


async def delete_runset(connection: AsyncConnection, project_id: int, runset_id: str) -> None:
    row = await get_runset(connection, project_id, runset_id)
    await connection.execute(delete(runsets).where(runsets.c.pk == row.pk))
    await _renumber(connection, project_id, [])


async def clone_runset(
    connection: AsyncConnection, project_id: int, runset_id: str
) -> dict[str, Any]:
    """Copy a run set to the end of the list as "NAME (copy)", or "NAME (copy 2)" and so on."""
    row = await get_runset(connection, project_id, runset_id)
    taken = set(
        await connection.scalars(select(runsets.c.name).where(runsets.c.project_id == project_id))
    )
    name = copy_name(row.name, taken)
    return await create_runset(connection, project_id, {**row.spec, "name": name})


def parse_stored_filter(text: str) -> filters.Node | None:
    """Parse a stored filter, which passed ``check_filter`` when saved; None selects every run.

    No length limit applies, so lowering ``ASSAY_MAX_FILTER_LENGTH`` keeps stored
    run sets working.
    """
    if not text.strip():
        return None
    return filters.parse_filter(text, max(len(text), 1))


def copy_name(name: str, taken: set[str]) -> str:
    """Return "NAME (copy)", numbered when taken, cut to fit ``MAX_NAME_LENGTH``."""
    number = 1
    while True:
        suffix = " (copy)" if number == 1 else f" (copy {number})"
        candidate = name[: MAX_NAME_LENGTH - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def frozen_filter(text: str, now: float) -> str:
    """Return ``text`` narrowed to runs created at or before ``now``, in the filter language.

    The time is written in UTC to the millisecond, rounded up, so every run
    created before ``now`` stays in.
    """
    moment = datetime.fromtimestamp(math.ceil(now * 1000) / 1000, UTC)
    condition = (
        f"created_at <= {moment.strftime('%Y-%m-%dT%H:%M:%S')}.{moment.microsecond // 1000:03d}Z"
    )
    if not text.strip():
        return condition
    return f"({text}) and {condition}"


async def _check_name_free(
    connection: AsyncConnection, project_id: int, name: str, own_pk: int | None
) -> None:
    found = await connection.scalar(
        select(runsets.c.pk).where(runsets.c.project_id == project_id, runsets.c.name == name)
    )
    if found is not None and found != own_pk:
        raise Conflict(
            f"a run set named {name!r:.60} already exists in this project; choose another name",
            code="runset_name_taken",
        )


async def _move(connection: AsyncConnection, project_id: int, pk: int, position: int) -> None:
    order = list(
        await connection.scalars(
            select(runsets.c.pk)
            .where(runsets.c.project_id == project_id)
            .order_by(runsets.c.position)
        )
    )
    order.remove(pk)
    order.insert(max(0, min(position, len(order))), pk)
    await _renumber(connection, project_id, order)


async def _renumber(connection: AsyncConnection, project_id: int, order: list[int]) -> None:
    """Number the run sets 0, 1, … in ``order``, or in their stored order when it is empty."""
    if not order:
        order = list(
            await connection.scalars(
                select(runsets.c.pk)
                .where(runsets.c.project_id == project_id)
                .order_by(runsets.c.position)
            )
        )
    for position, pk in enumerate(order):
        await connection.execute(
            update(runsets).where(runsets.c.pk == pk).values(position=position)
        )
