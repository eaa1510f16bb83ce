"""Workspace layouts: the panels and run-table columns each user keeps per project.

A layout is a JSON document that the browser app writes whole and reads back
on load. The server checks its shape and size, so that one faulty client cannot
store a layout that breaks the page for its user. The table is created by
migration ``0003_panel_layouts``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Column, Double, ForeignKey, Table, UniqueConstraint, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, schema
from assay_server.api import authenticated, context, respond
from assay_server.errors import BadRequest
from assay_server.sql import insert_or_ignore

panel_layouts = Table(
    "panel_layouts",
    schema.metadata,
    Column("id", schema.Id, primary_key=True, autoincrement=True),
    Column("project_id", schema.Id, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", schema.Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("layout", schema.Document, nullable=False),
    Column("updated_at", Double, nullable=False),
    UniqueConstraint("project_id", "user_id"),
)

PANEL_TYPES = ("line", "scatter", "bar", "scalar", "parallel")
MAX_LAYOUT_BYTES = 256 * 1024
MAX_PANELS = 200
GRID_COLUMNS = 12
MAX_ROWS = 1000
MAX_HEIGHT = 20


def check_layout(layout: Any) -> dict[str, Any]:
    """Return ``layout`` when it is a valid layout document, else raise ``BadRequest``."""
    if not isinstance(layout, dict):
        raise BadRequest("layout must be a JSON object with 'panels'")
    panels = layout.get("panels")
    if not isinstance(panels, list) or len(panels) > MAX_PANELS:
        raise BadRequest(f"layout 'panels' must be a list of at most {MAX_PANELS} panels")
    ids: set[str] = set()
    for index, panel in enumerate(panels):
        where = f"layout panel {index}"
        if not isinstance(panel, dict):
            raise BadRequest(f"{where} must be an object")
        panel_id = panel.get("id")
        if not isinstance(panel_id, str) or not 1 <= len(panel_id) <= 64 or panel_id in ids:
            raise BadRequest(f"{where} needs a unique string 'id' of 1 to 64 characters")
        ids.add(panel_id)
        if panel.get("type") not in PANEL_TYPES:
            raise BadRequest(f"{where} 'type' must be one of {', '.join(PANEL_TYPES)}")
        for name, low, high in (
            ("x", 0, GRID_COLUMNS - 1),
            ("y", 0, MAX_ROWS),
            ("w", 1, GRID_COLUMNS),
            ("h", 1, MAX_HEIGHT),
        ):
            value = panel.get(name)
            if type(value) is not int or not low <= value <= high:
                raise BadRequest(f"{where} {name!r} must be an integer from {low} to {high}")
        if panel["x"] + panel["w"] > GRID_COLUMNS:
            raise BadRequest(f"{where} reaches past the {GRID_COLUMNS} grid columns")
        if not isinstance(panel.get("options", {}), dict):
            raise BadRequest(f"{where} 'options' must be an object")
    columns = layout.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest("layout 'columns' must be a list of column names")
    return layout


async def read_layout(
    connection: AsyncConnection, project_id: int, user_id: int
) -> dict[str, Any] | None:
    found = await connection.scalar(
        select(panel_layouts.c.layout).where(
            panel_layouts.c.project_id == project_id, panel_layouts.c.user_id == user_id
        )
    )
    return None if found is None else dict(found)


async def write_layout(
    connection: AsyncConnection,
    project_id: int,
    user_id: int,
    layout: dict[str, Any],
    is_sqlite: bool,
) -> None:
    now = time.time()
    await connection.execute(
        insert_or_ignore(panel_layouts, is_sqlite).values(
            project_id=project_id, user_id=user_id, layout=layout, updated_at=now
        )
    )
    await connection.execute(
        update(panel_layouts)
        .where(panel_layouts.c.project_id == project_id, panel_layouts.c.user_id == user_id)
        .values(layout=layout, updated_at=now)
    )


async def layout_endpoint(request: Request) -> Response:
    """Return the caller's layout on ``GET``, or null, and store the body on ``PUT``."""
    user = await authenticated(request)
    project_id = (await access.project_access(request)).project_id
    database = context(request).db
    if request.method == "GET":
        async with database.reading() as connection:
            layout = await read_layout(connection, project_id, user.id)
        return respond(request, {"layout": layout})
    body = await request.body()
    if len(body) > MAX_LAYOUT_BYTES:
        raise BadRequest(f"layout is {len(body)} bytes; at most {MAX_LAYOUT_BYTES} are allowed")
    try:
        layout = check_layout(json.loads(body))
    except ValueError:
        raise BadRequest("layout must be valid JSON", code="invalid_json") from None
    async with database.transaction() as connection:
        await write_layout(connection, project_id, user.id, layout, database.is_sqlite)
    return respond(request, {"layout": layout})


routes = [Route("/api/v1/projects/{project}/layout", layout_endpoint, methods=["GET", "PUT"])]
