"""Real Prometheus and Alertmanager for tests, and a webhook receiver that records what
Alertmanager delivers.

    webhook = Webhook.start(request)                      # stopped at teardown
    am = start_alertmanager(processes, tmp_path, webhook.url)
    prom = start_prometheus(processes, tmp_path, {"exporter": ["127.0.0.1:9942"]},
                            rule_files=[...], alertmanager=am.address)
    prom.wait_for("count_over_time(up[1m]) >= 2")
    webhook.wait_for_alert("MeshMTLSFailure")

Everything binds 127.0.0.1 on free ports; processes go through the `processes` fixture, so they
stop with the test. Intervals default to 1s (Prometheus still takes ~5s to scrape a new target).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

import yaml

from tests.support.procs import Listening, free_port, http_get, require_binary, wait_until
from tests.support.victoria import rfc3339_seconds


class Webhook:
    """An Alertmanager webhook receiver: every POSTed JSON document is kept, in order."""

    def __init__(self):
        self.posts: list[dict] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner._lock:
                    owner.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, request) -> "Webhook":
        """A receiver stopped when the pytest `request`'s test ends."""
        webhook = cls()
        request.addfinalizer(webhook.stop)
        return webhook

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/alerts"

    def alerts(self, status: str = "firing") -> list[dict]:
        with self._lock:
            return [a for post in self.posts for a in post.get("alerts", []) if a.get("status") == status]

    def wait_for_alert(self, alertname: str, timeout: float = 60.0, **labels: str) -> dict:
        """The first firing alert named `alertname` whose labels include `labels`."""

        def found():
            return next((a for a in self.alerts() if a["labels"].get("alertname") == alertname
                         and all(a["labels"].get(k) == v for k, v in labels.items())), None)

        return wait_until(found, timeout=timeout, interval=0.1, what=f"webhook to receive {alertname} {labels}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RunningAlertmanager(Listening):
    def post(self, alerts: list[dict]) -> None:
        """Send `alerts` (each {"labels": {...}}) as a Prometheus would, through the v2 API."""
        request = urllib.request.Request(f"{self.url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200


def start_alertmanager(processes, tmp_path: Path, webhook_url: str, group_wait: str = "0s",
                       group_interval: str = "1s", repeat_interval: str = "1h") -> RunningAlertmanager:
    """Alertmanager routing every alert, grouped per alert name, to `webhook_url` at once."""
    folder = tmp_path / "alertmanager"
    folder.mkdir(exist_ok=True)
    config = {
        "route": {"receiver": "webhook", "group_by": ["alertname"], "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": [{"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
    return run_alertmanager(processes, folder / "alertmanager.yml", folder)


def run_alertmanager(processes, config_file: Path, folder: Path) -> RunningAlertmanager:
    """A real Alertmanager with `config_file` (a rendered one, say), its data and log in `folder`."""
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    process = processes(
        [binary, f"--config.file={config_file}", f"--storage.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
         f"--web.external-url=http://127.0.0.1:{port}"],
        folder / "alertmanager.log",
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, what="alertmanager /-/ready")
    return RunningAlertmanager(port, process)


def amtool_routes(config_file: Path, **labels: str) -> str:
    """The receivers (comma-separated) that `amtool config routes test` picks for an alert with `labels`."""
    amtool = require_binary("amtool")
    argv = [amtool, "config", "routes", "test", f"--config.file={config_file}"]
    result = subprocess.run(argv + [f"{k}={v}" for k, v in labels.items()], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class RunningPrometheus(Listening):
    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query (now, or at Unix time `at`); the `result` list of the API answer."""
        when = "" if at is None else f"&time={at:.3f}"
        status, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(expr)}{when}")
        document = json.loads(body)
        assert status == 200 and document["status"] == "success", f"{expr}: {body[:500]!r}"
        return document["data"]["result"]

    def wait_for(self, expr: str, timeout: float = 60.0) -> list[dict]:
        """Poll until `expr` returns at least one series."""
        return wait_until(lambda: self.query(expr), timeout=timeout, interval=0.2, what=f"Prometheus: {expr}")

    def rule_evaluations(self) -> list[float]:
        """Unix time of every rule group's last evaluation (year 1 before the first)."""
        _, body = http_get(f"{self.url}/api/v1/rules")
        return [rfc3339_seconds(group["lastEvaluation"]) for group in json.loads(body)["data"]["groups"]]

    def wait_for_rules_after(self, moment: float, timeout: float = 30.0, interval: float = 0.05) -> None:
        """Poll until every rule group has evaluated after Unix time `moment` (on the data then in place)."""
        wait_until(lambda: min(self.rule_evaluations()) > moment, timeout=timeout, interval=interval,
                   what="every rule group evaluated again")

    def rule_health(self) -> list[tuple[str, str, str]]:
        """(rule name, health, last error) of every loaded rule."""
        _, body = http_get(f"{self.url}/api/v1/rules")
        return [(rule["name"], rule["health"], rule.get("lastError", ""))
                for group in json.loads(body)["data"]["groups"] for rule in group["rules"]]


def scrape_config(job: str, targets: Sequence) -> dict:
    """A Prometheus scrape job: `targets` as host:port strings or as static_configs dicts."""
    if targets and isinstance(targets[0], dict):
        return {"job_name": job, "static_configs": list(targets)}
    return {"job_name": job, "static_configs": [{"targets": list(targets)}]}


def start_prometheus(processes, tmp_path: Path, jobs: dict[str, Sequence[str]], rule_files: Sequence[Path] = (),
                     alertmanager: str | None = None, scrape_interval: str = "1s",
                     evaluation_interval: str = "1s", external_labels: dict | None = None,
                     job_settings: dict[str, dict] | None = None) -> RunningPrometheus:
    """Prometheus scraping `jobs` (job name → host:port list, path /metrics; or a list of
    static_configs dicts, whose `labels` may set `__metrics_path__`) with `rule_files`,
    sending alerts to the Alertmanager at `alertmanager` (host:port). `job_settings` adds
    scrape-config keys per job (limits, metric_relabel_configs of a rendered job)."""
    folder = tmp_path / "prometheus"
    config: dict = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                   "external_labels": external_labels or {}},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{**scrape_config(job, targets), **(job_settings or {}).get(job, {})}
                           for job, targets in jobs.items()],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return run_prometheus(processes, folder, config)


def run_prometheus(processes, folder: Path, config: dict, agent: bool = False) -> RunningPrometheus:
    """Prometheus running `config` (a prometheus.yml as a dict) with its data in `folder`; in
    agent mode (scrape and remote-write only) when `agent`."""
    binary = require_binary("prometheus")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    # Prometheus 2.x spells agent mode as a feature flag (3.x: --agent)
    storage = ["--enable-feature=agent", f"--storage.agent.path={folder / 'data'}"] if agent else [
        f"--storage.tsdb.path={folder / 'data'}"]
    process = processes(
        [binary, f"--config.file={folder / 'prometheus.yml'}", *storage,
         f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url=http://127.0.0.1:{port}"],
        folder / "prometheus.log",
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, what="prometheus /-/ready")
    return RunningPrometheus(port, process)
