"""Ingest throughput of one assay server process, compared with MLflow in the same run.

The load is 32 concurrent runs logging 20 metrics per step. For assay, each
run is a websocket sending pre-encoded batches of ``--steps-per-batch`` steps,
with up to ``--window`` batches awaiting acknowledgement, as the SDK does;
only acknowledged points count, and an acknowledgement means the batch is
committed to PostgreSQL and published to Redis. For MLflow, each run posts
``/runs/log-batch`` requests of 50 steps × 20 metrics, its maximum of 1,000
metrics per request (see ``bench/mlflow_load.py``). Both servers use the same
PostgreSQL; the script also records the assay server's peak RSS.

    python bench/ingest.py --mlflow-python /path/to/mlflow-venv/bin/python

Without ``--mlflow-python`` the script creates ``bench/.venv-mlflow`` with
``mlflow==3.17.*`` on first use (about 45 s and 860 MB), or skips MLflow with
``--skip-mlflow``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql
from websockets.asyncio.client import connect

from assay import protocol

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import mlflow_load  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def recreate_database(name: str) -> str:
    with psycopg.connect(ADMIN, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def start_assay(database_url: str, redis_url: str, port: int, key: str, log: Path) -> Any:
    env = {
        **os.environ,
        "ASSAY_DATABASE_URL": database_url,
        "ASSAY_REDIS_URL": redis_url,
        "ASSAY_REDIS_PREFIX": f"assay-bench:{secrets.token_hex(4)}:",
        "ASSAY_BOOTSTRAP_API_KEY": key,
        "ASSAY_PORT": str(port),
        "ASSAY_LOG_LEVEL": "warning",
    }
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "assay", "serve"], env=env, stdout=handle, stderr=handle
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"assay serve did not start; see {log}")
        time.sleep(0.1)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class Load:
    def __init__(self, metrics: int, steps_per_batch: int) -> None:
        rng = np.random.default_rng(0)
        values = rng.normal(size=(metrics, steps_per_batch))
        values[0, ::97] = np.nan  # a few NaN values, as real runs have
        self.metrics = {
            f"metric_{index:02d}": {
                "rows": None,
                "values": row.astype("<f8").tobytes(),
                "kinds": None,
            }
            for index, row in enumerate(values)
        }
        self.steps_per_batch = steps_per_batch
        self.points_per_batch = metrics * steps_per_batch

    def frame(self, seq: int) -> bytes:
        first = seq * self.steps_per_batch
        steps = np.arange(first, first + self.steps_per_batch, dtype="<i8")
        times = np.full(self.steps_per_batch, time.time(), dtype="<f8")
        return protocol.pack(
            {
                "type": "batch",
                "seq": seq,
                "steps": steps.tobytes(),
                "times": times.tobytes(),
                "metrics": self.metrics,
            }
        )


async def one_run(
    url: str,
    key: str,
    index: int,
    load: Load,
    window: int,
    start: float,
    end: float,
    stats: dict[str, Any],
) -> None:
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": "bench",
        "session": index + 1,
        "resume": "never",
        "run": {"id": f"run-{index:02d}-{secrets.token_hex(3)}"},
    }
    async with connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        max_size=2**24,
        compression=None,
        # A saturated server answers pings late; the benchmark measures throughput.
        ping_interval=None,
    ) as socket:
        await socket.send(protocol.pack(hello))
        welcome = protocol.unpack(await socket.recv(decode=False))
        assert welcome["type"] == "welcome", welcome
        sent_at: dict[int, float] = {}
        seq = 0
        while time.perf_counter() < end:
            while len(sent_at) < window:
                sent_at[seq] = time.perf_counter()
                await socket.send(load.frame(seq))
                seq += 1
            reply = protocol.unpack(await socket.recv(decode=False))
            if reply["type"] != "ack":
                stats["errors"] += 1
                continue
            now = time.perf_counter()
            began = sent_at.pop(reply["seq"])
            if start <= now <= end:
                stats["points"] += load.points_per_batch
                stats["latencies"].append(now - began)


async def run_assay_load(
    port: int,
    key: str,
    runs: int,
    metrics: int,
    steps_per_batch: int,
    window: int,
    warmup: float,
    duration: float,
) -> dict[str, Any]:
    load = Load(metrics, steps_per_batch)
    stats: dict[str, Any] = {"points": 0, "errors": 0, "latencies": []}
    start = time.perf_counter() + warmup
    end = start + duration
    cpu_before = time.process_time()
    await asyncio.gather(
        *(
            one_run(
                f"ws://127.0.0.1:{port}{protocol.INGEST_PATH}",
                key,
                index,
                load,
                window,
                start,
                end,
                stats,
            )
            for index in range(runs)
        )
    )
    latencies = sorted(stats["latencies"])
    return {
        "system": "assay",
        "points": stats["points"],
        "seconds": duration,
        "points_per_second": stats["points"] / duration,
        "batches": len(latencies),
        "latency_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "latency_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
        "errors": stats["errors"],
        "client_cpu_seconds": time.process_time() - cpu_before,
    }


def stored_points(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT coalesce(sum(count), 0) FROM metrics").fetchone()
    return int(row[0]) if row else 0


def mlflow_python(args: argparse.Namespace) -> str:
    if args.mlflow_python:
        return str(args.mlflow_python)
    venv = BENCH / ".venv-mlflow"
    python = venv / "bin" / "python"
    if not python.exists():
        print("creating bench/.venv-mlflow with mlflow 3.17 (first use only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "mlflow==3.17.*", "psycopg2-binary"],
            check=True,
        )
    return str(python)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores, {cpu}, {memory:.0f} GiB, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=32)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--steps-per-batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4, help="batches in flight per run")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--mlflow-python", type=Path)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "arguments": sys.argv[1:]}
    key = "assay_bench_" + secrets.token_urlsafe(24)
    database_url = recreate_database("assay_bench")
    port = mlflow_load.find_free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-server.log"
    server = start_assay(database_url, args.redis_url, port, key, log)
    try:
        assay_result = asyncio.run(
            run_assay_load(
                port,
                key,
                args.runs,
                args.metrics,
                args.steps_per_batch,
                args.window,
                args.warmup,
                args.duration,
            )
        )
        assay_result["peak_rss_mib"] = peak_rss_mib(server.pid)
        assay_result["stored_points"] = stored_points(database_url)
    finally:
        server.terminate()
        server.wait(30)
    results["assay"] = assay_result
    print(
        f"assay: {assay_result['points_per_second']:,.0f} points/s, "
        f"p50 {assay_result['latency_p50_ms']:.0f} ms, "
        f"p99 {assay_result['latency_p99_ms']:.0f} ms, {assay_result['errors']} errors, "
        f"peak RSS {assay_result['peak_rss_mib']:.0f} MiB",
        flush=True,
    )

    if not args.skip_mlflow:
        workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "assay-bench-mlflow"
        mlflow_url = "postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_bench"
        mlflow_port = mlflow_load.find_free_port()
        process = mlflow_load.start_mlflow_server(
            mlflow_python(args), mlflow_url, mlflow_port, workdir
        )
        try:
            mlflow_result = asyncio.run(
                mlflow_load.run_mlflow_load(
                    f"http://127.0.0.1:{mlflow_port}",
                    runs=args.runs,
                    metrics_per_step=args.metrics,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                )
            )
        finally:
            mlflow_load.stop_server(process)
        results["mlflow"] = mlflow_result
        results["ratio"] = assay_result["points_per_second"] / mlflow_result["points_per_second"]
        print(mlflow_load.format_result(mlflow_result), flush=True)
        print(f"assay / mlflow: {results['ratio']:.1f}x", flush=True)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
