"""The SDK's exceptions, one tree so that callers can catch at any level.

AssayError
├── ConfigurationError        no server or API key, or a bad option
├── InvalidValueError         a metric name or value the server would reject
├── ConnectionFailedError     the server could not be reached (read API)
└── ServerError               the server answered with an error
    ├── AuthenticationError   missing, invalid or revoked API key (401)
    ├── NotFoundError         no such project or run (404)
    └── ConflictError         the run exists and resume was not requested (409)
"""

from __future__ import annotations


class AssayError(Exception):
    """Base class of every error the SDK raises."""


class ConfigurationError(AssayError, ValueError):
    pass


class InvalidValueError(AssayError, ValueError, TypeError):
    """A metric, config or summary value that cannot be logged.

    It is both a ValueError and a TypeError, so code that catches either keeps working.
    """


class ConnectionFailedError(AssayError, ConnectionError):
    pass


class ServerError(AssayError):
    """The server rejected a request; ``code`` is its machine-readable reason."""

    def __init__(self, message: str, code: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class AuthenticationError(ServerError):
    pass


class NotFoundError(ServerError):
    pass


class ConflictError(ServerError):
    pass


def server_error(message: str, code: str, status: int | None = None) -> ServerError:
    """Build the most specific ``ServerError`` for an HTTP status or error code."""
    if status == 401 or code in ("unauthorized", "invalid_api_key"):
        return AuthenticationError(message, code, status)
    if status == 404 or code.endswith("not_found"):
        return NotFoundError(message, code, status)
    if status == 409 or code == "run_exists":
        return ConflictError(message, code, status)
    return ServerError(message, code, status)
