"""The exporter's own endpoints: /metrics from the last rendering, plain or gzipped."""

from __future__ import annotations

import gzip
import urllib.request

from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.support.procs import http_get


def test_metrics_are_gzipped_for_clients_that_ask_and_say_the_same(processes, tmp_path, proxies):
    """/metrics with Accept-Encoding: gzip is one gzip stream whose text equals the plain answer's."""
    port = proxies.add(faults.good())
    exporter = start_exporter(processes, tmp_path, "--target", f"consul/default/web=http://127.0.0.1:{port}",
                              "--scrape-interval", "10s")
    plain = http_get(f"{exporter.url}/metrics")[1]
    request = urllib.request.Request(f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        text = gzip.decompress(response.read())

    def without_process(body: bytes) -> list[bytes]:
        # the process's own CPU and memory move between the two requests
        return [line for line in body.splitlines() if not line.startswith((b"process_", b"# HELP process_", b"# TYPE process_"))]

    assert without_process(text) == without_process(plain)
    assert b'meshobs_tls_handshakes_total{mesh="consul",namespace="default",workload="web"} 7.0' in text
