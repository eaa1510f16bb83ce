"""HTTP endpoints for reports under ``/api/v1/projects/{project}/reports``."""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Doc
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assay_server import access, schema
from assay_server.api import context, respond
from assay_server.errors import BadRequest, Forbidden, NotFound
from assay_server.reports import store
from assay_server.reports.document import copy_content, read_title, set_title, to_json
from assay_server.reports.rooms import ReportRooms

MAX_BODY_BYTES = 64 * 1024
MAX_LABEL_LENGTH = 200


def rooms(request: Request) -> ReportRooms:
    return request.app.state.reports  # type: ignore[no-any-return]


async def json_body(request: Request) -> dict[str, Any]:
    """Return the request's JSON object; an empty body is an empty object."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(
            f"request body is {len(body)} bytes; at most {MAX_BODY_BYTES} are allowed"
        )
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise BadRequest(
            'request body must be a JSON object, such as {"title": "Findings"}; '
            "it is not valid JSON",
            code="invalid_json",
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(value).__name__}")
    return value


def text_field(body: dict[str, Any], name: str, default: str | None, limit: int) -> str:
    value = body.get(name, default)
    if value is None:
        raise BadRequest(f'missing {name!r}; send {{{name!r}: "..."}}')
    if not isinstance(value, str):
        raise BadRequest(f"{name!r} must be a string, got {value!r}")
    if len(value) > limit:
        raise BadRequest(f"{name!r} is {len(value)} characters; at most {limit} are allowed")
    return value


async def project_report(request: Request, need_edit: bool = False) -> access.ReportAccess:
    """Check the caller's access to the path's report, which must be in the path's project."""
    report_id = request.path_params["report_id"]
    granted = await access.report_access(request, report_id, need_edit)
    async with context(request).db.reading() as connection:
        await store.find_report(connection, report_id, granted.project_id)
        project_id = await connection.scalar(
            select(schema.projects.c.id).where(
                schema.projects.c.name == request.path_params["project"]
            )
        )
    if project_id != granted.project_id:
        raise NotFound(f"report {report_id!r} does not exist", code="report_not_found")
    return granted


def require_member(granted: access.ReportAccess, need: access.Role, action: str) -> int:
    """Return the caller's user id; raise ``Forbidden`` unless their project role is ``need``+."""
    if granted.user is None or granted.role is None or granted.role < need:
        raise Forbidden(
            f"{action} needs the {need.label} role in the report's project; "
            "a share link does not grant it"
        )
    return granted.user.id


async def report_data(request: Request, report_id: str) -> dict[str, Any]:
    project = request.path_params["project"]
    async with context(request).db.reading() as connection:
        row = await store.find_report(connection, report_id)
    return store.report_json(row, project)


async def reports_endpoint(request: Request) -> Response:
    """List the project's reports on ``GET``; create one on ``POST``."""
    need = access.Role.VIEWER if request.method == "GET" else access.Role.EDITOR
    granted = await access.project_access(request, need)
    project, project_id = granted.project, granted.project_id
    database = context(request).db
    if request.method == "GET":
        async with database.reading() as connection:
            rows = await store.list_reports(connection, project_id)
        # The browser app shows the create, rename and delete controls only
        # when this is true. The routes check the role again on each change.
        can_edit = granted.role is not None and granted.role >= access.Role.EDITOR
        reports = [store.report_json(row, project) for row in rows]
        return respond(request, {"reports": reports, "can_edit": can_edit})
    title = text_field(
        await json_body(request), "title", "Untitled report", store.MAX_TITLE_LENGTH
    )
    assert granted.user is not None
    async with database.transaction() as connection:
        report_id = await store.create_report(connection, project_id, granted.user.id, title)
    return respond(request, await report_data(request, report_id), 201)


async def report_endpoint(request: Request) -> Response:
    """Show (``GET``), rename (``PATCH``) or delete (``DELETE``) one report."""
    granted = await project_report(request, need_edit=request.method != "GET")
    report_id = granted.report_id
    if request.method == "DELETE":
        require_member(granted, access.Role.EDITOR, "deleting a report")
        async with context(request).db.transaction() as connection:
            await store.delete_report(connection, report_id)
        await rooms(request).delete(report_id)
        return Response(status_code=204)
    if request.method == "PATCH":
        title = text_field(await json_body(request), "title", None, store.MAX_TITLE_LENGTH)
        async with rooms(request).use(report_id) as room:
            room.edit(lambda doc: set_title(doc, title))
            await rooms(request).flush_now(report_id)
        return respond(request, await report_data(request, report_id))
    async with rooms(request).use(report_id) as room:
        content = to_json(room.doc)
    data = await report_data(request, report_id)
    data["content"] = content
    # The browser app hides its editing controls when this is false; the
    # report socket and the routes reject a read-only caller's changes anyway.
    data["can_edit"] = granted.can_edit
    return respond(request, data)


async def versions_endpoint(request: Request) -> Response:
    """List the report's saved versions on ``GET``; save the current document on ``POST``."""
    granted = await project_report(request, need_edit=request.method != "GET")
    report_id = granted.report_id
    database = context(request).db
    if request.method == "GET":
        async with database.reading() as connection:
            rows = await store.list_versions(connection, report_id)
        return respond(request, {"versions": [store.version_json(row) for row in rows]})
    user_id = require_member(granted, access.Role.EDITOR, "saving a version")
    label = text_field(await json_body(request), "label", "", MAX_LABEL_LENGTH)
    async with rooms(request).use(report_id) as room:
        state = room.doc.get_update()
        if not label:
            label = read_title(room.doc)[:MAX_LABEL_LENGTH]
    async with database.transaction() as connection:
        version_id = await store.save_version(connection, report_id, user_id, label, state)
        row = await store.find_version(connection, report_id, version_id)
    return respond(request, store.version_json(row), 201)


async def version_endpoint(request: Request) -> Response:
    """Show one saved version with its content."""
    report_id = (await project_report(request)).report_id
    row = await version_row(request, report_id)
    data = store.version_json(row)
    data["content"] = to_json(version_doc(row.state))
    return respond(request, data)


async def restore_endpoint(request: Request) -> Response:
    """Make the live document show a saved version's title and blocks."""
    report_id = (await project_report(request, need_edit=True)).report_id
    row = await version_row(request, report_id)
    source = version_doc(row.state)
    async with rooms(request).use(report_id) as room:
        room.edit(lambda doc: copy_content(source, doc))
        await rooms(request).flush_now(report_id)
        content = to_json(room.doc)
    data = await report_data(request, report_id)
    data["content"] = content
    return respond(request, data)


async def version_row(request: Request, report_id: str) -> Any:
    raw = request.path_params["version"]
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"version must be a positive integer id, got {raw!r}")
    async with context(request).db.reading() as connection:
        return await store.find_version(connection, report_id, int(raw))


def version_doc(state: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(bytes(state))
    return doc


PREFIX = "/api/v1/projects/{project}/reports"
routes = [
    Route(PREFIX, reports_endpoint, methods=["GET", "POST"]),
    Route(PREFIX + "/{report_id}", report_endpoint, methods=["GET", "PATCH", "DELETE"]),
    Route(PREFIX + "/{report_id}/versions", versions_endpoint, methods=["GET", "POST"]),
    Route(PREFIX + "/{report_id}/versions/{version}", version_endpoint),
    Route(PREFIX + "/{report_id}/versions/{version}/restore", restore_endpoint, methods=["POST"]),
]
