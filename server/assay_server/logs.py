"""Server logging: text or JSON lines that carry the ids of the work in hand and no secret.

``configure`` installs one handler on the root logger, so uvicorn's, the
websockets library's and our own records all pass through the same filter and
formatter. Each record gets the ids bound for the request or connection being
served (``request``, ``connection``, ``run``, ``report``). ``LogContextMiddleware``
binds them per HTTP request and websocket, and handlers may add more with
``bind``. Before a line is written, API keys, bearer tokens, cookies, ``token``
and other secret query parameters, share-link tokens, JSON password fields
and URL passwords in it are masked.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import secrets
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from assay import protocol
from assay.protocol import ProtocolError
from assay_server.settings import LOG_FORMATS

CONTEXT_FIELDS = ("request", "connection", "run", "report")
REQUEST_ID_HEADER = "x-request-id"
INGEST_PATH = "/api/v1/ingest"
MASK = "***"

# One mutable mapping per request or connection. Handlers that start tasks
# (``asyncio.create_task``, and ``asyncio.wait_for`` on Python 3.11) give them
# a copy of the context, and that copy still refers to this same mapping, so
# ids bound later in the connection reach those tasks too.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "assay_log_context", default=None
)

# Ids taken from requests must look like ids: a CR or LF in one could forge a
# line of the text format.
_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RUN_PATH = re.compile(r"^(?:/api/v1)?/projects/([^/]+)/runs/([^/]+)")
# A report's page, HTTP routes, share links and document socket name it in the path.
_REPORT_PATH = re.compile(
    r"^(?:(?:/api/v1)?/projects/[^/]+/reports|/api/v1/reports|/yjs/reports)/([A-Za-z0-9_-]{1,64})"
)


def bind(**ids: str | None) -> None:
    """Add ids (``request``, ``connection``, ``run``, ``report``) to the current log context.

    Inside a request or connection served through ``LogContextMiddleware`` the
    ids are added to that connection's context, so later lines of every task
    serving it carry them. Elsewhere they apply to the current task and to the
    tasks it starts afterwards.
    """
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields {sorted(unknown)}; use {CONTEXT_FIELDS}")
    context = _context.get()
    if context is None:
        context = {}
        _context.set(context)
    context.update({name: value for name, value in ids.items() if value is not None})


def current() -> dict[str, str]:
    """Return a copy of the ids bound for the current request or connection."""
    return dict(_context.get() or {})


def connection_id() -> str:
    """Return the id ``LogContextMiddleware`` bound for this websocket, or a new one.

    A socket's own log messages name it by this id, so they match the
    ``connection`` field of every line logged while serving it.
    """
    bound = (_context.get() or {}).get("connection")
    return bound if bound is not None else secrets.token_hex(4)


def run_label(project: object, run_id: object) -> str | None:
    """Return ``project/run_id`` when both are valid names, as ingest logs them, else None."""
    if not isinstance(project, str) or not isinstance(run_id, str):
        return None
    if not _PROJECT.match(project) or not _RUN_ID.match(run_id):
        return None
    return f"{project}/{run_id}"


class Redactor:
    """Masks secrets in log text: known values, API keys, tokens, cookies and URL passwords."""

    PATTERNS = (
        # Headers, as the websockets library logs them at debug level.
        (
            re.compile(
                r"(?im)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key)"
                r"(\s*[:=]\s*)[^\r\n]*"
            ),
            r"\1\2" + MASK,
        ),
        (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{16,}"), r"\1 " + MASK),
        # Query parameters that carry keys or share-link tokens: /login?token=...,
        # /api/v1/ingest?token=..., /projects/p/reports/r?share=...
        (
            re.compile(
                r"(?i)([?&;](?:token|api_key|apikey|key|access_token|session|share|share_token"
                r"|password)=)[^&\s\"'#]*"
            ),
            r"\1" + MASK,
        ),
        # Passwords in a JSON body or a dict's repr, should one ever be logged.
        (
            re.compile(
                r"(?i)([\"'](?:password|current|new)[\"']\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2"
            ),
            r"\1\2" + MASK + r"\2",
        ),
        # Share links: /share/TOKEN or /shares/TOKEN in a path.
        # NOTE: assumes share tokens travel as a path segment after "share"; a
        # share route of another shape needs its own pattern here.
        (re.compile(r"(?i)(/shares?/)[A-Za-z0-9_-]{16,}"), r"\1" + MASK),
        (re.compile(r"\bassay_session=[^;\s\"']*"), "assay_session=" + MASK),
        # API keys as auth.new_api_key makes them: "assay_" and 43 URL-safe characters.
        (re.compile(r"\bassay_[A-Za-z0-9_-]{20,}"), "assay_" + MASK),
        # The password of a URL: postgresql://user:password@host/db
        (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@"), r"\1:" + MASK + "@"),
    )

    def __init__(self, literals: Iterable[str | None] = ()) -> None:
        # Longest first, so that a secret containing another is masked whole.
        self.literals = sorted(
            {literal for literal in literals if literal and len(literal) >= 6},
            key=len,
            reverse=True,
        )

    def __call__(self, text: str) -> str:
        for literal in self.literals:
            text = text.replace(literal, MASK)
        for pattern, replacement in self.PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record as ``record.log_context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "log_context"):
            record.log_context = current()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, bound ids, exception."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        entry.update(getattr(record, "log_context", {}))
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE [request=… run=…]``, with secrets masked."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        text = super().formatMessage(record)
        ids = getattr(record, "log_context", {})
        if ids:
            text += " [" + " ".join(f"{name}={ids[name]}" for name in sorted(ids)) + "]"
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def url_password(url: str | None) -> str | None:
    """Return the password in ``url``, or None, so that it can be masked wherever it shows up."""
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def configure(
    log_format: str,
    level: str,
    secret_values: Iterable[str | None] = (),
    stream: Any = None,
) -> logging.Handler:
    """Send every log record to ``stream`` (default stderr) in ``log_format``; return the handler.

    ``secret_values`` are masked wherever they appear, on top of the patterns
    of ``Redactor``. Handlers installed earlier on the root logger are removed.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, got {log_format!r}")
    redact = Redactor(secret_values)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.addFilter(ContextFilter())
    formatter: logging.Formatter = (
        JsonFormatter(redact) if log_format == "json" else TextFormatter(redact)
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def _header(scope: MutableMapping[str, Any], name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key.decode("latin-1").lower() == name:
            return str(value.decode("latin-1"))
    return None


def request_id(scope: MutableMapping[str, Any]) -> str:
    """Return the request's ``X-Request-ID`` (as nginx sets it) when valid, else a new id."""
    header_value = _header(scope, REQUEST_ID_HEADER)
    if header_value and _ID.match(header_value):
        return header_value
    return secrets.token_hex(8)


class LogContextMiddleware:
    """ASGI middleware that binds log ids for each HTTP request and websocket.

    Every request gets ``request`` (its ``X-Request-ID`` or a new id), echoed in
    the response's ``X-Request-ID`` header. A websocket also gets ``connection``.
    A path under ``/projects/{project}/runs/{run_id}`` binds ``run``, and so
    does the ``hello`` of an ingest socket, read as it passes to the app. A
    report's page, routes, share links and socket bind ``report``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        ids = {"request": request_id(scope)}
        match = _RUN_PATH.match(scope.get("path", ""))
        if match:
            label = run_label(match.group(1), match.group(2))
            if label:
                ids["run"] = label
        report = _REPORT_PATH.match(scope.get("path", ""))
        if report:
            ids["report"] = report.group(1)
        if scope["type"] == "websocket":
            ids["connection"] = secrets.token_hex(4)
            if scope.get("path") == INGEST_PATH:
                receive = _bind_run_from_hello(receive)
        else:
            send = _with_request_id(send, ids["request"])
        token = _context.set(ids)
        try:
            await self.app(scope, receive, send)
        finally:
            _context.reset(token)


def _bind_run_from_hello(receive: Any) -> Any:
    """Wrap ``receive`` to bind ``run`` from the first frame, the ingest ``hello``."""
    seen = False

    async def receive_and_bind() -> Any:
        nonlocal seen
        message = await receive()
        if not seen and message["type"] == "websocket.receive" and message.get("bytes"):
            seen = True
            try:
                hello = protocol.unpack(message["bytes"])
            except ProtocolError:
                return message  # ingest rejects the frame with an error message
            run = hello.get("run")
            if hello.get("type") == "hello" and isinstance(run, dict):
                label = run_label(hello.get("project"), run.get("id"))
                if label:
                    bind(run=label)
        return message

    return receive_and_bind


def _with_request_id(send: Any, value: str) -> Any:
    async def send_with_header(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((REQUEST_ID_HEADER.encode(), value.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return send_with_header
