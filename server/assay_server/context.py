"""What every request handler shares: settings, database and bus."""

from __future__ import annotations

from dataclasses import dataclass

from assay_server.bus import Bus
from assay_server.database import Database
from assay_server.settings import Settings


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    bus: Bus
