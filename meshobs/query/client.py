"""A read-only Prometheus HTTP API client for the terminal commands: instant queries and the
loaded rules, with a bearer token, a CA bundle and a timeout; every failure is one clear line."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from meshobs.errors import QueryError


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, url: str, token: str | None = None, ca_file: Path | None = None, timeout: float = 10.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise QueryError(f"--prometheus: {url!r} is not an http(s) URL such as http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._context = None
        if ca_file is not None:
            try:
                self._context = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise QueryError(f"--ca-file {ca_file}: cannot load a CA bundle: {exc}") from None

    def _get(self, path: str, params: list[tuple[str, str]]) -> object:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            if exc.code in (401, 403):
                raise QueryError(f"Prometheus at {self.url} refused access: HTTP {exc.code} (check --token)") from None
            if exc.code not in (400, 422, 503):  # these carry Prometheus's reason in the JSON body
                raise QueryError(f"Prometheus at {self.url} answered HTTP {exc.code} to {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise QueryError(f"Prometheus at {self.url} is not reachable: {reason}") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise QueryError(f"{self.url} does not answer like a Prometheus API ({path} is not JSON)") from None
        if not isinstance(document, dict) or document.get("status") != "success":
            error = document.get("error", "") if isinstance(document, dict) else ""
            raise QueryError(f"Prometheus at {self.url} failed {path}: {error or 'no reason given'}")
        return document.get("data")

    def vector(self, expr: str, at: float) -> list[Sample]:
        """Instant query evaluated at `at` (Unix seconds): one sample per series."""
        data = self._get("/api/v1/query", [("query", expr), ("time", f"{at:.3f}")])
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise QueryError(f"Prometheus at {self.url} answered {expr!r} with no instant vector")
        samples = []
        for series in data["result"]:
            value = float(series["value"][1])
            if value == value:  # NaN (0/0 of an idle series) is no answer, not a number
                samples.append(Sample(series["metric"], value))
        return samples

    def recording_rules(self) -> list[tuple[str, dict[str, str], float]]:
        """(record name, static labels, evaluation interval in seconds) of every recording rule
        Prometheus has loaded."""
        data = self._get("/api/v1/rules", [("type", "record")])
        groups = data.get("groups", []) if isinstance(data, dict) else []
        return [(rule["name"], rule.get("labels") or {}, float(group.get("interval") or 60))
                for group in groups for rule in group.get("rules", []) if rule.get("type", "recording") == "recording"]
