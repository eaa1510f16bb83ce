"""Helpers for access tests: extra users with API keys, anonymous clients, error codes."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import RunningServer
from userkeys import add_user

__all__ = ["add_user", "anonymous", "error_code"]


def anonymous(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def error_code(response: httpx.Response) -> Any:
    return response.json()["error"]["code"]
