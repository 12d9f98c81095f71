"""The few Prometheus HTTP API calls verify makes (read-only GETs, stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from meshobs.errors import VerifyError


class QueryError(Exception):
    """Prometheus rejected a query; the message is Prometheus's own."""


class Prometheus:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: list[tuple[str, str]]) -> object:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                document = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            # 400/422 carry Prometheus's reason in the JSON body
            try:
                document = json.loads(exc.read())
            except ValueError:
                raise QueryError(f"HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise VerifyError(f"Prometheus at {self.url} is not reachable: {exc}") from exc
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
        self._get("/api/v1/status/buildinfo", [])
