"""The sign-in and account pages in Chromium, and the app under its security policy."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page

from conftest import RunningServer
from web.browsing import start_run, wait_for_points

PASSWORD = "correct horse battery"


@pytest.fixture
def alice(sqlite_server: RunningServer) -> str:
    with sqlite_server.client() as admin:
        response = admin.post("/api/v1/users", json={"name": "alice", "password": PASSWORD})
    assert response.status_code == 201
    return "alice"


@pytest.fixture
def policy_violations(page: Page) -> Iterator[list[str]]:
    """Console messages about Content-Security-Policy violations, collected for the test."""
    found: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", keep)
    yield found


def sign_in_with_form(page: Page, name: str, password: str) -> None:
    page.fill("form.sign-in input[name=name]", name)
    page.fill("form.sign-in input[name=password]", password)
    page.click("form.sign-in button[type=submit]")


def sign_in_status(server: RunningServer, password: str) -> int:
    response = httpx.post(
        server.url + "/api/v1/session", json={"name": "alice", "password": password}
    )
    return response.status_code


def test_sign_in_form_goes_to_next(
    page: Page, sqlite_server: RunningServer, alice: str, policy_violations: list[str]
) -> None:
    page.goto(sqlite_server.url + "/account")
    page.wait_for_selector("form.sign-in")
    redirected = page.url
    sign_in_with_form(page, alice, PASSWORD)
    page.wait_for_url("**/account")
    page.wait_for_selector("body[data-loaded] .signed-in-as")

    assert redirected == sqlite_server.url + "/signin?next=%2Faccount"
    assert page.inner_text(".signed-in-as") == "Signed in as alice"
    assert policy_violations == []


def test_wrong_password_shown_inline(page: Page, sqlite_server: RunningServer, alice: str) -> None:
    page.goto(sqlite_server.url + "/signin?next=/account")
    page.wait_for_selector("form.sign-in")
    sign_in_with_form(page, alice, "not the password")
    error = page.wait_for_selector("form.sign-in .form-error:not([hidden])")

    assert error.inner_text() == "invalid user name or password"
    assert page.url.endswith("/signin?next=/account")
    assert page.context.cookies() == []


def test_foreign_next_stays_on_server(
    page: Page, sqlite_server: RunningServer, alice: str
) -> None:
    page.goto(sqlite_server.url + "/signin?next=//evil.example/")
    page.wait_for_selector("form.sign-in")
    sign_in_with_form(page, alice, PASSWORD)
    page.wait_for_selector("body[data-loaded] h1:text('Projects')")

    assert page.url == sqlite_server.url + "/"


@pytest.fixture
def account_page(page: Page, sqlite_server: RunningServer, alice: str) -> Page:
    page.goto(sqlite_server.url + "/signin?next=/account")
    page.wait_for_selector("form.sign-in")
    sign_in_with_form(page, alice, PASSWORD)
    page.wait_for_selector("body[data-loaded] .signed-in-as")
    return page


def change_password(page: Page, current: str, new: str, repeat: str) -> str:
    page.fill("form.change-password input[name=current]", current)
    page.fill("form.change-password input[name=new]", new)
    page.fill("form.change-password input[name=repeat]", repeat)
    page.click("form.change-password button[type=submit]")
    status = page.wait_for_selector("form.change-password .form-status:not([hidden])")
    return status.inner_text()


def test_account_changes_password(account_page: Page, sqlite_server: RunningServer) -> None:
    new = "a brand new password"
    mismatch = change_password(account_page, PASSWORD, new, new + "!")
    wrong = change_password(account_page, "not the password", new, new)
    changed = change_password(account_page, PASSWORD, new, new)

    assert mismatch == "The two new passwords differ."
    assert wrong == "the current password is wrong"
    assert changed.startswith("Password changed.")
    assert sign_in_status(sqlite_server, PASSWORD) == 401
    assert sign_in_status(sqlite_server, new) == 200


def test_short_new_password_named(account_page: Page) -> None:
    status = change_password(account_page, PASSWORD, "short", "short")

    assert status == "password must be at least 10 characters long, got 5"


def test_account_creates_and_revokes_key(
    account_page: Page, sqlite_server: RunningServer, policy_violations: list[str]
) -> None:
    account_page.fill("form.create-key input[name=key-name]", "laptop")
    account_page.click("form.create-key button[type=submit]")
    key = account_page.wait_for_selector(".new-key:not([hidden]) .key-value").inner_text()
    row = account_page.wait_for_selector("table.api-keys tbody tr")
    row_text = row.inner_text()
    with sqlite_server.client(key) as client:
        before = client.get("/api/v1/whoami")
    account_page.click("table.api-keys button.revoke-key")
    account_page.wait_for_selector("table.api-keys tbody tr:has-text('revoked')")
    with sqlite_server.client(key) as client:
        after = client.get("/api/v1/whoami")

    assert key.startswith("assay_")
    assert "laptop" in row_text
    assert key[:10] in row_text
    assert key not in row_text
    assert before.json()["name"] == "alice"
    assert after.status_code == 401
    assert policy_violations == []


def test_sign_out_returns_to_sign_in(account_page: Page, sqlite_server: RunningServer) -> None:
    account_page.click("button.sign-out")
    account_page.wait_for_url("**/signin")
    account_page.goto(sqlite_server.url + "/account")
    account_page.wait_for_selector("form.sign-in")

    assert account_page.url == sqlite_server.url + "/signin?next=%2Faccount"


def test_workspace_draws_under_policy(
    page: Page,
    sqlite_server: RunningServer,
    alice: str,
    tmp_path: Path,
    policy_violations: list[str],
) -> None:
    with start_run(sqlite_server, tmp_path, "secured", name="r") as run:
        run.log({"loss": 1.0}, step=0)
        run.log({"loss": 0.5}, step=1)
    with sqlite_server.client() as admin:
        joined = admin.put("/api/v1/projects/secured/members/alice", json={"role": "viewer"})
    assert joined.status_code == 200
    page.goto(sqlite_server.url + "/signin?next=/projects/secured")
    page.wait_for_selector("form.sign-in")
    sign_in_with_form(page, alice, PASSWORD)
    page.wait_for_url("**/projects/secured")
    page.wait_for_selector("body[data-loaded]")
    wait_for_points(page, "loss", f"line-{run.id}", 2)
    page.wait_for_selector("body[data-live='subscribed']")

    assert policy_violations == []


class AttackPage(http.server.BaseHTTPRequestHandler):
    """Serves ``html`` at every path, as a page of another port of the same host."""

    html = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.html)))
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attack_site() -> Iterator[Callable[[str], str]]:
    """Start a server on another port of 127.0.0.1 that serves the HTML it is given."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(html: str) -> str:
        handler = type("Page", (AttackPage,), {"html": html.encode()})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/attack"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_same_site_page_cannot_write(
    account_page: Page,
    sqlite_server: RunningServer,
    alice: str,
    attack_site: Callable[[str], str],
) -> None:
    # Another port of the same host is the same site, so the browser sends
    # the SameSite=Lax cookie along, and only the CSRF check stops the write.
    target = sqlite_server.url + "/api/v1/me/keys"
    attack_url = attack_site(
        "<!doctype html><body><script>"
        f"fetch({target!r}, {{method: 'POST', mode: 'no-cors', credentials: 'include',"
        " headers: {'Content-Type': 'text/plain'}, body: JSON.stringify({name: 'stolen'})})"
        ".then(() => { document.body.dataset.sent = '1'; });"
        "</script>"
    )
    with account_page.expect_response(target) as sent:
        account_page.goto(attack_url)
    account_page.wait_for_selector("body[data-sent]", state="attached")

    # 403, not 401: the request carried the session cookie, and the CSRF
    # check rejected it before the route could use it.
    assert sent.value.status == 403
    assert key_names(sqlite_server, alice) == []


