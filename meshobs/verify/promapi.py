"""The few Prometheus HTTP API calls verify makes (read-only GETs, stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from meshobs.errors import VerifyError


class QueryError(Exception):
    """Prometheus rejected a query; the message is Prometheus's own."""


_HINT = ("give the base URL that serves /api/v1/query, e.g. http://127.0.0.1:9090, with the path of "
         "Prometheus's --web.route-prefix if it has one")


class Prometheus:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: list[tuple[str, str]]) -> object:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                status, kind, body = response.status, response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as exc:
            # 400/422/503 carry Prometheus's reason in a JSON body; anything else is not Prometheus
            status, kind, body = exc.code, exc.headers.get_content_type(), exc.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise VerifyError(f"Prometheus at {self.url} is not reachable: {reason}") from exc
        document = _api_document(body)
        if document is None:
            raise VerifyError(f"{self.url} is not a Prometheus API: GET {path} answered HTTP {status} "
                              f"{kind}, not a Prometheus JSON document; {_HINT}")
        if document.get("status") != "success":
            raise QueryError(f"{document.get('errorType', 'error')}: {document.get('error', '')}")
        return document["data"]

    def instant(self, expr: str, time: float) -> list[dict]:
        data = self._get("/api/v1/query", [("query", expr), ("time", f"{time:.3f}")])
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        data = self._get("/api/v1/query_range", [
            ("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"), ("step", f"{step:g}"),
        ])
        return data["result"]

    def label_values(self, label: str, match: str | None, start: float, end: float) -> list[str]:
        params = [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        if match:
            params.append(("match[]", match))
        return sorted(self._get(f"/api/v1/label/{urllib.parse.quote(label)}/values", params))

    def ready(self) -> None:
        """Raise VerifyError unless the API answers."""
        try:
            self._get("/api/v1/status/buildinfo", [])
        except QueryError as exc:
            raise VerifyError(f"{self.url} is not a Prometheus API: GET /api/v1/status/buildinfo failed: {exc}; "
                              f"{_HINT}") from exc

    def runtime_info(self) -> dict:
        return self._get("/api/v1/status/runtimeinfo", [])

    def rule_groups(self) -> list[dict]:
        return self._get("/api/v1/rules", [])["groups"]


def _api_document(body: bytes) -> dict | None:
    """The API's JSON envelope (`status`, `data` or `error`), or None when `body` is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("status") not in ("success", "error"):
        return None
    if document["status"] == "success" and "data" not in document:
        return None
    return document
