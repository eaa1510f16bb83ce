"""Pages without a browser: the sign-in redirect, the page shell and the static bundle."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from assay_server import pages, ratelimit
from assay_server.api import error_response
from assay_server.errors import AssayError
from assay_server.pages import WebAppFiles
from conftest import RunningServer, run_in_thread, sign_in_with_key

NOT_BUILT = "The web app is not built"


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


@pytest.fixture(params=["built", "not built"])
def bundle_built(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> bool:
    """Point the page shell at a bundle in a temporary directory, written or missing.

    The real bundle in ``static/`` stays as it is, for the browser tests.
    """
    bundle = tmp_path / "static" / "app.js"
    built = request.param == "built"
    if built:
        bundle.parent.mkdir()
        bundle.write_text("// a stand-in for the built app\n")
    monkeypatch.setattr(pages, "BUNDLE", bundle)
    return built


def test_invalid_share_page_shows_message(
    limited_server: RunningServer, bundle_built: bool
) -> None:
    response = httpx.get(limited_server.url + "/projects/demo/reports/r1?share=guessed")

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "This share link is invalid, revoked or expired." in response.text
    assert NOT_BUILT not in response.text


def test_limited_share_page_shows_message(
    limited_server: RunningServer, bundle_built: bool
) -> None:
    path = "/projects/demo/reports/r1"
    with httpx.Client(base_url=limited_server.url) as client:
        guess = client.get(path, params={"share": "first-guess"})
        limited = client.get(path, params={"share": "second-guess"})
    retry_after = limited.headers["retry-after"]
    root = re.search(r'<div id="app"([^>]*)>', limited.text)

    assert guess.status_code == 401
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("text/html")
    assert "Too many share-link look-ups: at most 1 in 60 seconds" in limited.text
    assert f"retry in {retry_after} seconds." in limited.text
    assert 1 <= int(retry_after) <= ratelimit.SHARE_WINDOW
    assert root is not None
    assert root.group(1) == f' data-retry-after="{retry_after}"'
    assert NOT_BUILT not in limited.text


def test_app_pages_name_missing_build(sqlite_server: RunningServer, bundle_built: bool) -> None:
    with sqlite_server.client() as client:
        loading = client.get("/projects/demo")
    sign_in = httpx.get(sqlite_server.url + "/signin")

    assert loading.status_code == 200
    assert sign_in.status_code == 200
    if bundle_built:
        assert "Loading…" in loading.text
        assert "Sign in to assay" in sign_in.text
        assert NOT_BUILT not in loading.text
        assert NOT_BUILT not in sign_in.text
    else:
        assert NOT_BUILT in loading.text
        assert NOT_BUILT in sign_in.text
        assert "npm ci &amp;&amp; npm run build" in loading.text


def test_page_without_limit_has_no_retry_after(sqlite_server: RunningServer) -> None:
    with sqlite_server.client() as client:
        response = client.get("/projects/demo")

    assert '<div id="app">' in response.text
    assert "data-retry-after" not in response.text