def key_names(server: RunningServer, name: str) -> list[str]:
    """Return the names of ``name``'s API keys, read with a session of their own."""
    with httpx.Client(base_url=server.url, headers={"Origin": server.url}) as client:
        signed_in = client.post("/api/v1/session", json={"name": name, "password": PASSWORD})
        assert signed_in.status_code == 200
        return [key["name"] for key in client.get("/api/v1/me/keys").json()["keys"]]


def signed_in_name(page: Page, server: RunningServer) -> str | None:
    """Return the name the page's browser context is signed in as, or None."""
    response = page.request.get(server.url + "/api/v1/whoami")
    if response.status != 200:
        return None
    return response.json()["name"]  # type: ignore[no-any-return]


def test_login_link_from_other_site_asks(
    account_page: Page, sqlite_server: RunningServer, attack_site: Callable[[str], str]
) -> None:
    """A link to ``/login?token=`` on another site stops at the confirmation page."""
    link = f"{sqlite_server.url}/login?token={sqlite_server.api_key}&next=/account"
    attack_url = attack_site(
        f"<!doctype html><body><script>location.href = {link!r};</script></body>"
    )
    account_page.goto(attack_url)
    account_page.wait_for_selector("button.confirm-sign-in")
    heading = account_page.locator("h1").inner_text()

    assert heading == "Sign in to assay as admin?"
    assert "signed in as alice" in account_page.locator(".signed-in-as").inner_text()
    assert signed_in_name(account_page, sqlite_server) == "alice"

    account_page.click("button.confirm-sign-in")
    account_page.wait_for_url(sqlite_server.url + "/account")
    assert signed_in_name(account_page, sqlite_server) == "admin"


def test_other_site_cannot_post_login(
    account_page: Page, sqlite_server: RunningServer, attack_site: Callable[[str], str]
) -> None:
    """A form on another site that posts an attacker's key is rejected."""
    target = sqlite_server.url + "/login"
    attack_url = attack_site(
        f'<!doctype html><body><form method="post" action="{target}">'
        f'<input name="token" value="{sqlite_server.api_key}"></form>'
        "<script>document.forms[0].submit();</script></body>"
    )
    with account_page.expect_response(target) as sent:
        account_page.goto(attack_url)

    assert sent.value.status == 403
    assert sent.value.json()["error"]["code"] == "csrf_cross_origin"
    assert signed_in_name(account_page, sqlite_server) == "alice"
