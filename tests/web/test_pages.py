"""Pages without a browser: the sign-in redirect, the page shell and the static bundle."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from assay_server.api import error_response
from assay_server.errors import AssayError
from assay_server.pages import WebAppFiles
from conftest import RunningServer, run_in_thread, sign_in_with_key


def test_unauthenticated_page_redirects_to_sign_in(sqlite_server: RunningServer) -> None:
    response = httpx.get(sqlite_server.url + "/projects/demo?x=1")

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2Fprojects%2Fdemo%3Fx%3D1"


def test_forged_session_redirects_to_sign_in(sqlite_server: RunningServer) -> None:
    response = httpx.get(sqlite_server.url + "/", cookies={"assay_session": "forged"})

    assert response.status_code == 303
    assert response.headers["location"] == "/signin?next=%2F"


def test_sign_in_page_needs_no_session(sqlite_server: RunningServer) -> None:
    response = httpx.get(sqlite_server.url + "/signin")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Sign in to assay" in response.text
    assert "/login?token=API_KEY" in response.text
    assert '<script type="module" src="/static/app.js?v=' in response.text


def test_signed_in_page_loads_bundle(sqlite_server: RunningServer) -> None:
    with httpx.Client(base_url=sqlite_server.url) as browser:
        login = sign_in_with_key(browser, sqlite_server.api_key, "/projects/demo/runs/r1")
        shell = browser.get("/projects/demo/runs/r1")

    assert login.status_code == 303
    assert shell.status_code == 200
    assert '<div id="app">' in shell.text
    assert '<script type="module" src="/static/app.js?v=' in shell.text


def test_api_key_also_opens_pages(sqlite_server: RunningServer) -> None:
    with sqlite_server.client() as client:
        response = client.get("/")

    assert response.status_code == 200
    assert "/static/app.css?v=" in response.text


def test_unknown_page_is_not_found(sqlite_server: RunningServer) -> None:
    with sqlite_server.client() as client:
        response = client.get("/projects/demo/elsewhere")

    assert response.status_code == 404


def test_unbuilt_web_app_answers_404_naming_the_build(tmp_path: Path) -> None:
    files = WebAppFiles(directory=tmp_path / "static", check_dir=False)
    app = Starlette(
        routes=[Mount("/static", files)], exception_handlers={AssayError: error_response}
    )

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assay") as client:
            return await client.get("/static/app.js")

    response = run_in_thread(fetch())

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "web_app_not_built"
    assert "npm ci && npm run build" in response.json()["error"]["message"]
