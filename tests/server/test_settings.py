"""Settings from the environment and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay_server.settings import (
    DATABASE_SCHEMES,
    LOG_LEVELS,
    Setting,
    Settings,
    SettingsError,
    async_database_url,
    help_text,
    table,
)

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_use_embedded_database(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path)

    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.redis_url is None
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'assay.db'}"


def test_environment_is_cast_to_types() -> None:
    settings = Settings.from_env(
        {
            "ASSAY_PORT": "9000",
            "ASSAY_CRASH_TIMEOUT": "12.5",
            "ASSAY_DATA_DIR": "/tmp/x",
            "ASSAY_REDIS_URL": "redis://127.0.0.1:6379/2",
        }
    )

    assert settings.port == 9000
    assert settings.crash_timeout == 12.5
    assert settings.data_dir == Path("/tmp/x")
    assert settings.redis_url == "redis://127.0.0.1:6379/2"


def test_command_line_overrides_environment() -> None:
    settings = Settings.from_env({"ASSAY_PORT": "9000", "ASSAY_HOST": "0.0.0.0"}, port=9100)

    assert settings.port == 9100
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u:p@h:5433/db", "postgresql+asyncpg://u:p@h:5433/db"),
        ("sqlite:////var/assay.db", "sqlite+aiosqlite:////var/assay.db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u:p@h/db?ssl=require", "postgresql+asyncpg://u:p@h/db?ssl=require"),
        ("postgresql+psycopg2://u@h:5433/db", "postgresql+asyncpg://u@h:5433/db"),
        ("PostgreSQL+Psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite+aiosqlite:///assay.db", "sqlite+aiosqlite:///assay.db"),
        # libpq's sslmode becomes asyncpg's ssl, which takes the same modes.
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
        (
            "postgres://u@h/db?sslmode=verify-full&timeout=5",
            "postgresql+asyncpg://u@h/db?ssl=verify-full&timeout=5",
        ),
        # Where both are given, asyncpg's own wins and the URL is left as it is.
        (
            "postgresql://u@h/db?ssl=prefer&sslmode=require",
            "postgresql+asyncpg://u@h/db?ssl=prefer&sslmode=require",
        ),
        ("sqlite:///a.db?sslmode=require", "sqlite+aiosqlite:///a.db?sslmode=require"),
    ],
)
def test_standard_urls_get_async_driver(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


def test_psycopg_url_resolves_to_asyncpg() -> None:
    settings = Settings.from_env({"ASSAY_DATABASE_URL": "postgresql+psycopg://u@h/db"})

    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.resolved_database_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db/x",
        "postgresql+pg8000://user:hunter2@db/x",
        "user:hunter2@db/x",
    ],
)
def test_unknown_database_scheme_lists_accepted(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ASSAY_DATABASE_URL": url})

    message = str(raised.value)
    assert raised.value.setting == "database_url"
    assert message.startswith(
        "ASSAY_DATABASE_URL must be a PostgreSQL or SQLite URL starting with "
    )
    for scheme in DATABASE_SCHEMES:
        assert scheme in message, f"{scheme} is missing from the error"
    assert "postgresql+psycopg://" in DATABASE_SCHEMES
    assert "postgresql+psycopg2://" in DATABASE_SCHEMES
    assert message.endswith(f", got {url.replace('hunter2', '***')!r}")
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ASSAY_PORT": "eighty"}, "ASSAY_PORT must be an integer, got 'eighty'"),
        (
            {"ASSAY_LOCAL_BUS_BYTES": "abc"},
            "ASSAY_LOCAL_BUS_BYTES must be an integer, got 'abc'. Bytes of stream entries",
        ),
        ({"ASSAY_LIVE_STREAM_LENGTH": "1.5"}, "ASSAY_LIVE_STREAM_LENGTH must be an integer"),
        ({"ASSAY_CRASH_TIMEOUT": "soon"}, "must be a number, got 'soon'. .* default, 60.0."),
        ({"ASSAY_PORT": "0"}, "ASSAY_PORT must be an integer from 1 to 65535, got 0"),
        ({"ASSAY_PORT": "65536"}, "ASSAY_PORT must be an integer from 1 to 65535, got 65536"),
        ({"ASSAY_BOOTSTRAP_API_KEY": "short"}, "at least 16 characters"),
        ({"ASSAY_REDIS_URL": "localhost:6379"}, "must start with redis://"),
        ({"ASSAY_LOG_LEVEL": "loud"}, "ASSAY_LOG_LEVEL must be one of debug, info"),
        ({"ASSAY_DATABASE_URL": "mysql://u@h/db"}, "must be a PostgreSQL or SQLite URL"),
        (
            {"ASSAY_CRASH_TIMEOUT": "1", "ASSAY_HEARTBEAT_INTERVAL": "5"},
            "ASSAY_CRASH_TIMEOUT must be longer than ASSAY_HEARTBEAT_INTERVAL (5.0), got 1.0",
        ),
        ({"ASSAY_LIVE_QUEUE_BYTES": "0"}, "ASSAY_LIVE_QUEUE_BYTES must be a positive number"),
        ({"ASSAY_LOCAL_BUS_BYTES": "1000"}, "ASSAY_LOCAL_BUS_BYTES must be at least 1048576"),
        ({"ASSAY_STREAM_IDLE_TTL": "0"}, "ASSAY_STREAM_IDLE_TTL must be an integer from 1"),
        ({"ASSAY_STREAM_IDLE_TTL": "31536001"}, "from 1 to 31536000 seconds, got 31536001"),
    ],
)
def test_bad_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    pattern = message.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(SettingsError, match=pattern):
        Settings.from_env(environ)


NUMERIC = [setting for setting in table() if setting.allowed is not None]
FLOATS = [setting for setting in NUMERIC if isinstance(setting.default, float)]


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda setting: setting.env)
@pytest.mark.parametrize("raw", ["-1", "0"])
def test_numeric_setting_rejects_nonpositive(setting: Setting, raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({setting.env: raw})

    message = str(raised.value)
    assert message.startswith(f"{setting.env} must be {setting.allowed}, got ")
    assert message.endswith(f"got {raw}") or message.endswith(f"got {raw}.0")
    assert raised.value.setting == setting.name


@pytest.mark.parametrize("setting", FLOATS, ids=lambda setting: setting.env)
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_float_setting_rejects_non_finite(setting: Setting, raw: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({setting.env: raw})

    message = str(raised.value)
    assert message.startswith(f"{setting.env} must be {setting.allowed}, got ")
    assert message.endswith(("got nan", "got inf", "got -inf"))


def test_float_settings_are_listed() -> None:
    # Guards the non-finite test above against an empty list of cases.
    names = {setting.env for setting in FLOATS}

    assert "ASSAY_HEARTBEAT_INTERVAL" in names
    assert "ASSAY_CRASH_TIMEOUT" in names
    assert "ASSAY_SHUTDOWN_TIMEOUT" in names
    assert "ASSAY_REPORT_IDLE_TIMEOUT" in names
    assert "ASSAY_REPORT_FLUSH_INTERVAL" in names


@pytest.mark.parametrize(
    "environ",
    [
        {"ASSAY_PORT": "1"},
        {"ASSAY_PORT": "65535"},
        {"ASSAY_HEARTBEAT_INTERVAL": "0.001"},
        {"ASSAY_LIVE_STREAM_LENGTH": "1"},
        {"ASSAY_EVENT_STREAM_LENGTH": "1"},
        {"ASSAY_DB_POOL_SIZE": "1"},
        {"ASSAY_STREAM_IDLE_TTL": "1"},
        {"ASSAY_STREAM_IDLE_TTL": "31536000"},
        {"ASSAY_LOCAL_BUS_BYTES": "1048576"},
        {"ASSAY_MAX_FILTER_LENGTH": "100"},
        {"ASSAY_MAX_FILTER_LENGTH": "1000000"},
        {"ASSAY_REPORT_FLUSH_INTERVAL": "0.001"},
    ],
)
def test_bounds_accept_their_limits(environ: dict[str, str]) -> None:
    settings = Settings.from_env(environ)

    for env, raw in environ.items():
        name = next(setting.name for setting in table() if setting.env == env)
        assert getattr(settings, name) == float(raw)


def test_error_rewords_for_option() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({}, port=0)

    assert raised.value.setting == "port"
    assert raised.value.naming("--port") == "--port must be an integer from 1 to 65535, got 0"


def test_help_text_gives_ranges() -> None:
    text = " ".join(help_text(width=1000).split())

    for setting in NUMERIC:
        assert f"Must be {setting.allowed}." in text, f"range of {setting.env} is missing"
    assert "Must be a positive number of seconds. (default: 5.0)" in text


def test_pool_size_help_counts_overflow() -> None:
    setting = next(setting for setting in table() if setting.env == "ASSAY_DB_POOL_SIZE")

    assert "up to twice this many connections" in setting.help


def test_stream_length_help_covers_both_buses() -> None:
    for env in ("ASSAY_LIVE_STREAM_LENGTH", "ASSAY_EVENT_STREAM_LENGTH"):
        setting = next(setting for setting in table() if setting.env == env)
        assert "in-process bus" in setting.help, f"{env} help leaves out the in-process bus"
        assert "Redis" in setting.help, f"{env} help leaves out Redis"


def test_redis_password_is_hidden_in_errors() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ASSAY_REDIS_URL": "http://user:hunter2@cache:6379/0"})

    assert "hunter2" not in str(raised.value)
    assert "user:***@cache" in str(raised.value)


def test_database_password_is_hidden_in_errors() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ASSAY_DATABASE_URL": "mysql://user:hunter2@db/x"})

    assert "hunter2" not in str(raised.value)
    assert "user:***@db/x" in str(raised.value)


def test_every_setting_is_documented_in_readme() -> None:
    readme = (ROOT / "README.md").read_text()

    for setting in table():
        assert f"`{setting.env}`" in readme, f"{setting.env} is missing from README.md"


def test_log_level_help_names_every_level() -> None:
    setting = next(setting for setting in table() if setting.env == "ASSAY_LOG_LEVEL")
    readme = (ROOT / "README.md").read_text()
    readme_row = next(line for line in readme.splitlines() if "`ASSAY_LOG_LEVEL`" in line)

    for level in LOG_LEVELS:
        assert level in setting.help, f"{level} is missing from the help text"
        assert f"`{level}`" in readme_row, f"{level} is missing from README.md"


def test_unset_defaults_are_explained() -> None:
    # help_text prints "(default: ...)" only for defaults that are not None.
    for setting in table():
        if setting.default is None:
            assert "Default:" in setting.help, f"{setting.env} does not say what unset means"


def test_help_text_wraps_to_width() -> None:
    lines = help_text(width=60).splitlines()

    assert max(len(line) for line in lines) <= 60
    for setting in table():
        assert f"  {setting.env}" in lines, f"{setting.env} is missing"


def test_help_text_has_minimum_width() -> None:
    lines = help_text(width=10).splitlines()

    assert max(len(line) for line in lines) <= 40
    assert "      Address to listen on. (default:" in lines
