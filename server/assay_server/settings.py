"""Server settings, read once at start-up from the environment and the command line."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import textwrap
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting with a value the server cannot use.

    ``setting`` is the field name of ``Settings``. The message names the
    environment variable, and ``naming`` words it for another source, such as
    a command-line option.
    """

    def __init__(self, setting: str, requirement: str) -> None:
        self.setting = setting
        self.requirement = requirement
        super().__init__(self.naming(environment_variable(setting)))

    def naming(self, name: str) -> str:
        """Return the message with ``name`` as the source of the value, e.g. ``--port``."""
        return f"{name} {self.requirement}"


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting accepts. NaN and infinity are never accepted.

    A value must be above ``minimum``, or equal to it too when ``inclusive``,
    and at most ``maximum`` when that is set.
    """

    minimum: float
    unit: str
    inclusive: bool = True
    maximum: float | None = None

    def contains(self, value: float) -> bool:
        if not math.isfinite(value) or value < self.minimum:
            return False
        if value == self.minimum and not self.inclusive:
            return False
        return self.maximum is None or value <= self.maximum

    def describe(self) -> str:
        """Describe the accepted values so that "must be " can precede them.

        A range with a maximum is worded as integers, because every setting
        with a maximum is an integer.
        """
        if self.maximum is not None:
            text = f"an integer from {self.minimum} to {self.maximum} {self.unit}"
        elif self.minimum == 0 and not self.inclusive:
            text = f"a positive number of {self.unit}"
        else:
            text = f"at least {self.minimum} {self.unit}"
        return text.rstrip()


def positive(unit: str) -> Bounds:
    """Accept every finite number above 0, which for an integer setting means 1 or more."""
    return Bounds(0, unit, inclusive=False)


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: name, environment variable, help text and default.

    A default of None means the setting is unset unless given, and its help
    text then describes what the server does instead. ``allowed`` describes
    the accepted values of a numeric setting, and is None for the others.
    """

    name: str
    env: str
    help: str
    default: Any
    allowed: str | None = None


#: Redis accepts larger expiries, but a stream idle for a year serves no live view.
MAX_STREAM_IDLE_TTL = 365 * 86_400
MIN_LOCAL_BUS_BYTES = 1024 * 1024
LOCAL_BUS_BYTES = 128 * 1024 * 1024
MIN_HELP_WIDTH = 40


def _field(default: Any, env: str, help: str, bounds: Bounds | None = None) -> Any:
    return field(default=default, metadata={"env": env, "help": help, "bounds": bounds})


