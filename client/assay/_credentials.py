"""Where the SDK finds its server URL and API key.

In order: the arguments, then ``ASSAY_SERVER`` and ``ASSAY_API_KEY``, then the
file that ``assay login`` writes (``$ASSAY_CONFIG_DIR/credentials.json``, by
default under ``$XDG_CONFIG_HOME/assay`` or ``~/.config/assay``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from assay._errors import ConfigurationError


@dataclass(frozen=True)
class Credentials:
    server: str
    api_key: str

    def __repr__(self) -> str:
        return f"Credentials(server={self.server!r}, api_key='***')"


def config_dir() -> Path:
    explicit = os.environ.get("ASSAY_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "assay"


def credentials_file() -> Path:
    return config_dir() / "credentials.json"


def resolve(
    server: str | None = None,
    api_key: str | None = None,
    options: tuple[str, str] = ("server=", "api_key="),
) -> Credentials:
    """Combine the arguments, the environment and the stored login.

    ``options`` names the two arguments in the errors: the keyword arguments
    of the SDK by default, the command-line options for the ``assay`` command.
    """
    stored = _stored()
    server = server or os.environ.get("ASSAY_SERVER") or stored.get("server")
    api_key = api_key or os.environ.get("ASSAY_API_KEY") or stored.get("api_key")
    if not server:
        raise ConfigurationError(
            f"no assay server configured; pass {options[0]}, set ASSAY_SERVER, "
            "or run `assay login --server URL`"
        )
    if not api_key:
        raise ConfigurationError(
            f"no API key configured; pass {options[1]}, set ASSAY_API_KEY, or run `assay login`"
        )
    return Credentials(normalize_server(server), api_key)


def normalize_server(server: str) -> str:
    server = server.rstrip("/")
    if not server.startswith(("http://", "https://")):
        raise ConfigurationError(f"server URL must start with http:// or https://, got {server!r}")
    return server


def store(credentials: Credentials) -> Path:
    """Write the credentials file readable by its owner only."""
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"server": credentials.server, "api_key": credentials.api_key}, handle)
    os.chmod(path, 0o600)
    return path


def stored_key(server: str) -> str | None:
    """Return the API key stored in the credentials file for ``server``, or None.

    Only the file counts here, never ``ASSAY_API_KEY``.
    """
    try:
        stored = _stored()
    except ConfigurationError:
        return None
    if stored.get("server", "").rstrip("/") != server:
        return None
    return stored.get("api_key")


def _stored() -> dict[str, str]:
    path = credentials_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: {exc}; run `assay login` again or delete the file"
        ) from None
    return {key: value for key, value in data.items() if isinstance(value, str)}
