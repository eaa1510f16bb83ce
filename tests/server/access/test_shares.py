"""Share links: view-only sockets, revocation, expiry, and what a link exposes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Array, Doc, Map, Text
from reports.support import NodeClient, YClient, report_content, wait_for, yjs_url
from sqlalchemy import update
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import assay
from access.support import add_user, anonymous, error_code
from assay import protocol
from assay_server.database import Database
from assay_server.ratelimit import SHARE_LOOKUPS, SHARE_WINDOW
from assay_server.reports import wire
from assay_server.reports.socket import RECHECK_INTERVAL
from assay_server.reports.tables import report_shares
from assay_server.settings import Settings
from conftest import RunningServer, live_messages, run_in_thread

PROJECT = "reports"
SHARE_CLIENT = Path(__file__).with_name("share_client.cjs")
HEALTHY = "summary.loss is finite"


class ShareClient(NodeClient):
    """``share_client.cjs``: a stock y-websocket provider holding only a share token."""

    def __init__(self, server: RunningServer, report_id: str, token: str) -> None:
        super().__init__(yjs_url(server), report_id, token, script=SHARE_CLIENT)

    def type_line(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        self.process.kill()
        self.process.communicate()


@pytest.fixture
def share_clients() -> Iterator[Any]:
    started: list[ShareClient] = []

    def start(server: RunningServer, report_id: str, token: str) -> ShareClient:
        client = ShareClient(server, report_id, token)
        started.append(client)
        return client

    yield start
    for client in started:
        client.stop()


@pytest.fixture
def shared_project(server: RunningServer, tmp_path: Path) -> dict[str, Any]:
    """Three runs: two healthy, one whose loss is NaN, and a report drawing the healthy ones."""
    ids = {}
    for name, loss in (("good-1", 0.5), ("good-2", 0.25), ("bad", float("nan"))):
        run = assay.init(
            PROJECT,
            name=name,
            config={"lr": 0.1, "secret_path": f"/home/alice/{name}"},
            server=server.url,
            api_key=server.api_key,
            spool_dir=tmp_path / name,
        )
        run.log({"loss": loss, "hidden": 1.0})
        run.finish()
        ids[name] = run.id
    with server.client() as http:
        report = http.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": "Shared"})
    assert report.status_code == 201, report.text
    report_id = report.json()["id"]
    add_grid(server, report_id, HEALTHY, "loss")
    return {"report_id": report_id, "runs": ids}


def add_grid(server: RunningServer, report_id: str, filter_text: str, metric: str) -> None:
    """Add a panel grid block through a signed-in pycrdt client on the report socket."""

    client = YClient(server, report_id)
    client.sync()

    def change(doc: Any) -> None:
        run_set = Map(
            {
                "id": "rs1",
                "name": "healthy",
                "filter": filter_text,
                "grouping": [],
                "sort": None,
                "colour": "#1f77b4",
                "active": True,
                "frozen": False,
            }
        )
        panel = Map(
            {
                "id": "p1",
                "type": "line",
                "x": 0,
                "y": 0,
                "w": 6,
                "h": 4,
                "options": {"key": metric},
            }
        )
        block = Map(
            {
                "id": "g1",
                "type": "panel_grid",
                "run_sets": Array([run_set]),
                "panels": Array([panel]),
            }
        )
        doc.get("blocks", type=Array).append(block)

    client.edit(change)
    wait_for(lambda: len(report_content(server, report_id)["blocks"]) == 1, what="grid stored")
    client.close()


def create_share(server: RunningServer, report_id: str, **body: Any) -> dict[str, Any]:
    with server.client() as http:
        response = http.post(f"/api/v1/reports/{report_id}/shares", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def with_share(server: RunningServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, params={"share": token}, timeout=30)


def test_view_link_cannot_change_document(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any, node_clients: Any
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    editor = node_clients("write", yjs_url(server), report_id, server.api_key, "editor text")
    assert editor.next_event() == {"event": "written"}

    viewer = share_clients(server, report_id, share["token"])
    synced = viewer.next_event()
    viewer.type_line("vandal text")
    assert viewer.next_event() == {"event": "sent"}
    denied = viewer.next_event()
    # A second editor that joins now receives the editor's text but never the viewer's.
    reader = node_clients("read", yjs_url(server), report_id, server.api_key, "editor", "5000")
    seen = reader.next_event()

    assert synced["event"] == "synced"
    assert synced["content"]["title"] == "Shared"
    assert denied["event"] == "denied"
    assert "may only view the report" in denied["reason"]
    texts = [block.get("text") for block in seen["content"]["blocks"]]
    assert "editor text" in texts
    assert "vandal text" not in texts
    stored = [block.get("text") for block in report_content(server, report_id)["blocks"]]
    assert "vandal text" not in stored


def test_edit_link_changes_document(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="edit")

    client = share_clients(server, report_id, share["token"])
    assert client.next_event()["event"] == "synced"
    client.type_line("from an edit link")
    assert client.next_event() == {"event": "sent"}

    wait_for(
        lambda: any(
            block.get("text") == "from an edit link"
            for block in report_content(server, report_id)["blocks"]
        ),
        what="the edit link's block stored",
    )


def test_revoked_link_closes_socket_within_second(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    viewer = share_clients(server, report_id, share["token"])
    assert viewer.next_event()["event"] == "synced"

    started = time.monotonic()
    with server.client() as http:
        revoked = http.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    closed = viewer.next_event()
    elapsed = time.monotonic() - started
    with with_share(server, share["token"]) as http:
        reopened = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
        page = http.get(f"/projects/{PROJECT}/reports/{report_id}")

    assert revoked.status_code == 204
    assert closed["event"] == "closed"
    assert closed["code"] == 4403
    assert elapsed < 1.0
    assert reopened.status_code == 401
    assert error_code(reopened) == "invalid_share"
    assert page.status_code == 401
    with pytest.raises(InvalidStatus) as denied:
        connect(f"{yjs_url(server)}/{report_id}?share={share['token']}")
    assert denied.value.response.status_code == 401


def test_expired_link_closes_and_stops_working(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view", expires_at=time.time() + 3)
    viewer = share_clients(server, report_id, share["token"])
    assert viewer.next_event()["event"] == "synced"

    closed = viewer.next_event()
    closed_at = time.time()
    with with_share(server, share["token"]) as http:
        reopened = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")

    assert closed["event"] == "closed"
    assert closed["code"] == 4403
    assert closed_at >= share["expires_at"]
    assert closed_at - share["expires_at"] < 1.0
    assert reopened.status_code == 401
    assert error_code(reopened) == "invalid_share"


def report_on_two_instances(
    settings: Settings, start_server: Any, tmp_path: Path
) -> tuple[RunningServer, RunningServer, str]:
    """Start two instances on one database and create a report through the first."""
    first = start_server(settings)
    second = start_server(settings)
    assay.init(PROJECT, server=first.url, api_key=first.api_key, spool_dir=tmp_path).finish()
    with first.client() as http:
        report_id = http.post(f"/api/v1/projects/{PROJECT}/reports", json={}).json()["id"]
    return first, second, str(report_id)


def test_expiry_closes_sockets_on_every_instance(
    postgres_settings: Settings, start_server: Any, share_clients: Any, tmp_path: Path
) -> None:
    """Sockets on an instance that did not create the link close within a second of expiry."""
    first, second, report_id = report_on_two_instances(postgres_settings, start_server, tmp_path)
    share = create_share(first, report_id, role="view", expires_at=time.time() + 4)
    viewers = [share_clients(server, report_id, share["token"]) for server in (first, second)]
    for viewer in viewers:
        assert viewer.next_event()["event"] == "synced"
    live = live_socket(second, share["token"])
    live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
    next_message(live, "subscribed")

    closed = []
    for viewer in viewers:
        event = viewer.next_event(timeout=15)
        closed.append((event, time.time()))
    with pytest.raises(ConnectionClosed) as live_closed:
        next_message(live, "never sent")
    live_closed_at = time.time()

    for event, closed_at in closed:
        assert event["event"] == "closed"
        assert event["code"] == 4403
        assert closed_at >= share["expires_at"]
        assert closed_at - share["expires_at"] < 1.0
    assert live_closed.value.rcvd is not None
    assert live_closed.value.rcvd.code == 4403
    assert "revoked or has expired" in live_closed.value.rcvd.reason
    assert live_closed_at - share["expires_at"] < 1.0
    live.close()


def test_link_opens_report_without_account(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    with with_share(server, share["token"]) as http:
        shown = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")
        page = http.get(f"/projects/{PROJECT}/reports/{report_id}")
    with anonymous(server) as http:
        without = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")

    assert share["url"].endswith(f"/projects/{PROJECT}/reports/{report_id}?share={share['token']}")
    assert shown.status_code == 200
    assert shown.json()["content"]["title"] == "Shared"
    assert page.status_code == 200
    assert without.status_code == 401


def test_link_lists_only_report_runs(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    runs = shared_project["runs"]
    share = create_share(server, report_id, role="view")
    base = f"/api/v1/projects/{PROJECT}"
    with with_share(server, share["token"]) as http:
        listed = http.get(f"{base}/runs", params={"filter": HEALTHY})
        queried = http.post(f"{base}/runs/query", json={"filter": HEALTHY})
        everything = http.get(f"{base}/runs")
        other = http.get(f"{base}/runs", params={"filter": "summary.loss is nan"})
        widened = http.post(f"{base}/runs/query", json={"filter": f"{HEALTHY} or name = bad"})
        one_run = http.get(f"{base}/runs/{runs['bad']}")
        history = http.get(f"{base}/runs/{runs['good-1']}/history")
        keys = http.get(f"{base}/keys")
        runsets = http.get(f"{base}/runsets")
        reports = http.get(f"{base}/reports")
        projects = http.get("/api/v1/projects")

    assert listed.status_code == 200
    assert sorted(run["name"] for run in listed.json()["runs"]) == ["good-1", "good-2"]
    assert queried.json()["runs"] == listed.json()["runs"]
    for refused in (everything, other, widened, one_run, history, keys, runsets, reports):
        assert refused.status_code == 403, refused.request.url
        assert error_code(refused) == "outside_report"
    assert projects.json()["projects"] == []


def test_link_shows_only_drawn_fields(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    share = create_share(server, shared_project["report_id"], role="view")
    with with_share(server, share["token"]) as http:
        listed = http.get(f"/api/v1/projects/{PROJECT}/runs", params={"filter": HEALTHY})

    run = listed.json()["runs"][0]
    assert set(run) == {
        "id",
        "name",
        "state",
        "created_at",
        "finished_at",
        "heartbeat_at",
        "config",
        "summary",
    }
    assert run["config"] == {}
    assert set(run["summary"]) == {"loss"}


def test_link_figure_limited_to_report(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    runs = shared_project["runs"]
    share = create_share(server, shared_project["report_id"], role="view")
    figure = f"/api/v1/projects/{PROJECT}/figure"
    good = [runs["good-1"], runs["good-2"]]
    with with_share(server, share["token"]) as http:
        drawn = http.get(figure, params={"key": "loss", "runs": good})
        outside = http.get(figure, params={"key": "loss", "runs": [*good, runs["bad"]]})
        hidden_metric = http.get(figure, params={"key": "hidden", "runs": good})
        no_runs = http.get(figure, params={"key": "loss"})

    assert drawn.status_code == 200
    assert sorted(drawn.json()["runs"]) == sorted(good)
    assert outside.status_code == 403
    assert runs["bad"] in outside.json()["error"]["message"]
    assert hidden_metric.status_code == 403
    assert no_runs.status_code == 400


def test_link_cannot_edit_or_manage(server: RunningServer, shared_project: dict[str, Any]) -> None:
    report_id = shared_project["report_id"]
    view = create_share(server, report_id, role="view")
    edit = create_share(server, report_id, role="edit")
    path = f"/api/v1/projects/{PROJECT}/reports/{report_id}"
    with with_share(server, view["token"]) as http:
        renamed = http.patch(path, json={"title": "taken over"})
        restored = http.post(f"{path}/versions/1/restore")
        shares = http.post(f"/api/v1/reports/{report_id}/shares", json={"role": "edit"})
    with with_share(server, edit["token"]) as http:
        deleted = http.delete(path)
        versions = http.post(f"{path}/versions", json={"label": "v"})
        listed = http.get(f"/api/v1/reports/{report_id}/shares")

    assert renamed.status_code == 403
    assert restored.status_code == 403
    assert shares.status_code in (401, 403)
    assert deleted.status_code == 403
    assert versions.status_code == 403
    assert listed.status_code in (401, 403)
    assert report_content(server, report_id)["title"] == "Shared"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/projects/{PROJECT}/members",
        f"/api/v1/projects/{PROJECT}/reports",
        f"/api/v1/projects/{PROJECT}/runsets",
        f"/api/v1/projects/{PROJECT}/layout",
        "/api/v1/me/keys",
        "/api/v1/users",
    ],
)
def test_link_reads_no_members_keys_or_reports(
    server: RunningServer, shared_project: dict[str, Any], path: str
) -> None:
    share = create_share(server, shared_project["report_id"], role="edit")
    with with_share(server, share["token"]) as http:
        response = http.get(path)

    assert response.status_code in (401, 403, 404), response.text
    assert shared_project["report_id"] not in response.text


def test_link_lists_no_private_project(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    share = create_share(server, shared_project["report_id"], role="edit")
    with with_share(server, share["token"]) as http:
        response = http.get("/api/v1/projects")

    # The link holder is anonymous here: only public projects are listed.
    assert response.status_code == 200
    assert PROJECT not in [project["name"] for project in response.json()["projects"]]


def test_link_for_other_report_grants_nothing(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    with server.client() as http:
        other = http.post(f"/api/v1/projects/{PROJECT}/reports", json={"title": "Private"})
    share = create_share(server, shared_project["report_id"], role="edit")
    with with_share(server, share["token"]) as http:
        response = http.get(f"/api/v1/projects/{PROJECT}/reports/{other.json()['id']}")

    assert response.status_code == 404


def test_guessed_tokens_rejected(server: RunningServer, shared_project: dict[str, Any]) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    path = f"/api/v1/projects/{PROJECT}/reports/{report_id}"
    with anonymous(server) as http:
        guesses = [
            http.get(path, params={"share": secrets.token_urlsafe(32)})
            for _ in range(SHARE_LOOKUPS)
        ]
        limited = http.get(path, params={"share": secrets.token_urlsafe(32)})
        # Past the limit, even the real token waits, so guessing cannot go on at speed.
        real = http.get(path, params={"share": share["token"]})

    assert {response.status_code for response in guesses} == {401}
    assert {error_code(response) for response in guesses} == {"invalid_share"}
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert real.status_code == 429


def test_limited_page_is_html_and_api_json(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    page_path = f"/projects/{PROJECT}/reports/{report_id}"
    api_path = f"/api/v1/projects/{PROJECT}/reports/{report_id}"
    with anonymous(server) as http:
        guesses = [
            http.get(page_path, params={"share": secrets.token_urlsafe(32)})
            for _ in range(SHARE_LOOKUPS)
        ]
        page = http.get(page_path, params={"share": secrets.token_urlsafe(32)})
        real_page = http.get(page_path, params={"share": share["token"]})
        api = http.get(api_path, params={"share": secrets.token_urlsafe(32)})

    assert {response.status_code for response in guesses} == {401}
    for limited in (page, real_page):
        assert limited.status_code == 429
        assert limited.headers["Content-Type"].startswith("text/html")
        assert 1 <= int(limited.headers["Retry-After"]) <= SHARE_WINDOW
        assert limited.headers["Cache-Control"] == "no-store"
        assert (
            f"Too many share-link look-ups: at most {SHARE_LOOKUPS} in {SHARE_WINDOW:g} seconds"
            in limited.text
        )
        assert 'id="app"' in limited.text
    assert api.status_code == 429
    assert api.headers["Content-Type"] == "application/json"
    assert 1 <= int(api.headers["Retry-After"]) <= SHARE_WINDOW
    assert error_code(api) == "too_many_requests"
    assert "too many share-link look-ups" in api.json()["error"]["message"]


def test_concurrent_guesses_stay_within_limit(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    path = f"/api/v1/projects/{PROJECT}/reports/{shared_project['report_id']}"

    async def guess_together() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.get(path, params={"share": secrets.token_urlsafe(32)})
                    for _ in range(SHARE_LOOKUPS + 20)
                )
            )
        return [response.status_code for response in responses]

    statuses = run_in_thread(guess_together())

    assert sorted(statuses) == [401] * SHARE_LOOKUPS + [429] * 20


def test_valid_link_requests_sent_together_not_limited(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    share = create_share(server, shared_project["report_id"], role="view")
    path = f"/api/v1/projects/{PROJECT}/reports/{shared_project['report_id']}"

    async def open_together() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.get(path, params={"share": share["token"]})
                    for _ in range(SHARE_LOOKUPS + 20)
                )
            )
        return [response.status_code for response in responses]

    assert run_in_thread(open_together()) == [200] * (SHARE_LOOKUPS + 20)


def test_valid_link_requests_not_limited(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    path = f"/api/v1/projects/{PROJECT}/reports/{report_id}"
    with with_share(server, share["token"]) as http:
        statuses = {http.get(path).status_code for _ in range(SHARE_LOOKUPS + 10)}

    assert statuses == {200}


def test_shares_listed_without_tokens(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    with server.client() as http:
        listed = http.get(f"/api/v1/reports/{report_id}/shares").json()["shares"]

    assert [entry["id"] for entry in listed] == [share["id"]]
    assert "token" not in listed[0]
    assert "url" not in listed[0]
    assert share["token"] not in json.dumps(listed)
    assert listed[0]["created_by"] == "admin"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"role": "admin"}, "share 'role' must be"),
        ({}, "share 'role' must be"),
        ({"role": "view", "expires_at": 1.0}, "is in the past"),
        ({"role": "view", "expires_at": "tomorrow"}, "is not an ISO 8601 time"),
        ({"role": "view", "expires_at": "2030-01-01T00:00:00"}, "with a time zone"),
        ({"role": "view", "expires_at": 1e12}, "more than ten years ahead"),
        ({"role": "view", "expires_at": True}, "must be null, Unix seconds"),
        ({"role": "view", "note": "x"}, "unknown share fields ['note']"),
    ],
)
def test_bad_share_rejected(
    server: RunningServer, shared_project: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    report_id = shared_project["report_id"]
    with server.client() as http:
        response = http.post(f"/api/v1/reports/{report_id}/shares", json=body)
        listed = http.get(f"/api/v1/reports/{report_id}/shares").json()["shares"]

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert listed == []


def test_viewer_member_cannot_share(server: RunningServer, shared_project: dict[str, Any]) -> None:
    key = add_user(server, "viewer")
    with server.client() as admin:
        admin.put(f"/api/v1/projects/{PROJECT}/members/viewer", json={"role": "viewer"})
    with server.client(key) as http:
        response = http.post(
            f"/api/v1/reports/{shared_project['report_id']}/shares", json={"role": "view"}
        )

    assert response.status_code == 403
    assert "managing share links needs the editor role" in response.json()["error"]["message"]


def test_unknown_share_revoke_not_found(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    with server.client() as http:
        response = http.delete(f"/api/v1/reports/{shared_project['report_id']}/shares/nope")

    assert response.status_code == 404
    assert error_code(response) == "share_not_found"


def test_revoke_closes_socket_on_other_instance(
    postgres_settings: Settings, start_server: Any, share_clients: Any, tmp_path: Path
) -> None:
    first, second, report_id = report_on_two_instances(postgres_settings, start_server, tmp_path)
    share = create_share(first, report_id, role="view")
    viewer = share_clients(second, report_id, share["token"])
    assert viewer.next_event()["event"] == "synced"
    live = live_socket(second, share["token"])
    live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
    next_message(live, "subscribed")

    started = time.monotonic()
    with first.client() as http:
        revoked = http.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    closed = viewer.next_event()
    elapsed = time.monotonic() - started
    with pytest.raises(ConnectionClosed) as live_closed:
        next_message(live, "never sent")
    live_elapsed = time.monotonic() - started

    assert revoked.status_code == 204
    assert closed["event"] == "closed"
    assert closed["code"] == 4403
    assert elapsed < 1.0
    assert live_closed.value.rcvd is not None
    assert live_closed.value.rcvd.code == 4403
    assert live_elapsed < 1.0
    live.close()


def live_socket(server: RunningServer, token: str) -> Any:
    url = server.url.replace("http://", "ws://") + f"/api/v1/projects/{PROJECT}/live?share={token}"
    return connect(url, legacy=True)


def next_message(socket: Any, wanted: str) -> dict[str, Any]:
    while True:
        for message in live_messages(socket.recv(timeout=15)):
            if message["type"] == wanted:
                return message


def test_link_live_socket_limited_to_report(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    runs = shared_project["runs"]
    share = create_share(server, shared_project["report_id"], role="view")
    with live_socket(server, share["token"]) as socket:
        socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        subscribed = next_message(socket, "subscribed")
        socket.send(protocol.pack({"type": "watch", "runsets": {"a": "summary.loss is nan"}}))
        refused = next_message(socket, "error")
        socket.send(protocol.pack({"type": "watch", "runsets": {"rs1": HEALTHY}}))
        members = next_message(socket, "members")

    streams = " ".join(subscribed["cursors"])
    assert subscribed["events"] is None
    assert runs["good-1"] in streams
    assert runs["good-2"] in streams
    assert runs["bad"] not in streams
    assert refused["code"] == "outside_report"
    assert sorted(members["runsets"]["rs1"]) == sorted([runs["good-1"], runs["good-2"]])


def test_revoked_link_loses_live_socket(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    with live_socket(server, share["token"]) as socket:
        socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        next_message(socket, "subscribed")
        started = time.monotonic()
        with server.client() as http:
            http.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
        with pytest.raises(ConnectionClosed) as closed:
            next_message(socket, "never sent")
        elapsed = time.monotonic() - started

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
    assert "revoked or has expired" in closed.value.rcvd.reason
    assert elapsed < 1.0


def revoke_in_database(server: RunningServer, share_id: str) -> None:
    async def revoke() -> None:
        database = Database(server.settings.resolved_database_url)
        try:
            async with database.transaction() as connection:
                await connection.execute(
                    update(report_shares)
                    .where(report_shares.c.id == share_id)
                    .values(revoked_at=time.time())
                )
        finally:
            await database.close()

    run_in_thread(revoke())


def test_live_socket_checks_link_on_subscribe(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    """A link revoked while Redis dropped the message still loses the socket at its next use."""
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    with live_socket(server, share["token"]) as socket:
        socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        next_message(socket, "subscribed")
        # Revoke in the database only, as if the revocation message were lost.
        revoke_in_database(server, share["id"])
        socket.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        with pytest.raises(ConnectionClosed) as closed:
            next_message(socket, "subscribed")

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403
    assert "invalid, revoked or expired" in closed.value.rcvd.reason


@pytest.mark.parametrize("sync_type", [1, 2])
def test_view_socket_raw_updates_rejected(
    server: RunningServer, shared_project: dict[str, Any], sync_type: int
) -> None:
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    before = report_content(server, report_id)
    attacker = YClient(server, report_id, **{})
    attacker.socket.close()
    attacker.socket = connect(
        f"{yjs_url(server)}/{report_id}?share={share['token']}", max_size=None, legacy=True
    )
    attacker.sync()
    vandal = Doc()
    vandal.get("title", type=Text).insert(0, "owned ")
    update_frame = b"\x00" + bytes([sync_type]) + encode_payload(vandal.get_update())

    attacker.socket.send(update_frame)
    reason = attacker.next_denial()
    attacker.close()

    assert "may only view the report" in reason
    assert report_content(server, report_id) == before


def encode_payload(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length as a lib0 variable-length unsigned integer."""
    length = len(payload)
    prefix = bytearray()
    while length > 0x7F:
        prefix.append(0x80 | (length & 0x7F))
        length >>= 7
    prefix.append(length)
    return bytes(prefix) + payload


