"""The ``assay`` command: serve, db upgrade, login, admin, sync and import."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from assay import _credentials
from assay._errors import AssayError, ConfigurationError

#: The URL schemes the server accepts. PostgreSQL URLs of every driver connect through asyncpg.
DATABASE_URL_FORMS = (
    "postgresql://USER@HOST/DB (or postgres://, postgresql+asyncpg://, "
    "postgresql+psycopg://, postgresql+psycopg2://) or sqlite:///PATH "
    "(or sqlite+aiosqlite://)"
)

SERVER_MISSING = "the assay server is not installed; install it with: pip install 'assay[server]'"
IMPORT_MISSING = (
    "assay import needs the {name} package; install it with: pip install 'assay[import]'"
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args))
    except AssayError as exc:
        print(f"assay: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assay", description="assay experiment tracker")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser(
        "serve",
        help="run the server",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_server_options(serve)
    serve.set_defaults(handler=_serve)

    db = commands.add_parser("db", help="manage the database schema")
    db_commands = db.add_subparsers(title="db commands")
    upgrade = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.add_argument(
        "--data-dir", type=Path, help="directory of the embedded database (default .assay)"
    )
    upgrade.add_argument(
        "--database-url",
        help=f"database URL: {DATABASE_URL_FORMS} (default: assay.db in --data-dir)",
    )
    upgrade.set_defaults(handler=_db_upgrade)

    login = commands.add_parser(
        "login",
        help="sign in and store a server URL and API key",
        description="Sign in with a user name and password, create an API key for this "
        "machine and store it (with the server URL) in ASSAY_CONFIG_DIR/credentials.json, "
        "readable by you only. With --api-key or ASSAY_API_KEY, store that key instead.",
    )
    login.add_argument("--server", help="server URL (default: ASSAY_SERVER, else a prompt)")
    login.add_argument("--name", help="user name (default: a prompt)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    login.add_argument("--api-key", help="store this API key instead of signing in")
    login.set_defaults(handler=_login)

    admin = commands.add_parser("admin", help="manage accounts directly in the database")
    admin_commands = admin.add_subparsers(title="admin commands")
    set_password = admin_commands.add_parser(
        "set-password",
        help="set a user's password, read from a prompt",
        description="Set the password of user NAME in the server's database and end the "
        "user's browser sessions. Uses the same database settings as `assay serve`.",
    )
    set_password.add_argument("name", metavar="NAME", help="user name")
    set_password.add_argument(
        "--create", action="store_true", help="create the user when it does not exist"
    )
    set_password.add_argument(
        "--admin", action="store_true", help="with --create: make the new user an admin"
    )
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of a prompt",
    )
    set_password.add_argument(
        "--data-dir", type=Path, help="directory of the embedded database (default .assay)"
    )
    set_password.add_argument(
        "--database-url",
        help=f"database URL: {DATABASE_URL_FORMS} (default: assay.db in --data-dir)",
    )
    set_password.set_defaults(handler=_set_password)

    sync = commands.add_parser("sync", help="upload spooled or offline runs")
    sync.add_argument("path", type=Path, help="a spool directory, or a folder holding several")
    sync.add_argument("--server", help="server URL")
    sync.add_argument("--api-key", help="API key")
    sync.set_defaults(handler=_sync)

    importer = commands.add_parser(
        "import",
        help="import training logs written by other tools",
        description="Import TensorBoard, MLflow, PyTorch Lightning CSV, JSONL, Keras and CSV "
        "training logs as runs. Importing the same files again stores nothing twice.",
    )
    try:
        from assay.importers._command import add_arguments
    except ModuleNotFoundError as exc:
        missing = exc.name
        importer.set_defaults(handler=lambda args: _missing_import_package(missing))
        importer.add_argument("arguments", nargs=argparse.REMAINDER)
    else:
        add_arguments(importer)
        importer.set_defaults(handler=_import)
    return parser


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (ASSAY_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="TCP port, from 1 to 65535 (ASSAY_PORT, default 8080)"
    )
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (ASSAY_DATA_DIR, default .assay)"
    )
    parser.add_argument(
        "--database-url",
        help=f"database URL: {DATABASE_URL_FORMS} (ASSAY_DATABASE_URL, default: assay.db "
        "in --data-dir)",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis URL (ASSAY_REDIS_URL, default: the in-process bus, for one instance)",
    )


def _settings_help() -> str | None:
    """Format every server setting for ``assay serve --help`` (None without the server)."""
    try:
        from assay_server import settings
    except ImportError:
        return None
    return settings.help_text()


def _serve(args: argparse.Namespace) -> int:
    try:
        from assay_server import cli
    except ImportError:
        print(f"assay: error: {SERVER_MISSING}", file=sys.stderr)
        return 1
    return cli.serve(args)


def _db_upgrade(args: argparse.Namespace) -> int:
    try:
        from assay_server import cli
    except ImportError:
        print(f"assay: error: {SERVER_MISSING}", file=sys.stderr)
        return 1
    return cli.db_upgrade(args)


def _set_password(args: argparse.Namespace) -> int:
    try:
        from assay_server import cli
    except ImportError:
        print(f"assay: error: {SERVER_MISSING}", file=sys.stderr)
        return 1
    if args.admin and not args.create:
        print("assay: error: --admin only applies together with --create", file=sys.stderr)
        return 2
    return cli.set_password(args, lambda: read_password(args.password_stdin, confirm=True))


def read_password(from_stdin: bool, confirm: bool = False) -> str:
    """Read a password from stdin's first line, or from a prompt that does not echo it."""
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Password again: ") != password:
        raise ConfigurationError("the two passwords differ; nothing was changed")
    return password


def _login(args: argparse.Namespace) -> int:
    import os

    from assay._api import Api
    from assay._login import login_with_password

    server = args.server or os.environ.get("ASSAY_SERVER")
    if not server:
        server = input("Server URL: ").strip()
    server = _credentials.normalize_server(server)
    api_key = args.api_key or (None if args.name else os.environ.get("ASSAY_API_KEY"))
    revoked = None
    if api_key:
        credentials = _credentials.Credentials(server, api_key)
    else:
        name = args.name or input("Name: ").strip()
        login = login_with_password(
            server,
            name,
            read_password(args.password_stdin),
            replaces=_credentials.stored_key(server),
        )
        credentials, revoked = login.credentials, login.revoked_prefix
    with Api(credentials.server, credentials.api_key) as api:
        user = api.whoami()
    path = _credentials.store(credentials)
    print(f"Logged in to {credentials.server} as {user['name']}; saved in {path}")
    if revoked is not None:
        print(f"Revoked the API key {revoked}… that this login replaces")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from assay._sync import sync

    if not args.path.exists():
        print(f"assay: error: {args.path} does not exist", file=sys.stderr)
        return 1
    credentials = _credentials.resolve(args.server, args.api_key, ("--server", "--api-key"))
    results = sync(args.path, credentials)
    if not results:
        print(f"nothing to sync: no spooled runs under {args.path}")
        return 0
    failed = 0
    for result in results:
        if result.error:
            failed += 1
            print(f"{result.run}: failed: {result.error} (kept in {result.directory})")
        else:
            state = ", finished" if result.finished else ""
            print(f"{result.run}: uploaded {result.batches} batches{state}")
    return 1 if failed else 0


def _import(args: argparse.Namespace) -> int:
    from assay.importers._command import run_command

    return run_command(args)


def _missing_import_package(name: str | None) -> int:
    print(f"assay: error: {IMPORT_MISSING.format(name=name)}", file=sys.stderr)
    return 1