@dataclass(frozen=True)
class Settings:
    host: str = _field("127.0.0.1", "ASSAY_HOST", "Address to listen on.")
    port: int = _field(8080, "ASSAY_PORT", "TCP port to listen on.", Bounds(1, "", maximum=65535))
    data_dir: Path = _field(
        Path(".assay"),
        "ASSAY_DATA_DIR",
        "Directory for the embedded SQLite database when no database URL is set.",
    )
    database_url: str | None = _field(
        None,
        "ASSAY_DATABASE_URL",
        "PostgreSQL or SQLite URL, e.g. postgresql://user@host/db. The server connects "
        "through asyncpg, also for postgresql+psycopg:// and postgresql+psycopg2:// URLs. "
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
        20,
        "ASSAY_DB_POOL_SIZE",
        "Size of each server process's database connection pool. On PostgreSQL the "
        "pool opens as many overflow connections again when busy, so a process holds "
        "up to twice this many connections.",
        positive("connections"),
    )
    heartbeat_interval: float = _field(
        5.0,
        "ASSAY_HEARTBEAT_INTERVAL",
        "Seconds between SDK heartbeats, sent to each SDK.",
        positive("seconds"),
    )
    crash_timeout: float = _field(
        60.0,
        "ASSAY_CRASH_TIMEOUT",
        "Seconds without a heartbeat after which a running run is marked crashed; "
        "longer than ASSAY_HEARTBEAT_INTERVAL.",
        positive("seconds"),
    )
    live_stream_length: int = _field(
        10_000,
        "ASSAY_LIVE_STREAM_LENGTH",
        "Batches kept in each run's live stream: this many in the in-process bus, "
        "about this many in Redis, which trims streams approximately.",
        positive("batches"),
    )
    event_stream_length: int = _field(
        100_000,
        "ASSAY_EVENT_STREAM_LENGTH",
        "Events kept in each project's event stream: this many in the in-process bus, "
        "about this many in Redis, which trims streams approximately.",
        positive("events"),
    )
    stream_idle_ttl: int = _field(
        86_400,
        "ASSAY_STREAM_IDLE_TTL",
        "Seconds after its last entry that the bus deletes a run's live stream or a "
        "project's event stream; the database keeps everything.",
        Bounds(1, "seconds", maximum=MAX_STREAM_IDLE_TTL),
    )
    local_bus_bytes: int = _field(
        LOCAL_BUS_BYTES,
        "ASSAY_LOCAL_BUS_BYTES",
        "Bytes of stream entries the in-process bus keeps when ASSAY_REDIS_URL is "
        "unset; past them it drops the oldest entries of all streams.",
        Bounds(MIN_LOCAL_BUS_BYTES, "bytes (1 MiB)"),
    )
    live_queue_bytes: int = _field(
        32 * 1024 * 1024,
        "ASSAY_LIVE_QUEUE_BYTES",
        "Bytes of live updates queued for one browser socket; a socket that falls "
        "further behind is told to reload.",
        positive("bytes"),
    )
    max_sockets_per_user: int = _field(
        1000,
        "ASSAY_MAX_SOCKETS_PER_USER",
        "Websockets (ingest, live and report together) that one user, share link or "
        "anonymous address may hold open on one instance; more are rejected with 429.",
        positive("sockets"),
    )
    max_filter_length: int = _field(
        10_000,
        "ASSAY_MAX_FILTER_LENGTH",
        "Maximum length of a run-set filter, in characters; longer filters are rejected "
        "with the error code filter_too_long.",
        Bounds(100, "characters", maximum=1_000_000),
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
        positive("seconds"),
    )
    report_idle_timeout: float = _field(
        30.0,
        "ASSAY_REPORT_IDLE_TIMEOUT",
        "Seconds a report stays loaded after its last client leaves.",
        positive("seconds"),
    )
    report_flush_interval: float = _field(
        0.2,
        "ASSAY_REPORT_FLUSH_INTERVAL",
        "Seconds between writes of a report's accepted updates; a crash loses at most this much.",
        positive("seconds"),
    )
    report_max_bytes: int = _field(
        8 * 1024 * 1024,
        "ASSAY_REPORT_MAX_BYTES",
        "Largest encoded report document, in bytes; updates beyond it are rejected.",
        positive("bytes"),
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
        """Raise SettingsError for the first value the server cannot use."""
        for item in dataclasses.fields(self):
            bounds = item.metadata["bounds"]
            value = getattr(self, item.name)
            if bounds is not None and not bounds.contains(value):
                raise SettingsError(item.name, f"must be {bounds.describe()}, got {value!r}")
        if self.bootstrap_api_key is not None and len(self.bootstrap_api_key) < 16:
            raise SettingsError(
                "bootstrap_api_key",
                "must be at least 16 characters long; generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        if self.crash_timeout <= self.heartbeat_interval:
            raise SettingsError(
                "crash_timeout",
                f"must be longer than ASSAY_HEARTBEAT_INTERVAL ({self.heartbeat_interval!r}), "
                f"got {self.crash_timeout!r}",
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise SettingsError(
                "redis_url",
                f"must start with redis://, rediss:// or unix://, got {_hide(self.redis_url)!r}",
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise SettingsError(
                "log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                "log_format", f"must be one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}"
            )
        async_database_url(self.resolved_database_url)


def environment_variable(setting: str) -> str:
    """Return the environment variable of the ``Settings`` field named ``setting``."""
    return next(item.env for item in table() if item.name == setting)


def table() -> list[Setting]:
    """Every setting with its environment variable, help text and default, for docs and --help."""
    rows = []
    for item in dataclasses.fields(Settings):
        bounds = item.metadata["bounds"]
        allowed = None if bounds is None else bounds.describe()
        rows.append(
            Setting(item.name, item.metadata["env"], item.metadata["help"], item.default, allowed)
        )
    return rows


def help_text(width: int | None = None) -> str:
    """Format every setting for ``assay serve --help``, wrapped to ``width`` columns.

    Each setting gets its environment variable on one line and, indented below
    it, its help text, the values it accepts when it is numeric, and its
    default in argparse's "(default: ...)" form. The
    default width is argparse's: the terminal's width less 2, here at least 40.
    """
    if width is None:
        width = shutil.get_terminal_size().columns - 2
    width = max(width, MIN_HELP_WIDTH)
    lines = textwrap.wrap("environment variables (command-line options override them):", width)
    for setting in table():
        meaning = setting.help
        if setting.allowed is not None:
            meaning = f"{meaning} Must be {setting.allowed}."
        if setting.default is not None:
            meaning = f"{meaning} (default: {setting.default})"
        lines.append(f"  {setting.env}")
        lines.extend(
            textwrap.wrap(meaning, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
        )
    return "\n".join(lines)


#: The accepted URL schemes and the SQLAlchemy driver the server uses for each.
#: The server always connects through its async drivers, so a URL written for
#: SQLAlchemy's psycopg or psycopg2 driver connects through asyncpg.
_ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
DATABASE_SCHEMES = tuple(f"{scheme}://" for scheme in _ASYNC_DRIVERS)


def async_database_url(url: str) -> str:
    """Rewrite a database URL to name the async driver the server uses.

    Raises SettingsError, with the password hidden, for a scheme not in ``DATABASE_SCHEMES``.
    """
    scheme, separator, rest = url.partition("://")
    driver = _ASYNC_DRIVERS.get(scheme.lower())
    if not separator or driver is None:
        accepted = f"{', '.join(DATABASE_SCHEMES[:-1])} or {DATABASE_SCHEMES[-1]}"
        raise SettingsError(
            "database_url",
            f"must be a PostgreSQL or SQLite URL starting with {accepted}, got {_hide(url)!r}",
        )
    if driver == "postgresql+asyncpg":
        rest = _asyncpg_query(rest)
    return f"{driver}://{rest}"


def _asyncpg_query(rest: str) -> str:
    """Rename libpq's ``sslmode`` query parameter to asyncpg's ``ssl``, which takes the same modes.

    SQLAlchemy passes the query parameters to ``asyncpg.connect()`` as
    keyword arguments, and that function has no ``sslmode``.
    """
    location, question, query = rest.partition("?")
    if not question:
        return rest
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if not any(name == "sslmode" for name, _ in pairs) or any(name == "ssl" for name, _ in pairs):
        return rest
    renamed = [("ssl" if name == "sslmode" else name, value) for name, value in pairs]
    return f"{location}?{urllib.parse.urlencode(renamed)}"


def _hide(url: str) -> str:
    """Mask the password of a URL so that error messages can show the rest.

    A value without ``://``, such as ``user:password@host/db``, is masked too.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
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
        expected = {"int": "an integer", "float": "a number"}.get(kind, kind)
        raise SettingsError(
            item.name,
            f"must be {expected}, got {raw!r}. "
            f"{item.metadata['help']} Unset it for the default, {item.default}.",
        ) from None
