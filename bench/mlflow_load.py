"""Measure the metric ingest throughput of an MLflow tracking server.

This module is the MLflow side of the ingest comparison. ``start_mlflow_server`` runs
``mlflow server`` from its own virtualenv against a freshly created PostgreSQL database,
``run_mlflow_load`` posts ``/runs/log-batch`` requests from concurrent runs for a fixed
time, and ``stop_server`` ends the server's process group.

The load generator itself needs only httpx and psycopg (the assay project venv), so mlflow
is never imported here. Run it alone with::

    python bench/mlflow_load.py --mlflow-python /work/bench-venvs/mlflow/bin/python

The server flags, environment variables and REST limits used below were read from the
source of mlflow 3.17.2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

logger = logging.getLogger("bench.mlflow_load")

API_PREFIX = "/api/2.0/mlflow"

# MLflow's limits for one log-batch request (MAX_METRICS_PER_BATCH and
# MAX_BATCH_LOG_REQUEST_SIZE in mlflow/utils/validation.py).
MAX_METRICS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 1_000_000

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# mlflow 3.17.2 installs SQLAlchemy 2.1, whose default driver for a bare postgresql://
# URL is psycopg 3. The URL names psycopg2 because the mlflow venv has psycopg2-binary.
DEFAULT_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_bench"

JSON_HEADERS = {"Content-Type": "application/json"}

# Distinct error messages kept in the result, and errors logged one by one before only
# the final count is reported.
MAX_ERROR_SAMPLES = 5
MAX_LOGGED_ERRORS = 5


def mlflow_server_env(pool_size: int, max_overflow: int) -> dict[str, str]:
    """Return the environment overrides that ``start_mlflow_server`` sets for mlflow.

    Each log-batch request uses two pooled connections at once, because ``log_batch``
    opens a session and ``_log_metrics`` opens a second one inside it. SQLAlchemy's
    default pool (5 + 10 overflow per worker) is below the 2 × 16 connections that 32
    clients spread over two workers can take, so requests would wait for a connection.
    NOTE: in 20 s runs of 32 clients on a 2-core VM, the default pool caused no errors,
    and p99 latency ranged from 4 to 18 s with either pool setting.
    """
    return {
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(max_overflow),
        # The job runner (huey consumer processes) is on by default with a database
        # backend. It serves no tracking request, so it would only take CPU from the
        # two cores that the benchmark measures.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # mlflow 3.x sends usage telemetry to an external host unless one of these is set.
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def recreate_database(database_url: str) -> None:
    """Drop the database named in ``database_url`` if it exists, then create it empty.

    Raises ValueError unless the URL names a database on a loopback host, because the
    drop deletes every table in it.
    """
    parts = urlsplit(database_url)
    if parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(
            f"database host {parts.hostname!r} is not a loopback address. "
            "recreate_database only drops databases on 127.0.0.1, localhost or ::1."
        )
    database_name = parts.path.lstrip("/")
    if not database_name or database_name == "postgres":
        raise ValueError(
            f"invalid database name {database_name!r} in {database_url!r}. "
            "Name a dedicated benchmark database, for example .../mlflow_bench."
        )

    # psycopg takes libpq URLs, which have no SQLAlchemy "+driver" suffix in the scheme.
    scheme = parts.scheme.split("+", 1)[0]
    admin_url = urlunsplit((scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True) as connection:
        name = sql.Identifier(database_name)
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    logger.info("Created empty database %s", database_name)


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free when checked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(
                f"port {port} on 127.0.0.1 is already in use. Pick another port."
            ) from exc


def start_mlflow_server(
    python: str,
    database_url: str,
    port: int,
    workdir: Path,
    *,
    workers: int = 2,
    pool_size: int = 20,
    max_overflow: int = 20,
    startup_timeout_s: float = 120.0,
) -> subprocess.Popen[bytes]:
    """Start ``mlflow server`` on 127.0.0.1:``port`` and wait until ``/health`` returns 200.

    ``python`` is the interpreter of a virtualenv with mlflow and a PostgreSQL driver
    installed, and ``database_url`` names that driver in SQLAlchemy form, for example
    ``postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_bench``.
    The database in ``database_url`` is dropped and created empty first, and mlflow
    creates its schema on start. The server runs in its own process group from
    ``workdir`` and writes its output to ``workdir/mlflow-server.log``. Its command line
    is ``proc.args``.

    With the defaults, the two workers can open at most 2 × (20 + 20) = 80 PostgreSQL
    connections, which fits PostgreSQL's default max_connections of 100.

    Raises RuntimeError if the server exits during startup and TimeoutError if it does
    not respond within ``startup_timeout_s``.
    """
    _ensure_port_free(port)
    recreate_database(database_url)

    workdir.mkdir(parents=True, exist_ok=True)
    artifact_root = workdir / "artifacts"
    artifact_root.mkdir(exist_ok=True)
    log_path = workdir / "mlflow-server.log"

    command = [
        python,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        database_url,
        "--default-artifact-root",
        str(artifact_root),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = {**os.environ, **mlflow_server_env(pool_size, max_overflow)}

    logger.info("Starting MLflow server: %s", shlex.join(command))
    with log_path.open("ab") as log_file:
        # The child keeps its own copy of the log file descriptor.
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    try:
        _wait_until_healthy(proc, f"http://127.0.0.1:{port}", log_path, startup_timeout_s)
    except BaseException:
        stop_server(proc)
        raise
    logger.info("MLflow server is ready on port %d (pid %d)", port, proc.pid)
    return proc


def _wait_until_healthy(
    proc: subprocess.Popen[bytes], base_url: str, log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    # trust_env=False keeps proxy variables from sending loopback requests elsewhere.
    with httpx.Client(base_url=base_url, timeout=5.0, trust_env=False) as client:
        while True:
            exit_code = proc.poll()
            if exit_code is not None:
                last_line = _read_last_line(log_path)
                raise RuntimeError(
                    f"MLflow server exited with code {exit_code} during startup "
                    f"({last_line}). See {log_path}"
                )
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"MLflow server timed out: {base_url}/health did not return 200 "
                    f"within {timeout_s:.0f} s. See {log_path}"
                )
            time.sleep(0.25)


def _read_last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Send SIGTERM to the server's process group, and SIGKILL if it outlives ``timeout_s``.

    The group is the one ``start_mlflow_server`` created, so it contains the mlflow CLI,
    uvicorn and its workers, and nothing else.
    """
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("MLflow server (pid %d) ignored SIGTERM, sending SIGKILL", proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
    logger.info("MLflow server (pid %d) stopped with code %s", proc.pid, proc.returncode)


class _LogBatchBodies:
    """Builder of log-batch request bodies from fragments encoded once up front.

    Every request carries new steps, because MLflow's metrics primary key is
    (run, key, timestamp, step, value, is_nan), so resending identical points would take
    its IntegrityError recovery path instead of the normal insert. Building one body of
    1000 metrics takes about 0.1 ms of client CPU (measured on a 2-core x86-64 VM).
    """

    def __init__(self, metrics_per_step: int, steps_per_request: int) -> None:
        self.metrics_per_step = metrics_per_step
        self.steps_per_request = steps_per_request
        self._key_prefixes = [
            f'{{"key":"metric_{index:03d}","value":' for index in range(metrics_per_step)
        ]
        # Decaying values, so points look like a loss curve and are not all equal.
        self._values = [repr(round(math.exp(-i / 64) + 0.01 * (i % 7), 6)) for i in range(256)]

    def build(self, run_id: str, first_step: int) -> bytes:
        timestamp_ms = time.time_ns() // 1_000_000
        entries = []
        for step in range(first_step, first_step + self.steps_per_request):
            suffix = f',"timestamp":{timestamp_ms},"step":{step}}}'
            for index, prefix in enumerate(self._key_prefixes):
                entries.append(prefix + self._values[(step + index) & 255] + suffix)
        body = (
            f'{{"run_id":"{run_id}","metrics":[' + ",".join(entries) + '],"params":[],"tags":[]}'
        )
        return body.encode()


class _LoadStats:
    """Counters for the measurement window, shared by all run tasks of one load."""

    def __init__(self) -> None:
        self.points = 0
        self.requests = 0
        self.latencies_s: list[float] = []
        self.errors = 0
        self.errors_outside_window = 0
        self.error_messages: Counter[str] = Counter()

    def record_error(self, message: str, in_window: bool) -> None:
        if in_window:
            self.errors += 1
        else:
            self.errors_outside_window += 1
        self.error_messages[message] += 1
        total = self.errors + self.errors_outside_window
        if total <= MAX_LOGGED_ERRORS:
            logger.warning("log-batch request failed: %s", message)
        elif total == MAX_LOGGED_ERRORS + 1:
            logger.warning("Further log-batch errors are counted but not logged")


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list, or NaN if it is empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def _post_json(client: httpx.AsyncClient, path: str, payload: Mapping[str, Any]) -> Any:
    response = await client.post(path, json=payload)
    if response.status_code != 200:
        raise RuntimeError(
            f"MLflow request POST {path} failed with HTTP {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json()


async def _create_runs(client: httpx.AsyncClient, runs: int) -> list[str]:
    experiment_name = f"ingest-load-{time.time_ns()}"
    created = await _post_json(client, "/experiments/create", {"name": experiment_name})
    experiment_id = created["experiment_id"]
    run_ids = []
    for index in range(runs):
        payload = {
            "experiment_id": experiment_id,
            "run_name": f"load-{index:03d}",
            "start_time": time.time_ns() // 1_000_000,
        }
        run = await _post_json(client, "/runs/create", payload)
        run_ids.append(run["run"]["info"]["run_id"])
    return run_ids


async def _post_batches(
    client: httpx.AsyncClient,
    run_id: str,
    bodies: _LogBatchBodies,
    window_start: float,
    window_end: float,
    stats: _LoadStats,
) -> None:
    """Post log-batch requests for one run back to back until ``window_end``.

    A request counts when its response arrives inside [window_start, window_end), so the
    warm-up and the requests still in flight at the end are left out.
    """
    points_per_request = bodies.metrics_per_step * bodies.steps_per_request
    step = 0
    while True:
        body = bodies.build(run_id, step)
        step += bodies.steps_per_request
        sent_at = time.perf_counter()
        if sent_at >= window_end:
            return
        try:
            response = await client.post("/runs/log-batch", content=body, headers=JSON_HEADERS)
        except httpx.HTTPError as exc:
            done_at = time.perf_counter()
            in_window = window_start <= done_at < window_end
            stats.record_error(f"{type(exc).__name__}: {exc}", in_window)
            # A refused or dropped connection fails at once, so pause instead of spinning.
            await asyncio.sleep(0.1)
            continue

        done_at = time.perf_counter()
        in_window = window_start <= done_at < window_end
        if response.status_code != 200:
            message = f"HTTP {response.status_code}: {response.text[:200]}"
            stats.record_error(message, in_window)
        if not in_window:
            continue
        stats.latencies_s.append(done_at - sent_at)
        if response.status_code == 200:
            stats.requests += 1
            stats.points += points_per_request


async def _measure_client_cpu(
    window_start: float, window_end: float, cpu_seconds: dict[str, float]
) -> None:
    await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
    cpu_seconds["start"] = time.process_time()
    await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
    cpu_seconds["end"] = time.process_time()


async def _finish_runs(client: httpx.AsyncClient, run_ids: list[str]) -> None:
    end_time = time.time_ns() // 1_000_000
    for run_id in run_ids:
        payload = {"run_id": run_id, "status": "FINISHED", "end_time": end_time}
        try:
            await _post_json(client, "/runs/update", payload)
        except (RuntimeError, httpx.HTTPError) as exc:
            logger.warning("Failed to mark MLflow run %s as FINISHED: %s", run_id, exc)


async def run_mlflow_load(
    base_url: str,
    runs: int = 32,
    metrics_per_step: int = 20,
    duration_s: float = 20.0,
    steps_per_request: int = 50,
    *,
    warmup_s: float = 3.0,
    request_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """Post metric batches from ``runs`` concurrent MLflow runs and measure the throughput.

    Each run is an asyncio task that sends one log-batch request of ``steps_per_request``
    steps × ``metrics_per_step`` metrics at a time, as soon as the previous one returns,
    through one shared httpx.AsyncClient with a connection per run. After ``warmup_s``
    seconds, responses are counted for ``duration_s`` seconds. Only points of HTTP 200
    responses count.

    Returns a dict with ``points``, ``seconds``, ``points_per_second``, ``requests``,
    ``latency_p50_ms`` and ``latency_p99_ms`` (over every HTTP response in the window,
    errors included), ``errors`` (failed requests in the window),
    ``errors_outside_window``, ``error_samples`` (most frequent messages) and
    ``client_cpu_seconds``. The CPU time is that of the whole calling process during the
    window, so it is the load generator's only if nothing else runs in the process.
    """
    points_per_request = metrics_per_step * steps_per_request
    if runs < 1 or metrics_per_step < 1 or steps_per_request < 1:
        raise ValueError("runs, metrics_per_step and steps_per_request must be at least 1")
    if points_per_request > MAX_METRICS_PER_REQUEST:
        raise ValueError(
            f"steps_per_request × metrics_per_step = {points_per_request} exceeds MLflow's "
            f"maximum of {MAX_METRICS_PER_REQUEST} metrics per log-batch request"
        )
    if duration_s <= 0 or warmup_s < 0:
        raise ValueError("duration_s must be positive and warmup_s must not be negative")

    bodies = _LogBatchBodies(metrics_per_step, steps_per_request)
    limits = httpx.Limits(max_connections=runs, max_keepalive_connections=runs)
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/") + API_PREFIX,
        limits=limits,
        timeout=request_timeout_s,
        trust_env=False,
    ) as client:
        version_response = await client.get(base_url.rstrip("/") + "/version")
        server_version = version_response.text.strip()
        run_ids = await _create_runs(client, runs)

        body_size = len(bodies.build(run_ids[0], 0))
        if body_size > MAX_REQUEST_BYTES:
            raise ValueError(
                f"a log-batch body has {body_size} bytes, over MLflow's limit of "
                f"{MAX_REQUEST_BYTES}. Lower steps_per_request or metrics_per_step."
            )

        stats = _LoadStats()
        cpu_seconds: dict[str, float] = {}
        window_start = time.perf_counter() + warmup_s
        window_end = window_start + duration_s
        logger.info(
            "Posting %d-point batches from %d MLflow runs: %.1f s warm-up, %.1f s measured",
            points_per_request,
            runs,
            warmup_s,
            duration_s,
        )
        await asyncio.gather(
            _measure_client_cpu(window_start, window_end, cpu_seconds),
            *(
                _post_batches(client, run_id, bodies, window_start, window_end, stats)
                for run_id in run_ids
            ),
        )
        await _finish_runs(client, run_ids)

    latencies = sorted(stats.latencies_s)
    client_cpu_seconds = cpu_seconds["end"] - cpu_seconds["start"]
    return {
        "system": "mlflow",
        "server_version": server_version,
        "runs": runs,
        "metrics_per_step": metrics_per_step,
        "steps_per_request": steps_per_request,
        "request_bytes": body_size,
        "warmup_s": warmup_s,
        "points": stats.points,
        "seconds": duration_s,
        "points_per_second": stats.points / duration_s,
        "requests": stats.requests,
        "latency_p50_ms": _percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": stats.errors,
        "errors_outside_window": stats.errors_outside_window,
        "error_samples": [
            message for message, _ in stats.error_messages.most_common(MAX_ERROR_SAMPLES)
        ],
        "client_cpu_seconds": client_cpu_seconds,
        "client_cpu_percent": 100 * client_cpu_seconds / duration_s,
    }


def format_result(result: Mapping[str, Any]) -> str:
    """Format a ``run_mlflow_load`` result as one line of text."""
    return (
        f"mlflow {result['server_version']}: {result['points']} points in "
        f"{result['seconds']:.1f} s = {result['points_per_second']:.0f} points/s, "
        f"{result['requests']} requests, p50 {result['latency_p50_ms']:.0f} ms, "
        f"p99 {result['latency_p99_ms']:.0f} ms, {result['errors']} errors, "
        f"client CPU {result['client_cpu_percent']:.1f}% of one core"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start an MLflow tracking server on PostgreSQL and measure its "
        "log-batch ingest throughput."
    )
    parser.add_argument(
        "--mlflow-python",
        required=True,
        help="Python interpreter of a virtualenv with mlflow and psycopg2-binary installed",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="PostgreSQL URL of the benchmark database, which is dropped and created "
        f"empty on a loopback host (default: {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="server port on 127.0.0.1 (default: a free port)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="directory for the server log and artifacts (default: a new temporary directory)",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")

    parser.add_argument("--runs", type=int, default=32, help="concurrent MLflow runs")
    parser.add_argument("--metrics-per-step", type=int, default=20, help="metric keys per step")
    parser.add_argument(
        "--steps-per-request", type=int, default=50, help="steps in one log-batch request"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of load before measuring"
    )

    parser.add_argument("--json", action="store_true", help="also print the result as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # httpx logs every request at INFO, which would cost client CPU during the load.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mlflow-load-"))
    port = args.port or find_free_port()
    proc = start_mlflow_server(
        args.mlflow_python, args.database_url, port, workdir, workers=args.workers
    )
    try:
        result = asyncio.run(
            run_mlflow_load(
                f"http://127.0.0.1:{port}",
                runs=args.runs,
                metrics_per_step=args.metrics_per_step,
                duration_s=args.duration,
                steps_per_request=args.steps_per_request,
                warmup_s=args.warmup,
            )
        )
    finally:
        stop_server(proc)

    print(format_result(result))
    if args.json:
        # start_mlflow_server always passes the command as a list of str.
        command = cast(list[str], proc.args)
        result = {**result, "server_command": shlex.join(command)}
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
