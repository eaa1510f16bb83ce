"""Server time to the first chart: one line panel over 100 runs of 100,000 steps.

The script loads ``--runs`` runs of ``--steps`` steps of one metric into a
fresh server (one NaN every 997 steps, as real runs have some), then requests
the line figure of that metric for all of them, as the workspace does when it
opens: ``GET /api/v1/projects/{p}/figure?key=loss&runs=...``. The first request
is timed on its own (nothing is cached yet), then ``--repeat`` more. Beside
the wall time of each request, the server's CPU time over it is read from
``/proc``, which a busy machine inflates less. The
server downsamples each run to the default number of samples, keeping each
bucket's minimum, maximum, NaN and infinities.

    python bench/first_chart.py                       # embedded SQLite
    python bench/first_chart.py --database-url postgresql://postgres@127.0.0.1:5432/assay_chart

The result is printed as JSON and written to ``bench/results/first-chart-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from assay import protocol

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from serving import start_server  # noqa: E402

PROJECT = "first-chart"
STEPS_PER_BATCH = 10_000


def batch_frame(seq: int, steps: int) -> bytes:
    first = seq * STEPS_PER_BATCH
    count = min(STEPS_PER_BATCH, steps - first)
    step_numbers = np.arange(first, first + count, dtype="<i8")
    values = np.exp(-step_numbers / 20_000) + np.random.default_rng(seq).normal(0, 0.01, count)
    values[step_numbers % 997 == 0] = np.nan
    return protocol.pack(
        {
            "type": "batch",
            "seq": seq,
            "steps": step_numbers.tobytes(),
            "times": np.full(count, time.time(), dtype="<f8").tobytes(),
            "metrics": {"loss": {"rows": None, "values": values.tobytes(), "kinds": None}},
        }
    )


async def load_run(url: str, key: str, index: int, steps: int) -> str:
    run_id = f"run-{index:03d}"
    hello = {
        "type": "hello",
        "protocol": protocol.PROTOCOL_VERSION,
        "project": PROJECT,
        "session": 1,
        "resume": "never",
        "run": {"id": run_id},
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with connect(url, additional_headers=headers, max_size=2**24, compression=None) as ws:
        await ws.send(protocol.pack(hello))
        welcome = protocol.unpack(await ws.recv(decode=False))
        assert welcome["type"] == "welcome", welcome
        batches = -(-steps // STEPS_PER_BATCH)
        for seq in range(batches):
            await ws.send(batch_frame(seq, steps))
        for _ in range(batches):
            reply = protocol.unpack(await ws.recv(decode=False))
            assert reply["type"] == "ack", reply
        await ws.send(protocol.pack({"type": "finish", "exit_code": 0}))
        finished = protocol.unpack(await ws.recv(decode=False))
        assert finished["type"] == "finished", finished
    return run_id


async def load_runs(args: argparse.Namespace, key: str) -> list[str]:
    url = f"ws://127.0.0.1:{args.port}/api/v1/ingest"
    run_ids: list[str] = []
    # A few runs at a time, so the load finishes without crowding the server.
    for start in range(0, args.runs, 8):
        indices = range(start, min(start + 8, args.runs))
        run_ids += await asyncio.gather(*(load_run(url, key, i, args.steps) for i in indices))
    return run_ids


def cpu_seconds(pid: int) -> float:
    """Return the user and system CPU seconds process ``pid`` has used (Linux only)."""
    # Fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_figure(
    args: argparse.Namespace, key: str, run_ids: list[str], pid: int
) -> tuple[float, float, int]:
    """Return the seconds one figure request took, the server's CPU seconds, and the points."""
    params: list[tuple[str, str | int | float | bool | None]] = [("key", "loss")]
    params += [("runs", run_id) for run_id in run_ids]
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{args.port}/api/v1/projects/{PROJECT}/figure"
    cpu_before = cpu_seconds(pid)
    began = time.perf_counter()
    response = httpx.get(url, params=params, headers=headers, timeout=120)
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(pid) - cpu_before
    response.raise_for_status()
    traces = response.json()["figure"]["data"]
    drawn = [t for t in traces if t.get("mode", "lines") == "lines" and t.get("x")]
    if len(drawn) < len(run_ids):
        raise RuntimeError(f"expected a line per run ({len(run_ids)}), got {len(drawn)}")
    return elapsed, cpu, sum(len(trace["x"]) for trace in traces)


def median_ms(seconds: list[float]) -> float | None:
    return round(statistics.median(seconds) * 1000, 1) if seconds else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100_000, help="steps per run")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests after the first")
    parser.add_argument("--port", type=int, default=8797, help="port of the server started")
    parser.add_argument("--database-url", help="PostgreSQL URL; default embedded SQLite")
    parser.add_argument("--redis-url", help="Redis URL; default in-process bus")
    args = parser.parse_args()
    key = "bench-" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="assay-chart-bench-") as scratch:
        server = start_server(args.port, key, Path(scratch), args.database_url, args.redis_url)
        try:
            began = time.perf_counter()
            run_ids = asyncio.run(load_runs(args, key))
            load_seconds = time.perf_counter() - began
            first, first_cpu, points = time_figure(args, key, run_ids, server.pid)
            later = [time_figure(args, key, run_ids, server.pid) for _ in range(args.repeat)]
        finally:
            server.terminate()
            server.wait(30)
    result: dict[str, Any] = {
        "runs": args.runs,
        "steps_per_run": args.steps,
        "backend": "postgresql" if args.database_url else "sqlite",
        "load_seconds": round(load_seconds, 1),
        "points_drawn": points,
        "first_request_ms": round(first * 1000, 1),
        "first_request_server_cpu_ms": round(first_cpu * 1000),
        "later_requests_median_ms": median_ms([one[0] for one in later]),
        "later_requests_server_cpu_median_ms": median_ms([one[1] for one in later]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    (results / f"first-chart-{int(time.time())}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
