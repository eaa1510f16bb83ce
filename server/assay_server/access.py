"""Access rules: project roles, public projects and report share links.

Every route calls ``project_access`` (or ``report_access``) for the role it
needs before it reads or writes anything. A user's role in a project is
``admin`` for server admins and the project's owner, else the role of their
``project_members`` row. A public project gives everyone, signed in or not,
the ``viewer`` role. A private project that the caller cannot see returns
``404 project_not_found``, exactly as a missing one does, so names cannot be
probed.

A share link carries a token in the ``share`` query parameter. It grants a
role on one report only (``view`` or ``edit``) and never a role in the
project: routes that serve run data to a link holder must narrow it to the
runs that the report's run sets draw (see ``report_scope``).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Array, Doc
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import HTTPConnection

from assay_server import schema, sessions
from assay_server.auth import User, authenticate, bearer_token, hash_key
from assay_server.errors import Forbidden, NotFound, Unauthorized
from assay_server.figures import X_METRIC_PREFIX
from assay_server.reports.tables import report_shares, reports

if TYPE_CHECKING:
    from assay_server.context import ServerContext

#: The query parameter that carries a share-link token.
SHARE_PARAM = "share"


class Role(enum.IntEnum):
    """A role in a project; a higher role may do everything a lower one may."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use admin, editor or viewer") from None


@dataclass(frozen=True)
class ShareGrant:
    """A valid share link: the report it opens and what it allows there."""

    share_id: str
    report_id: str
    project_id: int
    role: str  # "view" or "edit"
    expires_at: float | None

    @property
    def can_edit(self) -> bool:
        return self.role == "edit"


@dataclass(frozen=True)
class ReportScope:
    """The part of a project a share link exposes: the report's run sets and the fields drawn.

    ``filters`` are the run-set filter texts of the report's panel grids.
    ``fields`` are the names its panels, groupings and sorts refer to, bare
    (``lr``) or qualified (``config.lr``, ``summary.loss``).
    """

    report_id: str
    filters: frozenset[str]
    fields: frozenset[str]

    def allows_filter(self, text: str | None) -> bool:
        return (text or "").strip() in self.filters

    def allows_key(self, key: str) -> bool:
        return key in self.fields

    def narrow_run(self, run: dict[str, Any]) -> dict[str, Any]:
        """Return ``run`` with only the metadata and the config and summary keys drawn."""
        narrowed = {name: run[name] for name in RUN_METADATA if name in run}
        for part in ("config", "summary"):
            values = run.get(part) or {}
            narrowed[part] = {
                key: value
                for key, value in values.items()
                if key in self.fields or f"{part}.{key}" in self.fields
            }
        return narrowed


#: Run fields a share link always shows: what names, colours and states a line.
RUN_METADATA = ("id", "name", "state", "created_at", "finished_at", "heartbeat_at")


def report_scope(report_id: str, doc: Doc[Any]) -> ReportScope:
    """Collect the run-set filters and the field names that a report's document draws."""
    filters: set[str] = set()
    fields: set[str] = set()
    blocks = doc.get("blocks", type=Array).to_py() or []
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") != "panel_grid":
            continue
        for run_set in block.get("run_sets") or []:
            if not isinstance(run_set, dict):
                continue
            filters.add(str(run_set.get("filter") or "").strip())
            fields.update(_strings(run_set.get("grouping")))
            fields.update(_strings(run_set.get("sort")))
        for panel in block.get("panels") or []:
            if isinstance(panel, dict):
                names = _strings(panel.get("options"))
                fields.update(names)
                # A line panel with x "metric:KEY" draws metric KEY as its x axis.
                fields.update(
                    name.removeprefix(X_METRIC_PREFIX)
                    for name in names
                    if name.startswith(X_METRIC_PREFIX)
                )
    return ReportScope(report_id, frozenset(filters), frozenset(fields))