def test_report_socket_checks_link_again(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any
) -> None:
    """A revocation whose message this instance missed still closes the socket."""
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    viewer = share_clients(server, report_id, share["token"])
    assert viewer.next_event()["event"] == "synced"

    started = time.monotonic()
    revoke_in_database(server, share["id"])
    closed = viewer.next_event(timeout=RECHECK_INTERVAL + 5)
    elapsed = time.monotonic() - started

    assert closed["event"] == "closed"
    assert closed["code"] == 4403
    assert elapsed < RECHECK_INTERVAL + 2


def test_view_link_whole_story(
    server: RunningServer, shared_project: dict[str, Any], share_clients: Any, node_clients: Any
) -> None:
    """A view link, end to end, as an anonymous stock y-websocket client in Node.

    The link loads the report, but its update changes nothing for an editor
    connected at the same time. Its holder reads only the runs the report's
    run set selects. Once the link is deleted, its socket closes within a
    second and the token opens nothing.
    """
    report_id = shared_project["report_id"]
    runs = shared_project["runs"]
    url = yjs_url(server)
    share = create_share(server, report_id, role="view")
    editor = node_clients("append", url, report_id, server.api_key)
    while editor.next_event()["event"] != "synced":
        pass

    # The anonymous client loads the report, and its update is rejected.
    viewer = share_clients(server, report_id, share["token"])
    synced = viewer.next_event()
    viewer.type_line("vandal text")
    sent = viewer.next_event()
    denied = viewer.next_event()
    # Frames reach the editor in order, so an update the server had taken
    # from the viewer would reach it before this later edit of another editor.
    marker = node_clients("write", url, report_id, server.api_key, "marker text")
    assert marker.next_event() == {"event": "written"}
    editor_texts = editor.next_event()
    while "marker text" not in editor_texts.get("texts", []):
        editor_texts = editor.next_event()

    assert synced["event"] == "synced"
    assert synced["content"]["title"] == "Shared"
    assert [block["type"] for block in synced["content"]["blocks"]] == ["panel_grid"]
    assert sent == {"event": "sent"}
    assert denied["event"] == "denied"
    assert "may only view the report" in denied["reason"]
    assert "vandal text" not in editor_texts["texts"]
    stored = [block.get("text") for block in report_content(server, report_id)["blocks"]]
    assert "vandal text" not in stored
    assert "marker text" in stored

    # The link's holder lists and reads only the runs of the report's run set.
    base = f"/api/v1/projects/{PROJECT}"
    good = sorted([runs["good-1"], runs["good-2"]])
    with with_share(server, share["token"]) as http:
        listed = http.get(f"{base}/runs", params={"filter": HEALTHY})
        queried = http.post(f"{base}/runs/query", json={"filter": HEALTHY})
        figure = http.get(f"{base}/figure", params={"key": "loss", "runs": good})
        outside = {
            "every run": http.get(f"{base}/runs"),
            "another filter": http.get(f"{base}/runs", params={"filter": "name = bad"}),
            "a widened query": http.post(
                f"{base}/runs/query", json={"filter": f"{HEALTHY} or name = bad"}
            ),
            "the other run": http.get(f"{base}/runs/{runs['bad']}"),
            "a drawn run by id": http.get(f"{base}/runs/{runs['good-1']}"),
            "a history": http.get(f"{base}/runs/{runs['bad']}/history"),
            "a figure of the other run": http.get(
                f"{base}/figure", params={"key": "loss", "runs": [*good, runs["bad"]]}
            ),
            "stored run sets": http.get(f"{base}/runsets"),
        }
    with live_socket(server, share["token"]) as live:
        live.send(protocol.pack({"type": "subscribe", "cursors": {}}))
        subscribed = next_message(live, "subscribed")

    assert sorted(run["id"] for run in listed.json()["runs"]) == good
    assert sorted(run["id"] for run in queried.json()["runs"]) == good
    assert figure.status_code == 200
    assert sorted(figure.json()["runs"]) == good
    for request_name, response in outside.items():
        assert response.status_code == 403, request_name
    assert runs["bad"] not in " ".join(subscribed["cursors"])

    # Deleting the link closes its socket within a second, and the token opens nothing.
    started = time.monotonic()
    with server.client() as http:
        deleted = http.delete(f"/api/v1/reports/{report_id}/shares/{share['id']}")
    closed = viewer.next_event(timeout=5)
    elapsed = time.monotonic() - started
    with with_share(server, share["token"]) as http:
        report = http.get(f"{base}/reports/{report_id}")
        page = http.get(f"/projects/{PROJECT}/reports/{report_id}")
        listed_after = http.get(f"{base}/runs", params={"filter": HEALTHY})
    with pytest.raises(InvalidStatus) as socket_refused:
        connect(f"{url}/{report_id}?share={share['token']}")

    assert deleted.status_code == 204
    assert closed["event"] == "closed"
    assert closed["code"] == 4403
    assert elapsed < 1.0
    assert report.status_code == 401
    assert error_code(report) == "invalid_share"
    assert page.status_code == 401
    assert listed_after.status_code == 401
    assert socket_refused.value.response.status_code == 401


