"""Readiness and Prometheus metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

import assay
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


def samples(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(server.url + "/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_ingested_points(server: RunningServer, tmp_path: Path) -> None:
    before = samples(server)
    run = assay.init("metrics", server=server.url, api_key=server.api_key, spool_dir=tmp_path)
    for step in range(10):
        run.log({"a": 1.0, "b": 2.0}, step=step)
    run.finish()
    after = samples(server)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("assay_ingested_points_total") == 20
    assert grew("assay_ingested_batches_total", outcome="stored") >= 1
    assert grew("assay_ack_seconds_count") >= 1
    assert after[("assay_open_sockets", (("kind", "ingest"),))] >= 0