def _strings(value: Any) -> set[str]:
    """Collect every string inside ``value``, a JSON-like tree."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(item) for item in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(item) for item in value)) if value else set()
    return set()


@dataclass(frozen=True)
class ProjectAccess:
    project_id: int
    project: str
    role: Role
    user: User | None
    #: Set when a share link, not a project role, grants the access.
    scope: ReportScope | None = None
    share: ShareGrant | None = None


def _context(connection: HTTPConnection) -> ServerContext:
    return connection.app.state.context  # type: ignore[no-any-return]


async def optional_user(connection: HTTPConnection) -> User | None:
    """Return the user whose credentials the request carries, or None when it carries none.

    Credentials are an ``Authorization: Bearer KEY`` header, for websockets
    also a ``token`` query parameter (browsers cannot set headers there), or
    the session cookie. Credentials that are present but invalid raise
    ``Unauthorized`` rather than falling back to anonymous access.
    """
    key = bearer_token(connection.headers.get("authorization"))
    if key is None and connection.scope["type"] == "websocket":
        key = connection.query_params.get("token")
    database = _context(connection).db
    if key is not None:
        async with database.reading() as db:
            user = await authenticate(db, key)
        if user is None:
            raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
        return user
    session = connection.cookies.get(sessions.COOKIE)
    if session:
        async with database.reading() as db:
            user = await sessions.session_user(db, session)
        # An expired cookie is no credential at all: public pages stay readable.
        return user
    return None


async def role_in_project(
    connection: AsyncConnection, user: User | None, project_id: int, owner_id: int, public: bool
) -> Role | None:
    """Return the role of ``user`` (None: anonymous) in a project, or None when it has none."""
    if user is not None and (user.is_admin or user.id == owner_id):
        return Role.ADMIN
    if user is not None:
        text = await connection.scalar(
            select(schema.project_members.c.role).where(
                schema.project_members.c.project_id == project_id,
                schema.project_members.c.user_id == user.id,
            )
        )
        if text is not None:
            return Role.parse(text)
    return Role.VIEWER if public else None


async def check_project(
    connection: AsyncConnection, user: User | None, project: str, need: Role
) -> ProjectAccess:
    """Return the caller's access to ``project``; raise unless it reaches ``need``."""
    row = (
        await connection.execute(
            select(
                schema.projects.c.id, schema.projects.c.owner_id, schema.projects.c.visibility
            ).where(schema.projects.c.name == project)
        )
    ).first()
    role = None
    if row is not None:
        role = await role_in_project(
            connection, user, row.id, row.owner_id, row.visibility == "public"
        )
    if role is None:
        if user is None:
            raise Unauthorized(
                f"missing API key; project {project!r} is not public, so send an API key "
                "as 'Authorization: Bearer KEY' or sign in"
            )
        raise NotFound(f"project {project!r} does not exist", code="project_not_found")
    if role < need:
        who = "anonymous visitors" if user is None else f"user {user.name!r}"
        raise Forbidden(
            f"{who} may only {_verb(role)} project {project!r}; this needs the "
            f"{need.label} role, which a project admin can grant"
        )
    assert row is not None
    return ProjectAccess(int(row.id), project, role, user)


def _verb(role: Role) -> str:
    return {Role.VIEWER: "view", Role.EDITOR: "edit", Role.ADMIN: "administer"}[role]


async def project_access(
    connection: HTTPConnection,
    need: Role = Role.VIEWER,
    project: str | None = None,
    allow_share: bool = False,
) -> ProjectAccess:
    """Authenticate the request and check its role in the path's ``project``.

    With ``allow_share``, a share link of a report in the project grants
    viewing, narrowed to that report's ``scope``. Without it, a share link is
    rejected, because it opens nothing else of the project.
    """
    name = project if project is not None else connection.path_params["project"]
    grant = await share_grant(connection)
    if grant is not None:
        return await _shared_project(connection, grant, name, need, allow_share)
    user = await optional_user(connection)
    async with _context(connection).db.reading() as db:
        return await check_project(db, user, name, need)


async def _shared_project(
    connection: HTTPConnection, grant: ShareGrant, project: str, need: Role, allow_share: bool
) -> ProjectAccess:
    if not allow_share or need > Role.VIEWER:
        raise Forbidden(
            "a share link opens only its report and the charts in it; sign in for the rest "
            "of the project",
            code="outside_report",
        )
    async with _context(connection).db.reading() as db:
        project_id = await db.scalar(
            select(schema.projects.c.id).where(schema.projects.c.name == project)
        )
    if project_id != grant.project_id:
        raise NotFound(f"project {project!r} does not exist", code="project_not_found")
    doc = await connection.app.state.reports.read_document(grant.report_id)
    scope = report_scope(grant.report_id, doc)
    return ProjectAccess(grant.project_id, project, Role.VIEWER, None, scope, grant)


