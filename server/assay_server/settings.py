"""Server settings, read once at start-up from the environment and the command line."""

from __future__ import annotations

import dataclasses
import os
import shutil
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting with a value the server cannot use."""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: name, environment variable, help text and default.

    A default of None means the setting is unset unless given, and its help
    text then describes what the server does instead.
    """

    name: str
    env: str
    help: str
    default: Any


#: Redis accepts larger expiries, but a stream idle for a year serves no live view.
MAX_STREAM_IDLE_TTL = 365 * 86_400
MIN_LOCAL_BUS_BYTES = 1024 * 1024
LOCAL_BUS_BYTES = 128 * 1024 * 1024
MIN_HELP_WIDTH = 40


def _field(default: Any, env: str, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    host: str = _field("127.0.0.1", "ASSAY_HOST", "Address to listen on.")
    port: int = _field(8080, "ASSAY_PORT", "TCP port to listen on.")
    data_dir: Path = _field(
        Path(".assay"),
        "ASSAY_DATA_DIR",
        "Directory for the embedded SQLite database when no database URL is set.",
    )
    database_url: str | None = _field(
        None,
        "ASSAY_DATABASE_URL",
        "PostgreSQL or SQLite URL, e.g. postgresql://user@host/db. "
        "Default: a SQLite file in the data directory.",
    )
    redis_url: str | None = _field(
        None,
        "ASSAY_REDIS_URL",
        "Redis URL, e.g. redis://host:6379/0. Default: an in-process bus, one instance only.",
    )
    redis_prefix: str = _field(
        "assay:", "ASSAY_REDIS_PREFIX", "Prefix of every Redis key this server writes."
    )
    bootstrap_api_key: str | None = _field(
        None,
        "ASSAY_BOOTSTRAP_API_KEY",
        "API key of the admin account created when the database has no users. "
        "Default: a generated key, printed once.",
    )
    db_pool_size: int = _field(
        20, "ASSAY_DB_POOL_SIZE", "Database connections per server process (PostgreSQL)."
    )
    heartbeat_interval: float = _field(
        5.0, "ASSAY_HEARTBEAT_INTERVAL", "Seconds between SDK heartbeats, sent to each SDK."
    )
    crash_timeout: float = _field(
        60.0,
        "ASSAY_CRASH_TIMEOUT",
        "Seconds without a heartbeat after which a running run is marked crashed.",
    )
    live_stream_length: int = _field(
        10_000,
        "ASSAY_LIVE_STREAM_LENGTH",
        "Approximate number of batches kept in each run's Redis live stream.",
    )
    event_stream_length: int = _field(
        100_000,
        "ASSAY_EVENT_STREAM_LENGTH",
        "Approximate number of events kept in each project's Redis event stream.",
    )
    stream_idle_ttl: int = _field(
        86_400,
        "ASSAY_STREAM_IDLE_TTL",
        "Seconds after its last entry that the bus deletes a run's live stream or a "
        "project's event stream; the database keeps everything.",
    )
    local_bus_bytes: int = _field(
        LOCAL_BUS_BYTES,
        "ASSAY_LOCAL_BUS_BYTES",
        "Bytes of stream entries the in-process bus keeps when ASSAY_REDIS_URL is "
        "unset; past them it drops the oldest entries of all streams.",
    )
    live_queue_bytes: int = _field(
        32 * 1024 * 1024,
        "ASSAY_LIVE_QUEUE_BYTES",
        "Bytes of live updates queued for one browser socket; a socket that falls "
        "further behind is told to reload.",
    )
    max_sockets_per_user: int = _field(
        1000,
        "ASSAY_MAX_SOCKETS_PER_USER",
        "Websockets (ingest, live and report together) that one user, share link or "
        "anonymous address may hold open on one instance; more are rejected with 429.",
    )
    max_filter_length: int = _field(
        10_000,
        "ASSAY_MAX_FILTER_LENGTH",
        "Maximum length of a run-set filter, in characters; longer filters are rejected "
        "with the error code filter_too_long.",
    )
    log_level: str = _field(
        "info",
        "ASSAY_LOG_LEVEL",
        f"Logging level of the server: {', '.join(LOG_LEVELS[:-1])} or {LOG_LEVELS[-1]}.",
    )
    log_format: str = _field(
        "text",
        "ASSAY_LOG_FORMAT",
        "Log line format: text, or json for one JSON object per line.",
    )
    shutdown_timeout: float = _field(
        10.0,
        "ASSAY_SHUTDOWN_TIMEOUT",
        "Maximum seconds from SIGTERM to exit: in-flight batches are committed and "
        "acknowledged, then websockets close with code 1012.",
    )
    report_idle_timeout: float = _field(
        30.0,
        "ASSAY_REPORT_IDLE_TIMEOUT",
        "Seconds a report stays loaded after its last client leaves.",
    )
    report_flush_interval: float = _field(
        0.2,
        "ASSAY_REPORT_FLUSH_INTERVAL",
        "Seconds between writes of a report's accepted updates; a crash loses at most this much.",
    )
    report_max_bytes: int = _field(
        8 * 1024 * 1024,
        "ASSAY_REPORT_MAX_BYTES",
        "Largest encoded report document, in bytes; updates beyond it are rejected.",
    )

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL with its async driver, derived from ``database_url``."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'assay.db').resolve()}"
        return async_database_url(self.database_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``), then ``overrides``.

        Overrides whose value is None are ignored, so unset command-line options
        fall back to the environment and then to the defaults.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(item.metadata["env"])
            if raw is not None and raw != "":
                values[item.name] = _cast(item, raw)
        values.update({name: value for name, value in overrides.items() if value is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port!r}")
        if self.bootstrap_api_key is not None and len(self.bootstrap_api_key) < 16:
            raise SettingsError(
                "ASSAY_BOOTSTRAP_API_KEY must be at least 16 characters long; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if self.crash_timeout <= self.heartbeat_interval:
            raise SettingsError(
                f"ASSAY_CRASH_TIMEOUT ({self.crash_timeout!r}) must be longer than "
                f"ASSAY_HEARTBEAT_INTERVAL ({self.heartbeat_interval!r})"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise SettingsError(
                f"ASSAY_REDIS_URL must start with redis://, rediss:// or unix://, "
                f"got {self.redis_url!r}"
            )
        if not 100 <= self.max_filter_length <= 1_000_000:
            raise SettingsError(
                "ASSAY_MAX_FILTER_LENGTH must be an integer from 100 to 1000000, "
                f"got {self.max_filter_length!r}"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                f"ASSAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                f"ASSAY_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, "
                f"got {self.log_format!r}"
            )
        if self.live_queue_bytes <= 0:
            raise SettingsError(
                f"ASSAY_LIVE_QUEUE_BYTES must be a positive number of bytes, "
                f"got {self.live_queue_bytes!r}"
            )
        if self.local_bus_bytes < MIN_LOCAL_BUS_BYTES:
            raise SettingsError(
                f"ASSAY_LOCAL_BUS_BYTES must be at least {MIN_LOCAL_BUS_BYTES} (1 MiB), "
                f"got {self.local_bus_bytes!r}"
            )
        if not 1 <= self.stream_idle_ttl <= MAX_STREAM_IDLE_TTL:
            raise SettingsError(
                f"ASSAY_STREAM_IDLE_TTL must be a whole number of seconds from 1 to "
                f"{MAX_STREAM_IDLE_TTL}, got {self.stream_idle_ttl!r}"
            )
        if self.max_sockets_per_user <= 0:
            raise SettingsError(
                "ASSAY_MAX_SOCKETS_PER_USER must be a positive number of sockets, "
                f"got {self.max_sockets_per_user!r}"
            )
        if self.shutdown_timeout <= 0:
            raise SettingsError(
                f"ASSAY_SHUTDOWN_TIMEOUT must be a positive number of seconds, "
                f"got {self.shutdown_timeout!r}"
            )
        for name in ("report_idle_timeout", "report_flush_interval", "report_max_bytes"):
            if getattr(self, name) <= 0:
                env = next(f.metadata["env"] for f in dataclasses.fields(self) if f.name == name)
                raise SettingsError(
                    f"{env} must be a positive number, got {getattr(self, name)!r}"
                )
        async_database_url(self.resolved_database_url)


def table() -> list[Setting]:
    """Every setting with its environment variable, help text and default, for docs and --help."""
    return [
        Setting(item.name, item.metadata["env"], item.metadata["help"], item.default)
        for item in dataclasses.fields(Settings)
    ]


def help_text(width: int | None = None) -> str:
    """Format every setting for ``assay serve --help``, wrapped to ``width`` columns.

    Each setting gets its environment variable on one line and, indented below
    it, its help text and default in argparse's "(default: ...)" form. The
    default width is argparse's: the terminal's width less 2, here at least 40.
    """
    if width is None:
        width = shutil.get_terminal_size().columns - 2
    width = max(width, MIN_HELP_WIDTH)
    lines = textwrap.wrap("environment variables (command-line options override them):", width)
    for setting in table():
        meaning = setting.help
        if setting.default is not None:
            meaning = f"{meaning} (default: {setting.default})"
        lines.append(f"  {setting.env}")
        lines.extend(
            textwrap.wrap(meaning, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
        )
    return "\n".join(lines)


_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


def async_database_url(url: str) -> str:
    """Rewrite a standard database URL to name the async driver the server uses."""
    scheme, separator, rest = url.partition("://")
    driver = _ASYNC_DRIVERS.get(scheme.lower())
    if not separator or driver is None:
        raise SettingsError(
            f"ASSAY_DATABASE_URL must be a postgresql:// or sqlite:/// URL, got {_hide(url)!r}"
        )
    return f"{driver}://{rest}"


def _hide(url: str) -> str:
    """Mask the password of a URL so that error messages can show the rest."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{location}"


def _cast(item: dataclasses.Field[Any], raw: str) -> Any:
    kind = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")
    casts: dict[str, Callable[[str], Any]] = {
        "int": int,
        "float": float,
        "Path": Path,
    }
    kind = kind.replace(" | None", "")
    cast = casts.get(kind, str)
    try:
        return cast(raw)
    except ValueError:
        expected = {"int": "a whole number", "float": "a number"}.get(kind, kind)
        raise SettingsError(
            f"{item.metadata['env']} must be {expected}, got {raw!r}. "
            f"{item.metadata['help']} Unset it for the default, {item.default}."
        ) from None
