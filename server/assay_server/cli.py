"""Server commands behind ``assay serve`` and ``assay db upgrade``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from assay import protocol
from assay_server.app import create_app
from assay_server.database import Database
from assay_server.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def load_settings(args: argparse.Namespace) -> Settings | None:
    try:
        return Settings.from_env(
            **{
                name: getattr(args, name, None)
                for name in ("host", "port", "data_dir", "database_url", "redis_url")
            }
        )
    except SettingsError as exc:
        print(f"assay: error: {exc}", file=sys.stderr)
        return None


def serve(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if settings is None:
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    mode = "PostgreSQL" if settings.database_url else "embedded SQLite"
    bus = "Redis" if settings.redis_url else "in-process bus"
    print(
        f"assay serving on http://{settings.host}:{settings.port} ({mode}, {bus})",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=protocol.MAX_MESSAGE_BYTES,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0


def db_upgrade(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if settings is None:
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def upgrade() -> str | None:
        db = Database(settings.resolved_database_url)
        try:
            await db.upgrade()
            return await db.revision()
        finally:
            await db.close()

    revision = asyncio.run(upgrade())
    print(f"database is at revision {revision}")
    return 0
