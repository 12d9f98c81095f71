"""Run `meshobs exporter` as a real process for tests and read its /metrics."""

from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import free_port, http_get


class RunningExporter:
    def __init__(self, process, port: int):
        self.process = process
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def samples(self) -> dict[tuple[str, tuple], float]:
        """Every sample of /metrics keyed by (name, sorted label items)."""
        status, body = http_get(f"{self.url}/metrics")
        assert status == 200
        out = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        """The sample whose labels include `labels` (exactly one must match), or None."""
        matches = [v for (n, items), v in self.samples().items()
                   if n == name and set(labels.items()) <= set(items)]
        assert len(matches) <= 1, f"{name}{labels} matches {len(matches)} samples"
        return matches[0] if matches else None


def start_exporter(processes, tmp_path: Path, *args: str, env: dict | None = None, name: str = "exporter") -> RunningExporter:
    port = free_port()
    process = processes(
        [sys.executable, "-m", "meshobs", "exporter", "--listen", f"127.0.0.1:{port}", *args],
        tmp_path / f"{name}.log", env=env,
    )
    process.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="exporter /readyz")
    return RunningExporter(process, port)
