"""Start one ``assay serve`` for a benchmark and wait until its health check passes."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def start_server(
    port: int,
    key: str,
    data_dir: Path,
    database_url: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
    extra_env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the server on ``port`` with the admin API key ``key``; its log goes to ``data_dir``.

    Without ``database_url`` it uses embedded SQLite in ``data_dir``, and without
    ``redis_url`` its in-process bus. A fresh random Redis key prefix is used
    unless ``redis_prefix`` is given. ``extra_env`` sets further ``ASSAY_*`` settings.
    With ``cpus``, the server runs on those CPUs only.
    """
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise SystemExit(f"port {port} is in use; pass a free one with --port")
    env = {
        **os.environ,
        "ASSAY_BOOTSTRAP_API_KEY": key,
        "ASSAY_PORT": str(port),
        "ASSAY_DATA_DIR": str(data_dir),
        "ASSAY_LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    if database_url:
        env["ASSAY_DATABASE_URL"] = database_url
    if redis_url:
        env["ASSAY_REDIS_URL"] = redis_url
        env["ASSAY_REDIS_PREFIX"] = redis_prefix or f"assay-bench:{secrets.token_hex(4)}:"
    with open(data_dir / "server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "assay", "serve"],
            env=env,
            stdout=log,
            stderr=log,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )
    try:
        wait_healthy(process, port, data_dir / "server.log")
    except BaseException:
        # Also on KeyboardInterrupt or a signal's exception, so no server outlives its caller.
        stop_server(process)
        raise
    return process


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Wait up to 60 s for the health check on ``port`` to pass, or raise RuntimeError."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"assay serve did not start; see {log}")
        time.sleep(0.1)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Send SIGTERM, then SIGKILL if the server has not exited ``timeout`` seconds later."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
