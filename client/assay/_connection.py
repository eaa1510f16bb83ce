"""A synchronous client for the ingest websocket, used by the sender and ``assay sync``."""

from __future__ import annotations

import json
import logging
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from assay import protocol
from assay._errors import ServerError, server_error

log = logging.getLogger(__name__)


class TransientError(Exception):
    """The connection failed in a way that a later retry may fix."""


#: Errors the server reports for conditions that pass, such as a database restart.
TRANSIENT_CODES = frozenset({"unavailable", "timeout"})


def ingest_url(server: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server[len("https://") :] + protocol.INGEST_PATH
    return "ws://" + server[len("http://") :] + protocol.INGEST_PATH


class IngestClient:
    """One ingest websocket: ``open`` sends the hello and returns the welcome."""

    def __init__(self, server: str, api_key: str, open_timeout: float = 10.0) -> None:
        self.url = ingest_url(server)
        self.api_key = api_key
        self.open_timeout = open_timeout
        self.socket: ClientConnection | None = None

    def open(self, hello: dict[str, Any]) -> dict[str, Any]:
        """Connect and send the hello; raise ``ServerError`` if the server rejects the run."""
        try:
            self.socket = connect(
                self.url,
                additional_headers={"Authorization": f"Bearer {self.api_key}"},
                open_timeout=self.open_timeout,
                max_size=protocol.MAX_MESSAGE_BYTES,
                compression=None,
                legacy=True,
            )
        except InvalidStatus as exc:
            raise _rejection(exc) from None
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            # ConnectionClosed: the connection dropped during the handshake.
            raise TransientError(f"cannot connect to {self.url}: {exc}") from None
        self.send(protocol.pack(hello))
        welcome = self.receive(self.open_timeout)
        if welcome is None:
            self.close()
            raise TransientError(f"no welcome from {self.url} within {self.open_timeout} s")
        if welcome["type"] == "error":
            self.close()
            raise _error(welcome)
        return welcome

    def send(self, frame: bytes) -> None:
        assert self.socket is not None
        try:
            self.socket.send(frame)
        except (ConnectionClosed, OSError) as exc:
            raise TransientError(f"connection lost while sending: {exc}") from None

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """Return the next message, or None when ``timeout`` seconds pass without one."""
        assert self.socket is not None
        try:
            frame = self.socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        except (ConnectionClosed, OSError) as exc:
            raise TransientError(f"connection lost: {exc}") from None
        if isinstance(frame, str):
            raise TransientError("server sent a text frame; expected msgpack")
        return protocol.unpack(frame)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def fatal_or_transient(message: dict[str, Any]) -> Exception:
    """The exception for an ``error`` message that ended the connection."""
    if message.get("code") in TRANSIENT_CODES:
        return TransientError(str(message.get("message")))
    return _error(message)


def _error(message: dict[str, Any]) -> Exception:
    code = str(message.get("code", "error"))
    text = str(message.get("message", "the server rejected the connection"))
    if code in TRANSIENT_CODES:
        return TransientError(text)
    return server_error(text, code)


def _rejection(exc: InvalidStatus) -> Exception:
    status = exc.response.status_code
    try:
        body = json.loads(exc.response.body or b"{}")
        error = body["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        message, code = f"the server answered HTTP {status}", "http_error"
    if status >= 500 or status == 429:
        return TransientError(message)
    return server_error(message, code, status)


__all__ = ["IngestClient", "ServerError", "TransientError", "ingest_url"]
