"""Hostile proxies beside healthy ones: bounded work and memory, exact counts for the healthy,
and /metrics, /healthz, /readyz answering quickly throughout (the real exporter process)."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

from tests.exporter import faults, hostile
from tests.exporter.running import start_exporter
from tests.exporter.test_faults import targets_json
from tests.support.procs import http_get, wait_until


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


class Latencies(threading.Thread):
    """Poll the exporter's endpoints in turn and keep the slowest answer of each."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.slowest = {"/metrics": 0.0, "/healthz": 0.0, "/readyz": 0.0}
        self.stop = threading.Event()

    def run(self):
        for path in itertools.cycle(self.slowest):
            if self.stop.is_set():
                return
            started = time.monotonic()
            assert http_get(f"{self.url}{path}", timeout=10)[0] == 200
            self.slowest[path] = max(self.slowest[path], time.monotonic() - started)
            time.sleep(0.05)


def test_hostile_answers_are_cut_off_counted_and_leave_the_healthy_exact(processes, tmp_path, proxies):
    """A dripped endless kept line, a new 15 MB metric name per scrape and a flood of kept lines count as too_large, a cut-off unkept line as bad_payload, 15,000 legal samples are read; RSS stays under 200 MB, the endpoints answer within 1 s, healthy counts are exact."""
    counters = {f"good{i}": itertools.count(1) for i in range(5)}

    def moving(name):
        # each scrape, the handshake counter moves by one: the exporter's total must equal the last value
        return lambda: GOOD_TEMPLATE % next(counters[name])

    # healthy: metrics only, /certs answered 404 as by an Envoy without admin certificates
    ports = {name: proxies.add(hostile.by_path({"/stats/prometheus": moving(name)})) for name in counters}
    ports |= {
        "drip_kept": proxies.add(faults.drip(b'envoy_listener_ssl_handshake{a="', 16 * 1024 * 1024)),
        "drip_other": proxies.add(faults.drip(b'envoy_cluster_upstream_rq{a="', 4 * 1024 * 1024)),
        "long_name": proxies.add(faults.new_long_name(15 * 1024 * 1024)),
        "flood": proxies.add(faults.kept_flood(16 * 1024 * 1024)),
        # big but within the caps: 15,000 kept samples, parsed off the event loop
        "big": proxies.add(faults.kept_flood(15_000 * 60)),
    }
    targets = tmp_path / "targets.json"
    targets.write_text(targets_json(ports))
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "500ms",
                              "--scrape-timeout", "5s")
    latencies = Latencies(exporter.url)
    latencies.start()
    cut_off = {"drip_kept": "too_large", "drip_other": "bad_payload", "long_name": "too_large", "flood": "too_large"}
    try:
        wait_until(lambda: all((exporter.value("meshobs_scrape_errors_total", workload=name, reason=reason) or 0) >= 3
                               for name, reason in cut_off.items()), timeout=90, what="each hostile target cut off 3 times")
    finally:
        latencies.stop.set()
        latencies.join(15)
    samples = exporter.samples()
    for name in counters:
        last = next(counters[name]) - 1  # the value the proxy served last
        handshakes = exporter.value("meshobs_tls_handshakes_total", workload=name)
        assert last - 2 <= handshakes <= last, f"{name}: {handshakes} of {last}"  # at most a scrape or two behind
        assert exporter.value("meshobs_target_up", workload=name) == 1
        errors = [v for (n, items), v in samples.items() if n == "meshobs_scrape_errors_total" and dict(items)["workload"] == name]
        assert errors == [0.0] * 5
    for name in cut_off:
        assert exporter.value("meshobs_target_up", workload=name) == 0
    assert exporter.value("meshobs_target_up", workload="big") == 1
    assert exporter.value("meshobs_tls_handshakes_total", workload="big") == 15_007  # 15,000 x 1 + 7
    assert peak_rss_mb(exporter.process.popen.pid) < 200
    assert max(latencies.slowest.values()) < 1.0, latencies.slowest
    assert exporter.process.alive()


GOOD_TEMPLATE = (
    b"# TYPE envoy_listener_ssl_handshake counter\n"
    b'envoy_listener_ssl_handshake{envoy_listener_address="public_listener"} %d\n'
    b"envoy_server_live{} 1\n"
)

