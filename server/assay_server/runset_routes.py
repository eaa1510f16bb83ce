"""HTTP endpoints of run sets under ``/api/v1/projects/{project}/runsets``; see docs/runsets.md."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, runsets
from assay_server.api import context, respond
from assay_server.errors import BadRequest
from assay_server.request_body import read_json
from assay_server.runset_shape import check_changes, check_filter
from assay_server.settings import Settings

log = logging.getLogger(__name__)


def body_limit(settings: Settings) -> int:
    """Bytes of JSON body accepted where a filter may come: room for any valid filter."""
    return 4 * settings.max_filter_length + 64 * 1024


async def list_runsets(request: Request) -> Response:
    project_id = (await access.project_access(request)).project_id
    async with context(request).db.reading() as db:
        found = await runsets.list_runsets(db, project_id)
    return respond(request, {"runsets": found})


async def create_runset(request: Request) -> Response:
    granted = await access.project_access(request, access.Role.EDITOR)
    project_id = granted.project_id
    settings = context(request).settings
    body = await read_json(request, body_limit(settings))
    changes = check_changes(body, settings.max_filter_length)
    if "name" not in changes:
        raise BadRequest("a new run set needs a 'name'", code="invalid_runset")
    position = check_position(body)
    database = context(request).db
    async with database.transaction() as db:
        created = await runsets.create_runset(db, project_id, changes)
        if position is not None:
            # A new run set goes last, then moves to the position the body requests.
            created = await runsets.update_runset(db, project_id, created["id"], {}, position)
    assert granted.user is not None
    log.info(
        "user %s created run set %s in project %s", granted.user.id, created["id"], project_id
    )
    return respond(request, created, 201)


async def update_runset(request: Request) -> Response:
    project_id = (await access.project_access(request, access.Role.EDITOR)).project_id
    settings = context(request).settings
    body = await read_json(request, body_limit(settings))
    changes = check_changes(body, settings.max_filter_length)
    position = check_position(body)
    async with context(request).db.transaction() as db:
        updated = await runsets.update_runset(
            db, project_id, request.path_params["runset_id"], changes, position
        )
    return respond(request, updated)


def check_position(body: dict[str, Any]) -> int | None:
    """Return the body's ``position``, or None when missing; raise BadRequest when invalid."""
    position = body.get("position")
    if position is not None and (type(position) is not int or position < 0):
        raise BadRequest(
            f"run-set 'position' must be a non-negative integer, got {position!r:.40}",
            code="invalid_runset",
        )
    return position


async def delete_runset(request: Request) -> Response:
    project_id = (await access.project_access(request, access.Role.EDITOR)).project_id
    async with context(request).db.transaction() as db:
        await runsets.delete_runset(db, project_id, request.path_params["runset_id"])
    return Response(status_code=204)


async def clone_runset(request: Request) -> Response:
    project_id = (await access.project_access(request, access.Role.EDITOR)).project_id
    async with context(request).db.transaction() as db:
        cloned = await runsets.clone_runset(db, project_id, request.path_params["runset_id"])
    return respond(request, cloned, 201)


async def freeze_runset(request: Request) -> Response:
    """Add ``created_at <= NOW`` to the filter, so that runs created later stay out."""
    project_id = (await access.project_access(request, access.Role.EDITOR)).project_id
    settings = context(request).settings
    async with context(request).db.transaction() as db:
        row = await runsets.get_runset(db, project_id, request.path_params["runset_id"])
        text = runsets.frozen_filter(row.spec["filter"], time.time())
        changes: dict[str, Any] = {"filter": check_filter(text, settings.max_filter_length)}
        frozen = await runsets.update_runset(db, project_id, row.runset_id, changes)
    return respond(request, frozen)


PREFIX = "/api/v1/projects/{project}/runsets"

routes = [
    Route(PREFIX, list_runsets, methods=["GET"]),
    Route(PREFIX, create_runset, methods=["POST"]),
    Route(PREFIX + "/{runset_id}", update_runset, methods=["PATCH"]),
    Route(PREFIX + "/{runset_id}", delete_runset, methods=["DELETE"]),
    Route(PREFIX + "/{runset_id}/clone", clone_runset, methods=["POST"]),
    Route(PREFIX + "/{runset_id}/freeze", freeze_runset, methods=["POST"]),
]
