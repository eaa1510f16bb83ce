"""Reports in SQL: the report rows, the update log, snapshots and saved versions."""

from __future__ import annotations

import secrets
import time
from typing import Any

from pycrdt import Doc
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from assay_server import schema
from assay_server.database import Database
from assay_server.errors import NotFound
from assay_server.reports.document import read_title, set_title
from assay_server.reports.tables import (
    report_snapshots,
    report_updates,
    report_versions,
    reports,
)

#: A report's log is compacted into its snapshot when it reaches this many rows.
COMPACT_ROWS = 500
MAX_TITLE_LENGTH = 500


def new_report_id() -> str:
    """Generate a random report id, which is not guessable because it names the room in URLs."""
    return secrets.token_hex(8)


def report_json(row: Row[Any], project: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "project": project,
        "title": row.title,
        "created_by": row.creator,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _report_query() -> Any:
    return select(reports, schema.users.c.name.label("creator")).join(
        schema.users, schema.users.c.id == reports.c.created_by
    )


async def create_report(
    connection: AsyncConnection, project_id: int, user_id: int, title: str
) -> str:
    """Insert a report whose document holds ``title`` and no blocks; return its id."""
    report_id = new_report_id()
    now = time.time()
    await connection.execute(
        insert(reports).values(
            id=report_id,
            project_id=project_id,
            title=title,
            created_by=user_id,
            created_at=now,
            updated_at=now,
        )
    )
    doc: Doc[Any] = Doc()
    set_title(doc, title)
    await connection.execute(
        insert(report_updates).values(report_id=report_id, update=doc.get_update(), created_at=now)
    )
    return report_id


async def list_reports(connection: AsyncConnection, project_id: int) -> list[Row[Any]]:
    rows = await connection.execute(
        _report_query()
        .where(reports.c.project_id == project_id)
        .order_by(reports.c.created_at.desc(), reports.c.id)
    )
    return list(rows)


async def find_report(
    connection: AsyncConnection, report_id: str, project_id: int | None = None
) -> Row[Any]:
    """Return the report's row or raise ``NotFound``; with ``project_id``, only in that project."""
    query = _report_query().where(reports.c.id == report_id)
    if project_id is not None:
        query = query.where(reports.c.project_id == project_id)
    row = (await connection.execute(query)).first()
    if row is None:
        raise NotFound(f"report {report_id!r} does not exist", code="report_not_found")
    return row


async def delete_report(connection: AsyncConnection, report_id: str) -> None:
    # Child rows are deleted explicitly, since SQLite enforces ON DELETE
    # CASCADE only when foreign keys are on for that connection.
    for table in (report_updates, report_snapshots, report_versions):
        await connection.execute(delete(table).where(table.c.report_id == report_id))
    await connection.execute(delete(reports).where(reports.c.id == report_id))


async def load_updates(connection: AsyncConnection, report_id: str) -> list[bytes]:
    """Return the report's snapshot (if any) followed by the log rows after it."""
    snapshot = (
        await connection.execute(
            select(report_snapshots.c.state, report_snapshots.c.upto_id).where(
                report_snapshots.c.report_id == report_id
            )
        )
    ).first()
    upto = 0 if snapshot is None else snapshot.upto_id
    rows = await connection.execute(
        select(report_updates.c.update)
        .where(report_updates.c.report_id == report_id, report_updates.c.id > upto)
        .order_by(report_updates.c.id)
    )
    updates = [] if snapshot is None else [bytes(snapshot.state)]
    updates.extend(bytes(row.update) for row in rows)
    return updates


async def append_updates(
    connection: AsyncConnection, report_id: str, updates: list[bytes], title: str
) -> int:
    """Append ``updates`` to the log, record the title; return the log rows not compacted."""
    now = time.time()
    # Updating the report row first locks it until commit, so ``compact``,
    # which locks the same row, never reads past a row this transaction adds.
    locked = await connection.execute(
        update(reports)
        .where(reports.c.id == report_id)
        .values(title=title[:MAX_TITLE_LENGTH], updated_at=now)
    )
    if locked.rowcount == 0:
        raise NotFound(f"report {report_id!r} was deleted", code="report_not_found")
    await connection.execute(
        insert(report_updates),
        [{"report_id": report_id, "update": item, "created_at": now} for item in updates],
    )
    upto = await connection.scalar(
        select(report_snapshots.c.upto_id).where(report_snapshots.c.report_id == report_id)
    )
    count = await connection.scalar(
        select(func.count())
        .select_from(report_updates)
        .where(report_updates.c.report_id == report_id, report_updates.c.id > (upto or 0))
    )
    return int(count or 0)


async def compact(database: Database, report_id: str) -> int:
    """Fold the report's log into its snapshot; return the number of rows folded.

    The snapshot is rebuilt from the stored rows, not from a room's document,
    because another instance may have stored updates this one has not seen.
    The report row is locked first, so two instances never compact at once.
    """
    async with database.transaction() as connection:
        await connection.execute(
            select(reports.c.id).where(reports.c.id == report_id).with_for_update()
        )
        last_id = await connection.scalar(
            select(func.max(report_updates.c.id)).where(report_updates.c.report_id == report_id)
        )
        if last_id is None:
            return 0
        doc: Doc[Any] = Doc()
        for item in await load_updates(connection, report_id):
            doc.apply_update(item)
        folded = await connection.execute(
            delete(report_updates).where(
                report_updates.c.report_id == report_id, report_updates.c.id <= last_id
            )
        )
        await connection.execute(
            delete(report_snapshots).where(report_snapshots.c.report_id == report_id)
        )
        await connection.execute(
            insert(report_snapshots).values(
                report_id=report_id,
                state=doc.get_update(),
                upto_id=last_id,
                updated_at=time.time(),
            )
        )
        return int(folded.rowcount)


def version_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "label": row.label,
        "title": row.title,
        "created_by": row.creator,
        "created_at": row.created_at,
    }


def _version_query() -> Any:
    return select(report_versions, schema.users.c.name.label("creator")).join(
        schema.users, schema.users.c.id == report_versions.c.created_by
    )


async def save_version(
    connection: AsyncConnection, report_id: str, user_id: int, label: str, state: bytes
) -> int:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    result = await connection.execute(
        insert(report_versions).values(
            report_id=report_id,
            label=label,
            title=read_title(doc)[:MAX_TITLE_LENGTH],
            state=state,
            created_by=user_id,
            created_at=time.time(),
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def list_versions(connection: AsyncConnection, report_id: str) -> list[Row[Any]]:
    rows = await connection.execute(
        _version_query()
        .where(report_versions.c.report_id == report_id)
        .order_by(report_versions.c.id.desc())
    )
    return list(rows)


async def find_version(connection: AsyncConnection, report_id: str, version_id: int) -> Row[Any]:
    row = (
        await connection.execute(
            _version_query().where(
                report_versions.c.report_id == report_id, report_versions.c.id == version_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(
            f"report {report_id!r} has no version {version_id}", code="version_not_found"
        )
    return row
