"""Fixtures for the deployment tests: nginx, a cluster of servers, a private PostgreSQL."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from web.browsing import BUNDLE, CHROMIUM, CHROMIUM_ARGS, WAIT_MS

from assay_server.settings import Settings
from conftest import ADMIN_KEY_PREFIX, ROOT, ServerProcess, answers, free_port
from deploy.deploy_support import ReportEditor, require, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOCATIONS = ROOT / "deploy" / "nginx" / "assay-locations.conf"


def nginx_config(prefix: Path, port: int, upstream_ports: list[int]) -> str:
    """Return an nginx.conf for loopback that includes the deployed proxy settings."""
    servers = "\n".join(
        f"        server 127.0.0.1:{upstream} max_fails=1 fail_timeout=5s;"
        for upstream in upstream_ports
    )
    # As root, nginx would run its workers as "nobody", which cannot write the
    # temporary files under a tmp_path of mode 0700.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{
    worker_connections 1024;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    upstream assay {{
        least_conn;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        include {LOCATIONS};
    }}
}}
"""


class Nginx:
    """Debian's nginx as a child process, with its prefix, pid and logs under ``prefix``."""

    def __init__(self, prefix: Path, upstream_ports: list[int]) -> None:
        self.prefix = prefix
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        self.config = prefix / "nginx.conf"
        self.config.write_text(nginx_config(prefix, self.port, upstream_ports))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *extra: str) -> list[str]:
        return [NGINX, "-p", str(self.prefix), "-e", str(self.prefix / "error.log")] + [
            "-c",
            str(self.config),
            *extra,
        ]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        with open(self.prefix / "stdout.log", "ab") as output:
            self.process = subprocess.Popen(self.command(), stdout=output, stderr=output)
        wait_until(
            lambda: answers("127.0.0.1", self.port) or self.process.poll() is not None,  # type: ignore[union-attr]
            timeout=30,
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"nginx did not start: {(self.prefix / 'error.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[[list[int]], Nginx]]:
    """Build ``Nginx`` objects in front of the given loopback ports; stopped at the end."""
    require(os.path.exists(NGINX), "nginx is missing; install Debian's nginx package")
    proxies: list[Nginx] = []

    def make(upstream_ports: list[int]) -> Nginx:
        proxy = Nginx(tmp_path / f"nginx-{len(proxies)}", upstream_ports)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@dataclass
class Cluster:
    servers: list[ServerProcess]
    proxy: Nginx
    api_key: str

    @property
    def url(self) -> str:
        return self.proxy.url


@pytest.fixture
def cluster(
    postgres_settings: Settings, server_process: Any, nginx: Callable[[list[int]], Nginx]
) -> Cluster:
    """Three ``assay serve`` processes on one database and one Redis prefix, behind nginx."""
    servers: list[ServerProcess] = [server_process(postgres_settings) for _ in range(3)]
    for server in servers:
        server.start()
    proxy = nginx([server.port for server in servers])
    proxy.start()
    return Cluster(servers, proxy, str(postgres_settings.bootstrap_api_key))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched once for the browser tests of a module."""
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing; install Debian's chromium package")
    require(
        BUNDLE.exists(),
        f"{BUNDLE} is missing; build the web app with `make web`",
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_page(
    chromium: Browser, cluster: Cluster
) -> Iterator[Callable[[ServerProcess, str], Page]]:
    """Yield a function that signs in on one instance, not through nginx, and opens ``path``.

    The function returns once the page has started loading, so that pages
    load side by side, and the caller waits for the elements it needs. Each
    page gets a browser context, and so cookies, of its own. At the end every
    context is closed, and the test fails if a page raised an error.
    """
    opened: list[tuple[Page, list[str]]] = []

    def open_on(server: ServerProcess, path: str) -> Page:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        opened.append((page, errors))
        page.goto(f"{server.url}/login?token={cluster.api_key}&next={path}")
        # The link shows a confirmation page; its button signs in and opens ``path``.
        page.click("button.confirm-sign-in", no_wait_after=True)
        return page

    yield open_on
    for page, _ in opened:
        page.context.close()
    raised = [error for _, errors in opened for error in errors]
    assert raised == [], f"a page raised: {raised}"


@pytest.fixture
def report_editors(tmp_path: Path) -> Iterator[Callable[[str, str, str], ReportEditor]]:
    """Start ``ReportEditor`` clients (URL, report id, API key); closed at the end."""
    started: list[ReportEditor] = []

    def start(url: str, report_id: str, token: str) -> ReportEditor:
        editor = ReportEditor(url, report_id, token, tmp_path / f"node-{len(started)}.log")
        started.append(editor)
        return editor

    yield start
    for editor in started:
        editor.close()


def postgres_binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test alone, which the test can stop and start."""

    data_dir: Path
    port: int
    pg_ctl: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def ctl(self, *arguments: str) -> None:
        subprocess.run(
            as_postgres([self.pg_ctl, "-D", str(self.data_dir), *arguments]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-l", str(self.data_dir / "server.log"), "-w", "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "-w", "stop")


def as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    require(
        initdb is not None and pg_ctl is not None,
        "PostgreSQL's initdb and pg_ctl are missing; install Debian's postgresql package",
    )
    assert initdb is not None and pg_ctl is not None
    # Not under tmp_path: pytest makes it mode 0700 and owned by root, so the
    # postgres user could not reach a data directory inside it.
    data_dir = Path(tempfile.mkdtemp(prefix="assay-test-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    subprocess.run(
        as_postgres([initdb, "-D", str(data_dir), "--auth=trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivatePostgres(data_dir, free_port(), pg_ctl)
    cluster.start()
    with psycopg.connect(cluster.admin_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE assay")
    yield cluster
    try:
        cluster.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped by the test
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def private_postgres_settings(
    private_postgres: PrivatePostgres, redis_url: str, redis_prefix: str, tmp_path: Path
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=private_postgres.database_url("assay"),
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        bootstrap_api_key=ADMIN_KEY_PREFIX + secrets.token_hex(8),
    )


class PrivateRedis:
    """A Redis server of this test alone, without persistence, that the test can stop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.log", "ab") as output:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    *("--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
                ],
                stdout=output,
                stderr=output,
            )
        wait_until(lambda: answers("127.0.0.1", self.port), timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    require(os.path.exists(REDIS_SERVER), "redis-server is missing; install Debian's redis-server")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
