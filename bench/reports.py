"""Report rooms under load: assay against @y/websocket-server and Hocuspocus v3.

One document, ``--clients`` editors (default 50), each appending to its own
markdown block ``--rate`` times per second (default 5) for ``--seconds``. The
Node driver (``bench/reports/driver.mjs``) runs every editor in one process
and measures fan-out latency, from an edit to its arrival at five observing
editors. The same y-websocket clients drive assay and ``@y/websocket-server``
0.1.1; Hocuspocus 3.4.4, which speaks its own protocol, is driven by
``@hocuspocus/provider``. Each server runs alone in turn, and its CPU time and
RSS are read from ``/proc``.

    cd bench/reports && npm ci && cd ../.. && .venv/bin/python bench/reports.py

The result is printed as a Markdown table and written to
``bench/results/reports-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import assay

BENCH = Path(__file__).resolve().parent
NODE_DIR = BENCH / "reports"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server on port {port} did not start") from None
            time.sleep(0.05)


@contextmanager
def running(command: list[str], port: int, env: dict[str, str]) -> Iterator[int]:
    """Start a server, wait for its port, and yield its pid; stop it afterwards."""
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process)
        yield process.pid
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive(kind: str, url: str, room: str, token: str, args: argparse.Namespace, pid: int) -> Any:
    """Run the Node drivers against a server; return latencies, CPU and RSS."""
    rss_before = rss_bytes(pid)
    cpu_before = cpu_seconds(pid)
    started = time.monotonic()
    per_process = -(-args.clients // args.processes)
    drivers = []
    for first in range(0, args.clients, per_process):
        count = min(per_process, args.clients - first)
        command = [kind, url, room, token, args.clients, first, count, args.rate, args.seconds]
        drivers.append(
            subprocess.Popen(
                ["node", str(NODE_DIR / "driver.mjs"), *map(str, command), str(int(first == 0))],
                stdout=subprocess.PIPE,
                text=True,
                cwd=NODE_DIR,
            )
        )
    outputs = [json.loads(driver.communicate()[0].strip().splitlines()[-1]) for driver in drivers]
    elapsed = time.monotonic() - started
    latencies = sorted(value for output in outputs for value in output["latencies"])
    return {
        "sent": sum(output["sent"] for output in outputs),
        "samples": len(latencies),
        "p50_ms": quantile(latencies, 0.5),
        "p99_ms": quantile(latencies, 0.99),
        "max_ms": latencies[-1],
        "server_cpu_percent": 100 * (cpu_seconds(pid) - cpu_before) / elapsed,
        "server_rss_before_mib": rss_before / 2**20,
        "server_rss_after_mib": rss_bytes(pid) / 2**20,
    }


def quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def bench_assay(args: argparse.Namespace, data_dir: Path) -> Any:
    port = free_port()
    key = "bench-" + secrets.token_hex(16)
    env = {
        "ASSAY_PORT": str(port),
        "ASSAY_DATA_DIR": str(data_dir),
        "ASSAY_BOOTSTRAP_API_KEY": key,
        "ASSAY_LOG_LEVEL": "warning",
    }
    with running([sys.executable, "-m", "assay", "serve"], port, env) as pid:
        url = f"http://127.0.0.1:{port}"
        assay.init("bench", server=url, api_key=key, spool_dir=data_dir / "spool").finish()
        created = httpx.post(
            f"{url}/api/v1/projects/bench/reports",
            json={"title": "bench"},
            headers={"Authorization": f"Bearer {key}"},
        )
        created.raise_for_status()
        room = created.json()["id"]
        return drive("y-websocket", f"ws://127.0.0.1:{port}/yjs/reports", room, key, args, pid)


def bench_y_websocket_server(args: argparse.Namespace) -> Any:
    port = free_port()
    server = NODE_DIR / "node_modules/@y/websocket-server/src/server.js"
    env = {"HOST": "127.0.0.1", "PORT": str(port)}
    with running(["node", str(server)], port, env) as pid:
        return drive("y-websocket", f"ws://127.0.0.1:{port}", "bench", "", args, pid)


def bench_hocuspocus(args: argparse.Namespace) -> Any:
    port = free_port()
    command = ["node", str(NODE_DIR / "hocuspocus_server.mjs"), str(port)]
    with running(command, port, {}) as pid:
        return drive("hocuspocus", f"ws://127.0.0.1:{port}", "bench", "", args, pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="editors on the report")
    parser.add_argument("--rate", type=float, default=5, help="edits per second per editor")
    parser.add_argument("--seconds", type=float, default=20, help="length of the measured run")
    parser.add_argument(
        "--processes", type=int, default=5, help="Node driver processes the editors are split over"
    )
    args = parser.parse_args()
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").exists():
        print("needs Node.js and `npm ci` in bench/reports", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            {"server": "assay", **bench_assay(args, Path(tmp))},
            {"server": "@y/websocket-server 0.1.1", **bench_y_websocket_server(args)},
            {"server": "@hocuspocus/server 3.4.4", **bench_hocuspocus(args)},
        ]
    print("| server | edits sent | samples | p50 | p99 | max | server CPU | RSS before / after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for item in results:
        print(
            f"| {item['server']} | {item['sent']} | {item['samples']} "
            f"| {item['p50_ms']:.1f} ms | {item['p99_ms']:.1f} ms | {item['max_ms']:.1f} ms "
            f"| {item['server_cpu_percent']:.0f} % "
            f"| {item['server_rss_before_mib']:.0f} / {item['server_rss_after_mib']:.0f} MiB |"
        )
    out = BENCH / "results" / f"reports-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform()}
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "results": results}))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
