"""How long ``run.log()`` blocks the training loop, with the sender streaming to a server.

Starts ``assay serve`` on the embedded default, then times each ``run.log()``
call of a 20-metric row while the background sender delivers them, in two
patterns: a tight loop (the worst case, the sender competing for the GIL the
whole time) and a loop that does 1 ms of work between calls.

    python bench/sdk_log.py --rows 200000
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

import assay


def start_server(port: int, key: str, data_dir: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASSAY_BOOTSTRAP_API_KEY": key, "ASSAY_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "assay", "serve", "--port", str(port), "--data-dir", data_dir],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("assay serve did not start")


def measure(run: assay.Run, rows: int, work_seconds: float) -> np.ndarray:
    durations = np.empty(rows)
    row = {f"metric_{index:02d}": 0.5 for index in range(20)}
    for step in range(rows):
        began = time.perf_counter_ns()
        run.log(row)
        durations[step] = time.perf_counter_ns() - began
        if work_seconds:
            until = time.perf_counter() + work_seconds
            while time.perf_counter() < until:
                pass
    return durations / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    key = "assay_bench_" + secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(args.port, key, data_dir)
        try:
            for label, rows, work in (
                ("tight loop", args.rows, 0.0),
                ("1 ms of work per step", min(args.rows, 5000), 0.001),
            ):
                run = assay.init(
                    "bench-log",
                    server=f"http://127.0.0.1:{args.port}",
                    api_key=key,
                    spool_dir=Path(data_dir) / "spool",
                )
                durations = measure(run, rows, work)
                began = time.perf_counter()
                run.finish(timeout=120)
                drained = time.perf_counter() - began
                print(
                    f"{label}: {rows} calls, p50 {np.percentile(durations, 50):.1f} us, "
                    f"p99 {np.percentile(durations, 99):.1f} us, "
                    f"max {durations.max() / 1000:.1f} ms, mean {durations.mean():.1f} us; "
                    f"finish() drained the rest in {drained:.2f} s",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
