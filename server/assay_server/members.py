"""Project members and visibility, under ``/api/v1/projects/{project}``.

Project admins add members by user name with a role (``admin``, ``editor``
or ``viewer``), change or remove them, and make the project public or
private. The owner is always an admin and has no member row.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import delete, select, update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, schema
from assay_server.api import context, respond
from assay_server.errors import BadRequest, NotFound
from assay_server.request_body import read_json
from assay_server.sql import insert_or_ignore

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
VISIBILITIES = ("private", "public")


async def body_object(request: Request, example: str) -> dict[str, Any]:
    body = await read_json(request, MAX_BODY_BYTES)
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object such as {example}")
    return body


async def list_members(request: Request) -> Response:
    """Return the owner and the members with their roles, owner first, then by name.

    The response also contains the project's ``visibility`` and the caller's
    own ``caller_role``, so that the members page shows admin controls only to admins.
    """
    granted = await access.project_access(request)
    async with context(request).db.reading() as db:
        owner = (
            await db.execute(
                select(schema.users.c.name, schema.projects.c.visibility)
                .join(schema.projects, schema.projects.c.owner_id == schema.users.c.id)
                .where(schema.projects.c.id == granted.project_id)
            )
        ).one()
        rows = await db.execute(
            select(schema.users.c.name, schema.project_members.c.role)
            .join(schema.project_members, schema.project_members.c.user_id == schema.users.c.id)
            .where(schema.project_members.c.project_id == granted.project_id)
            .order_by(schema.users.c.name)
        )
        members = [{"name": owner.name, "role": "admin", "owner": True}]
        members += [{"name": row.name, "role": row.role, "owner": False} for row in rows]
    return respond(
        request,
        {
            "members": members,
            "visibility": owner.visibility,
            "caller_role": granted.role.label,
        },
    )


async def user_id(request: Request, name: str) -> int:
    async with context(request).db.reading() as db:
        found = await db.scalar(select(schema.users.c.id).where(schema.users.c.name == name))
    if found is None:
        raise NotFound(f"user {name!r} does not exist", code="user_not_found")
    return int(found)


async def member_endpoint(request: Request) -> Response:
    """Set a user's role (``PUT`` with ``{"role": …}``) or remove them (``DELETE``)."""
    granted = await access.project_access(request, access.Role.ADMIN)
    name = request.path_params["user"]
    member_id = await user_id(request, name)
    database = context(request).db
    if request.method == "DELETE":
        async with database.transaction() as db:
            await db.execute(
                delete(schema.project_members).where(
                    schema.project_members.c.project_id == granted.project_id,
                    schema.project_members.c.user_id == member_id,
                )
            )
        log.info("project %s: member %s removed", granted.project_id, member_id)
        return Response(status_code=204)
    body = await body_object(request, '{"role": "editor"}')
    try:
        role = access.Role.parse(str(body.get("role")))
    except ValueError as exc:
        raise BadRequest(f"member {exc}", code="invalid_role") from None
    async with database.transaction() as db:
        owner_id = await db.scalar(
            select(schema.projects.c.owner_id).where(schema.projects.c.id == granted.project_id)
        )
        if owner_id == member_id:
            raise BadRequest(
                f"user {name!r} owns project {granted.project!r} and is always its admin",
                code="invalid_role",
            )
        await db.execute(
            insert_or_ignore(schema.project_members, database.is_sqlite).values(
                project_id=granted.project_id,
                user_id=member_id,
                role=role.label,
                created_at=time.time(),
            )
        )
        await db.execute(
            update(schema.project_members)
            .where(
                schema.project_members.c.project_id == granted.project_id,
                schema.project_members.c.user_id == member_id,
            )
            .values(role=role.label)
        )
    log.info("project %s: member %s has role %s", granted.project_id, member_id, role.label)
    return respond(request, {"name": name, "role": role.label, "owner": False})


async def project_settings(request: Request) -> Response:
    """Change the project's ``visibility`` to ``"public"`` or ``"private"`` (``PATCH``)."""
    granted = await access.project_access(request, access.Role.ADMIN)
    body = await body_object(request, '{"visibility": "public"}')
    visibility = body.get("visibility")
    if set(body) != {"visibility"} or visibility not in VISIBILITIES:
        raise BadRequest(
            f'send {{"visibility": "public"}} or {{"visibility": "private"}}, got {body!r:.100}',
            code="invalid_visibility",
        )
    async with context(request).db.transaction() as db:
        await db.execute(
            update(schema.projects)
            .where(schema.projects.c.id == granted.project_id)
            .values(visibility=visibility)
        )
    log.info("project %s is now %s", granted.project_id, visibility)
    return respond(request, {"name": granted.project, "visibility": visibility})


PREFIX = "/api/v1/projects/{project}"
routes = [
    Route(PREFIX, project_settings, methods=["PATCH"]),
    Route(PREFIX + "/members", list_members),
    Route(PREFIX + "/members/{user}", member_endpoint, methods=["PUT", "DELETE"]),
]
