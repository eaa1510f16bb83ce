"""Readiness: ``/readyz`` follows the database and the bus."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from assay_server.settings import Settings
from conftest import RunningServer, admin_execute, free_port


def test_ready_when_database_and_bus_answer(server: RunningServer) -> None:
    response = httpx.get(server.url + "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "bus": "ok"}


def test_unready_without_redis(postgres_settings: Settings, start_server: Any) -> None:
    settings = dataclasses.replace(
        postgres_settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"
    )
    server = start_server(settings)

    response = httpx.get(server.url + "/readyz", timeout=30)

    assert response.status_code == 503
    assert response.json()["bus"] == "unreachable"
    assert response.json()["database"] == "ok"


def test_unready_when_database_is_gone(
    postgres_settings: Settings, postgres_admin_url: str, start_server: Any
) -> None:
    server = start_server(postgres_settings)
    assert postgres_settings.database_url is not None
    name = postgres_settings.database_url.rsplit("/", 1)[1]

    admin_execute(postgres_admin_url, f"DROP DATABASE {name} WITH (FORCE)")
    response = httpx.get(server.url + "/readyz", timeout=30)

    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
