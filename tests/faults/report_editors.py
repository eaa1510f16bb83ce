"""Node Yjs editors of one report, the tokens they typed, and the stored document."""

from __future__ import annotations

import json
import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from pycrdt import Doc
from reports.support import NODE_CLIENT

from assay_server.database import Database
from assay_server.reports import store
from assay_server.reports.document import to_json
from assay_server.settings import Settings
from conftest import run_in_thread

#: Every edit inserts one token such as ``[a17]``: client ``a``'s edit number 17.
TOKEN = re.compile(r"\[[a-z]+\d+\]")


def tokens_in(content: dict[str, Any]) -> list[str]:
    """Return every token in a report's title and block texts, repeats included."""
    texts = [content["title"], *(str(block.get("text", "")) for block in content["blocks"])]
    return TOKEN.findall("".join(texts))


@dataclass(frozen=True)
class Edit:
    token: str
    #: Wall-clock time of the edit, in ms since the epoch (Node's ``Date.now()``).
    made_ms: int
    #: Whether the client's socket was open when it made the edit.
    online: bool


class Editor:
    """``yjs_client.cjs edit`` in a child process: a y-websocket client that edits on command."""

    def __init__(self, url: str, report_id: str, token: str, name: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is missing; install Node.js 18 or newer (make install needs it too)")
        self.name = name
        self.process = subprocess.Popen(
            [node, str(NODE_CLIENT), "edit", url, report_id, token, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        #: Connection status changes, in order: ``connecting``, ``connected``, ``disconnected``.
        self.statuses: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if event["event"] in ("connecting", "connected", "disconnected"):
                self.statuses.append(event["event"])
            else:
                self.events.put(event)

    def command(self, line: str, reply: str, timeout: float = 15) -> dict[str, Any]:
        """Send one command line; return the next event named ``reply``."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"editor {self.name}: no {reply!r} within {timeout} s after {line!r}; "
                    f"exit code {self.process.poll()}"
                ) from None
            if event["event"] == reply:
                return event
            if event["event"] == "error":
                raise AssertionError(f"editor {self.name}: {event['message']}")

    def state(self) -> dict[str, Any]:
        return self.command("state", "state")

    def stop(self) -> None:
        """Close stdin, which ends the client, and wait for the process."""
        try:
            self.process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        self.reader.join(5)


def stored_doc(settings: Settings, report_id: str) -> Doc[Any]:
    """Load the report from its database the way a starting server does."""

    async def load() -> list[bytes]:
        database = Database(settings.resolved_database_url)
        try:
            async with database.reading() as connection:
                return await store.load_updates(connection, report_id)
        finally:
            await database.close()

    doc: Doc[Any] = Doc()
    for update in run_in_thread(load()):
        doc.apply_update(update)
    return doc


def stored_content(settings: Settings, report_id: str) -> dict[str, Any]:
    """Return the stored report's content: ``{"title": str, "blocks": [...]}``."""
    return to_json(stored_doc(settings, report_id))