def share_socket(server: RunningServer, report_id: str, token: str) -> YClient:
    """A frame-level y-websocket client that holds only a share token."""
    client = YClient(server, report_id)
    client.socket.close()
    client.socket = connect(
        f"{yjs_url(server)}/{report_id}?share={token}", max_size=None, legacy=True
    )
    return client


def test_view_link_awareness_reaches_editor(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    """View-only sockets may send their own awareness, and editors may echo it back.

    Stock y-websocket clients send every awareness change they apply, other
    clients' too, so an editor sends the viewer's state back unchanged.
    """
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    before = report_content(server, report_id)
    editor = YClient(server, report_id)
    editor.sync()
    viewer = share_socket(server, report_id, share["token"])
    viewer.sync()
    state = b'{"user":{"name":"reader"}}'
    frame = wire.encode_awareness([wire.AwarenessEntry(41, 1, state.decode())])

    viewer.socket.send(frame)
    relayed = editor.next_frame(lambda received: received[0] == 1 and b"reader" in received)
    editor.socket.send(relayed)
    editor.pump(0.5)
    echo_denials = list(editor.denials)
    changed = wire.encode_awareness([wire.AwarenessEntry(41, 2, '{"user":{"name":"forged"}}')])
    editor.socket.send(changed)
    forged = editor.next_denial()
    viewer.pump(0.5)

    assert relayed == frame
    assert echo_denials == []
    assert "client 41, which another user's connection owns" in forged
    assert viewer.denials == []
    assert report_content(server, report_id) == before
    editor.close()
    viewer.close()


def test_guessed_socket_tokens_limited(
    server: RunningServer, shared_project: dict[str, Any]
) -> None:
    """Guesses on the report socket count against the same limit as HTTP guesses."""
    report_id = shared_project["report_id"]
    share = create_share(server, report_id, role="view")
    statuses = []
    for _ in range(SHARE_LOOKUPS):
        with pytest.raises(InvalidStatus) as guessed:
            connect(f"{yjs_url(server)}/{report_id}?share={secrets.token_urlsafe(32)}")
        statuses.append(guessed.value.response.status_code)
    with pytest.raises(InvalidStatus) as limited:
        connect(f"{yjs_url(server)}/{report_id}?share={secrets.token_urlsafe(32)}")
    with with_share(server, share["token"]) as http:
        real = http.get(f"/api/v1/projects/{PROJECT}/reports/{report_id}")

    assert set(statuses) == {401}
    assert limited.value.response.status_code == 429
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    assert real.status_code == 429
