"""ASSAY_MAX_SOCKETS_PER_USER: open websockets per user, share link or anonymous address."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reports.support import wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

import assay
from assay_server.settings import Settings, SettingsError
from conftest import RunningServer

PROJECT = "limited"
LIMIT = 2


@pytest.fixture
def limited(sqlite_settings: Settings, start_server: Any, tmp_path: Path) -> RunningServer:
    settings = dataclasses.replace(sqlite_settings, max_sockets_per_user=LIMIT)
    server: RunningServer = start_server(settings)
    assay.init(PROJECT, server=server.url, api_key=server.api_key, spool_dir=tmp_path).finish()
    return server


@pytest.fixture
def sockets() -> Iterator[list[ClientConnection]]:
    opened: list[ClientConnection] = []
    yield opened
    for socket in opened:
        socket.close()


def ws_url(server: RunningServer, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def open_socket(server: RunningServer, path: str, key: str | None = None) -> ClientConnection:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return connect(ws_url(server, path), additional_headers=headers, legacy=True)


def rejected(server: RunningServer, path: str, key: str | None = None) -> Any:
    """Return the HTTP response that rejected a websocket handshake to ``path``."""
    with pytest.raises(InvalidStatus) as caught:
        open_socket(server, path, key)
    return caught.value.response


def error_of(response: Any) -> dict[str, Any]:
    return json.loads(response.body)["error"]  # type: ignore[no-any-return]


LIVE = f"/api/v1/projects/{PROJECT}/live"


def test_socket_over_limit_rejected(
    limited: RunningServer, sockets: list[ClientConnection]
) -> None:
    sockets.extend(open_socket(limited, LIVE, limited.api_key) for _ in range(LIMIT))

    response = rejected(limited, LIVE, limited.api_key)

    assert response.status_code == 429
    assert error_of(response)["code"] == "too_many_requests"
    assert "ASSAY_MAX_SOCKETS_PER_USER" in error_of(response)["message"]
    assert int(response.headers["Retry-After"]) >= 1


def test_closed_socket_frees_its_place(
    limited: RunningServer, sockets: list[ClientConnection]
) -> None:
    sockets.extend(open_socket(limited, LIVE, limited.api_key) for _ in range(LIMIT))
    sockets.pop().close()

    def reopened() -> bool:
        try:
            sockets.append(open_socket(limited, LIVE, limited.api_key))
        except InvalidStatus:
            return False
        return True

    wait_for(reopened, what="the closed socket's place to be freed")
    assert len(sockets) == LIMIT


def test_socket_kinds_count_together(
    limited: RunningServer, sockets: list[ClientConnection]
) -> None:
    with limited.client() as http:
        report_id = http.post(f"/api/v1/projects/{PROJECT}/reports", json={}).json()["id"]
    sockets.append(open_socket(limited, LIVE, limited.api_key))
    sockets.append(open_socket(limited, f"/yjs/reports/{report_id}", limited.api_key))

    ingest = rejected(limited, "/api/v1/ingest", limited.api_key)
    report = rejected(limited, f"/yjs/reports/{report_id}", limited.api_key)

    assert ingest.status_code == 429
    assert report.status_code == 429


def test_other_owners_have_their_own_count(
    limited: RunningServer, sockets: list[ClientConnection]
) -> None:
    with limited.client() as http:
        public = http.patch(f"/api/v1/projects/{PROJECT}", json={"visibility": "public"})
        report_id = http.post(f"/api/v1/projects/{PROJECT}/reports", json={}).json()["id"]
        share = http.post(f"/api/v1/reports/{report_id}/shares", json={"role": "view"}).json()
    sockets.extend(open_socket(limited, LIVE, limited.api_key) for _ in range(LIMIT))

    # An anonymous visitor of the public project, and a share link, each count apart.
    sockets.extend(open_socket(limited, LIVE) for _ in range(LIMIT))
    shared = f"/yjs/reports/{report_id}?share={share['token']}"
    sockets.extend(open_socket(limited, shared) for _ in range(LIMIT))
    anonymous_over = rejected(limited, LIVE)
    shared_over = rejected(limited, shared)

    assert public.status_code == 200
    assert len(sockets) == 3 * LIMIT
    assert anonymous_over.status_code == 429
    assert shared_over.status_code == 429


def test_socket_limit_setting_checked() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"ASSAY_MAX_SOCKETS_PER_USER": "0"})

    assert "ASSAY_MAX_SOCKETS_PER_USER must be a positive number" in str(caught.value)
