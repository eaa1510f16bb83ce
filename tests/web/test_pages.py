"""Pages without a browser: sign-in help, the page shell and the static bundle."""

from __future__ import annotations

import httpx

from conftest import RunningServer


def test_unauthenticated_page_explains_sign_in(sqlite_server: RunningServer) -> None:
    response = httpx.get(sqlite_server.url + "/projects/demo")

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "/login?token=" in response.text
    assert "next=/projects/demo" in response.text


def test_forged_session_gets_sign_in_page(sqlite_server: RunningServer) -> None:
    response = httpx.get(sqlite_server.url + "/", cookies={"assay_session": "forged"})

    assert response.status_code == 401
    assert "Sign in to assay" in response.text


def test_signed_in_page_loads_bundle(sqlite_server: RunningServer) -> None:
    with httpx.Client(base_url=sqlite_server.url) as browser:
        login = browser.get(
            "/login", params={"token": sqlite_server.api_key, "next": "/projects/demo/runs/r1"}
        )
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
