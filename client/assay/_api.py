"""``assay.Api``: read projects, runs and histories back from a server."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgpack

from assay import _credentials
from assay._errors import ConnectionFailedError, server_error

MSGPACK = "application/msgpack"
#: Filters longer than this, once URL-encoded, go in a POST body, because the
#: request head that carries a URL is capped by servers and proxies (often at 8
#: to 64 KiB).
MAX_URL_FILTER_BYTES = 4096
#: The maximum number of runs the server returns in one page.
MAX_PER_PAGE = 10_000


class Api:
    """A client of the read API.

    Arguments:
        server: the server URL; defaults to ``ASSAY_SERVER``, then ``assay login``.
        api_key: defaults to ``ASSAY_API_KEY``, then ``assay login``.
        timeout: seconds to wait for each response.

    Example:
        >>> api = assay.Api()
        >>> run = api.run("demo-sweep", "abc123")
        >>> run.history(keys=["loss"], samples=500)
    """

    def __init__(
        self, server: str | None = None, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        credentials = _credentials.resolve(server, api_key)
        self.server = credentials.server
        self._client = httpx.Client(
            base_url=credentials.server,
            headers={"Authorization": f"Bearer {credentials.api_key}", "Accept": MSGPACK},
            timeout=timeout,
        )

    def projects(self) -> list[dict[str, Any]]:
        """Every project, with its name, creation time and run count."""
        return list(self._get("/api/v1/projects")["projects"])

    # NOTE: the server returns at most its default page of 1,000 runs, and this
    # method does not page yet, so larger projects come back incomplete.
    def runs(self, project: str, filter: str | None = None, per_page: int = 1000) -> list[ApiRun]:
        """Return every run of ``project``, newest first, fetched ``per_page`` at a time.

        With ``filter``, return only the runs it selects, for example
        ``"summary.loss is nan or state = crashed"``; docs/runsets.md describes
        the language. An invalid filter, or one longer than the server's
        ``ASSAY_MAX_FILTER_LENGTH``, raises the server's 400 error as
        ``ServerError``, whose message names the column. Runs created while
        the pages are read are left out, and none is returned twice.
        """
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be from 1 to {MAX_PER_PAGE}, got {per_page!r}")
        path = f"/api/v1/projects/{_segment(project)}/runs"
        long_filter = filter is not None and len(quote(filter, safe="")) > MAX_URL_FILTER_BYTES
        found: list[ApiRun] = []
        cursor: str | None = None
        while True:
            if long_filter:
                body = {"filter": filter, "limit": per_page, "cursor": cursor}
                page = self._request("POST", path + "/query", json=body)
            else:
                params: dict[str, Any] = {"limit": per_page}
                if filter is not None:
                    params["filter"] = filter
                if cursor is not None:
                    params["cursor"] = cursor
                page = self._get(path, params=params)
            found.extend(ApiRun(self, data) for data in page["runs"])
            cursor = page.get("next")
            if cursor is None:
                return found

    def run(self, project: str, run_id: str) -> ApiRun:
        return ApiRun(self, self._get(_run_path(project, run_id)))

    def whoami(self) -> dict[str, Any]:
        return dict(self._get("/api/v1/whoami"))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _get(self, path: str, params: Any = None) -> Any:
        return self._request("GET", path, params=params)

    def _request(self, method: str, path: str, params: Any = None, json: Any = None) -> Any:
        try:
            response = self._client.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise ConnectionFailedError(f"cannot reach {self.server}: {exc}") from None
        body = _decode(response)
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise server_error(
                str(error.get("message", f"HTTP {response.status_code} from {path}")),
                str(error.get("code", "http_error")),
                response.status_code,
            )
        return body


class ApiRun:
    """A run as the read API returns it.

    Attributes: ``id``, ``project``, ``name``, ``state``, ``config``, ``summary``,
    ``tags``, ``group``, ``notes``, ``created_at``, ``heartbeat_at`` (seconds
    since the epoch), ``finished_at`` and ``exit_code``.
    """

    def __init__(self, api: Api, data: dict[str, Any]) -> None:
        self._api = api
        self.data = data
        self.id: str = data["id"]
        self.project: str = data["project"]
        self.name: str = data["name"]
        self.state: str = data["state"]
        self.config: dict[str, Any] = data["config"]
        self.summary: dict[str, Any] = data["summary"]
        self.tags: list[str] = data["tags"]
        self.group: str | None = data["group"]
        self.notes: str | None = data["notes"]
        self.created_at: float = data["created_at"]
        self.heartbeat_at: float = data["heartbeat_at"]
        self.finished_at: float | None = data["finished_at"]
        self.exit_code: int | None = data["exit_code"]

    def history(
        self,
        keys: Sequence[str] | None = None,
        samples: int | None = None,
        min_step: int | None = None,
        max_step: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``step``, ``_timestamp`` and the values logged at that step.

        A metric not logged at a step is absent from its row, and a logged None
        is present as None. With ``samples=N`` (at least 8) each metric keeps
        at most N points, chosen so that the min, the max and any NaN, infinity
        or null of every bucket of steps survive.
        """
        params: dict[str, Any] = {}
        if keys is not None:
            params["keys"] = list(keys)
        for name, value in (("samples", samples), ("min_step", min_step), ("max_step", max_step)):
            if value is not None:
                params[name] = value
        path = _run_path(self.project, self.id) + "/history"
        return list(self._api._get(path, params=params)["history"])

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per metric: count, last_step, last, min, max, has_nan, has_inf and has_null."""
        return dict(self._api._get(_run_path(self.project, self.id) + "/metrics")["metrics"])

    def __repr__(self) -> str:
        return f"<assay.ApiRun {self.project}/{self.id} state={self.state}>"


def _segment(value: str) -> str:
    return quote(value, safe="")


def _run_path(project: str, run_id: str) -> str:
    return f"/api/v1/projects/{_segment(project)}/runs/{_segment(run_id)}"


def _decode(response: httpx.Response) -> Any:
    if response.headers.get("content-type", "").startswith(MSGPACK):
        return msgpack.unpackb(response.content, raw=False)
    try:
        return response.json()
    except ValueError:
        return {"error": {"message": response.text[:200], "code": "http_error"}}