async def find_share(connection: AsyncConnection, token: str) -> ShareGrant | None:
    """Return the share link whose token is ``token``, unless it is revoked or expired."""
    now = time.time()
    row = (
        await connection.execute(
            select(
                report_shares.c.id,
                report_shares.c.report_id,
                report_shares.c.role,
                report_shares.c.expires_at,
                reports.c.project_id,
            )
            .join(reports, reports.c.id == report_shares.c.report_id)
            .where(
                report_shares.c.token_hash == hash_key(token),
                report_shares.c.revoked_at.is_(None),
                or_(report_shares.c.expires_at.is_(None), report_shares.c.expires_at > now),
            )
        )
    ).first()
    if row is None:
        return None
    return ShareGrant(row.id, row.report_id, int(row.project_id), row.role, row.expires_at)


async def share_is_live(connection: AsyncConnection, share_id: str) -> bool:
    """Return whether share link ``share_id`` is neither revoked nor expired."""
    found = await connection.scalar(
        select(report_shares.c.id).where(
            report_shares.c.id == share_id,
            report_shares.c.revoked_at.is_(None),
            or_(report_shares.c.expires_at.is_(None), report_shares.c.expires_at > time.time()),
        )
    )
    return found is not None


async def share_grant(connection: HTTPConnection) -> ShareGrant | None:
    """Return the share link of the request's ``share`` parameter, or None without one.

    Raise ``Unauthorized`` for a token that is unknown, revoked or expired.
    """
    token = connection.query_params.get(SHARE_PARAM)
    if token is None:
        return None
    # Failed look-ups are counted per client address, so tokens cannot be
    # guessed at speed, while a valid link's many requests count nothing.
    limiter = connection.app.state.limits.share
    address = connection.client.host if connection.client else "unknown"
    await limiter.ensure_allowed(address)
    async with _context(connection).db.reading() as db:
        grant = await find_share(db, token)
    if grant is None:
        # Guesses sent together all pass the check above; each failure's count
        # decides whether it gets a 401 or, past the limit, a 429.
        raise await limiter.fail(address) or Unauthorized(
            "this share link is invalid, revoked or expired; ask the report's owner for a new one",
            code="invalid_share",
        )
    # A valid token found while guesses sent with it went past the limit waits too.
    await limiter.ensure_allowed(address)
    return grant


@dataclass(frozen=True)
class ReportAccess:
    """The caller's rights on one report: viewing always, and editing or not."""

    report_id: str
    project_id: int
    can_edit: bool
    user: User | None
    share: ShareGrant | None
    #: The project role, for a caller who has one; None for a link holder.
    role: Role | None


async def report_access(
    connection: HTTPConnection, report_id: str, need_edit: bool = False
) -> ReportAccess:
    """Check the caller's access to a report through its project or a share link.

    A share link for another report grants nothing here. A caller with both a
    project role and a link gets the larger of the two.
    """
    grant = await share_grant(connection)
    if grant is not None and grant.report_id != report_id:
        raise NotFound(f"report {report_id!r} does not exist", code="report_not_found")
    user = await optional_user(connection)
    database = _context(connection).db
    async with database.reading() as db:
        row = (
            await db.execute(
                select(
                    reports.c.project_id,
                    schema.projects.c.name,
                    schema.projects.c.owner_id,
                    schema.projects.c.visibility,
                )
                .join(schema.projects, schema.projects.c.id == reports.c.project_id)
                .where(reports.c.id == report_id)
            )
        ).first()
        role = None
        if row is not None:
            role = await role_in_project(
                db, user, row.project_id, row.owner_id, row.visibility == "public"
            )
    if row is None or (role is None and grant is None):
        if user is None and grant is None:
            raise Unauthorized(
                "this report needs credentials: sign in, send an API key, or open it "
                "through a share link"
            )
        raise NotFound(f"report {report_id!r} does not exist", code="report_not_found")
    can_edit = (role is not None and role >= Role.EDITOR) or (grant is not None and grant.can_edit)
    if need_edit and not can_edit:
        raise Forbidden(
            f"report {report_id!r} is read-only for this connection; editing needs the "
            "editor role in its project or an edit link"
        )
    return ReportAccess(report_id, int(row.project_id), can_edit, user, grant, role)


def visible_to(user_id: int) -> ColumnElement[bool]:
    """Build a WHERE clause on ``projects``: owned by ``user_id``, joined by them, or public."""
    members = select(schema.project_members.c.project_id).where(
        schema.project_members.c.user_id == user_id
    )
    return or_(
        schema.projects.c.owner_id == user_id,
        schema.projects.c.id.in_(members),
        schema.projects.c.visibility == "public",
    )
