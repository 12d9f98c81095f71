"""Faulty targets never stall or crash the exporter; each fault is counted by reason."""

from __future__ import annotations

import json
import time

from meshobs.exporter.normalize import DIALECTS
from tests.exporter import faults
from tests.exporter.running import start_exporter
from tests.support.procs import free_port, http_get, wait_until


def targets_json(ports: dict[str, int], namespace: str = "faults", **labels: str) -> str:
    """A file_sd targets file: one consul workload per name, on 127.0.0.1:port."""
    return json.dumps([{"targets": [f"127.0.0.1:{port}"],
                        "labels": {"mesh": "consul", "namespace": namespace, "workload": name, **labels}}
                       for name, port in sorted(ports.items())])


def test_each_fault_is_counted_under_its_reason_while_metrics_keep_answering(processes, tmp_path, proxies):
    """Hang, refusal, error status, garbage, a non-HTTP answer, invalid UTF-8, truncation and an oversized body each count once per scrape under their reason."""
    ports = {
        "hangs": proxies.add(faults.hang),
        "refuses": free_port(),
        "errors": proxies.add(faults.error_status),
        "garbage": proxies.add(faults.garbage),
        "not_http": proxies.add(faults.not_http),
        "utf8": proxies.add(faults.invalid_utf8),
        "truncated": proxies.add(faults.truncated),
        "huge": proxies.add(faults.huge(4 * 1024 * 1024)),
        "good": proxies.add(faults.good()),
    }
    targets = tmp_path / "targets.json"
    targets.write_text(targets_json(ports))
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "200ms",
                              "--scrape-timeout", "1s", "--max-body-bytes", "1048576")
    expected_reason = {"hangs": "timeout", "refuses": "refused", "errors": "http_status", "garbage": "bad_payload",
                       "not_http": "bad_payload", "utf8": "bad_payload", "truncated": "bad_payload", "huge": "too_large"}

    def counted():
        return all((exporter.value("meshobs_scrape_errors_total", workload=name, reason=reason) or 0) >= 2
                   for name, reason in expected_reason.items())

    # while a hanging scrape is in flight, /metrics still answers at once
    for _ in range(5):
        started = time.monotonic()
        assert http_get(f"{exporter.url}/metrics")[0] == 200
        assert time.monotonic() - started < 0.5
    wait_until(counted, timeout=15, what="every fault counted twice")
    samples = exporter.samples()
    for name, reason in expected_reason.items():
        labels = {"mesh": "consul", "namespace": "faults", "workload": name}
        assert exporter.value("meshobs_target_up", **labels) == 0
        others = [v for (n, items), v in samples.items() if n == "meshobs_scrape_errors_total"
                  and dict(items)["workload"] == name and dict(items)["reason"] != reason]
        assert others == [0.0] * 4, f"{name}: {others}"
    assert exporter.value("meshobs_target_up", workload="good") == 1
    assert exporter.value("meshobs_tls_handshakes_total", workload="good") == 7
    assert exporter.process.alive()


def test_only_read_only_get_requests_reach_a_proxy(processes, tmp_path, proxies):
    """The exporter sends GET /stats/prometheus with the dialect's constant stats filter and GET /certs to an Envoy admin, and nothing else."""
    port = proxies.add(faults.good())
    exporter = start_exporter(processes, tmp_path, "--target", f"consul/default/web=http://127.0.0.1:{port}",
                              "--scrape-interval", "100ms")
    wait_until(lambda: len(proxies.requests) >= 6, what="a few scrapes")
    assert exporter.value("meshobs_target_up", workload="web") == 1
    lines = {line for _, line in proxies.requests}
    assert lines == {f"GET /stats/prometheus?{DIALECTS['consul'].stats_query} HTTP/1.1", "GET /certs HTTP/1.1"}


def test_a_workload_whose_target_disappears_stops_being_exported_and_resumes_its_count(processes, tmp_path, proxies):
    """Removing a workload's only target from the targets file ends its series at once; back within the grace period, its counter carries on."""
    ports = {"stays": proxies.add(faults.good()), "leaves": proxies.add(faults.good())}
    targets = tmp_path / "targets.json"
    targets.write_text(targets_json(ports))
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--scrape-interval", "100ms")
    wait_until(lambda: exporter.value("meshobs_target_up", workload="leaves") == 1, what="both targets up")
    targets.write_text(targets_json({"stays": ports["stays"]}))
    wait_until(lambda: exporter.value("meshobs_target_up", workload="leaves") is None, what="the target to go")
    assert exporter.value("meshobs_tls_handshakes_total", workload="leaves") is None
    assert exporter.value("meshobs_target_up", workload="stays") == 1
    targets.write_text(targets_json(ports))
    # a target that comes back is a new proxy: its 7 handshakes add to the 7 counted before
    wait_until(lambda: exporter.value("meshobs_tls_handshakes_total", workload="leaves") == 14, what="the count to resume")


def test_concurrency_bounds_the_scrapes_in_flight(processes, tmp_path, proxies):
    """With --concurrency 3 and ten hanging proxies, the next scrapes start only as earlier ones time out."""
    ports = {f"hang{i}": proxies.add(faults.hang) for i in range(10)}
    targets = tmp_path / "targets.json"
    targets.write_text(targets_json(ports))
    exporter = start_exporter(processes, tmp_path, "--targets-file", str(targets), "--concurrency", "3",
                              "--scrape-timeout", "1s", "--scrape-interval", "10s")

    wait_until(lambda: len(proxies.arrivals) >= 10, what="every proxy asked once")
    first = sorted(proxies.arrivals)[:10]
    # three at once; the next three only when the first ones time out (1s), and so on
    assert first[2] - first[0] < 0.5
    assert first[3] - first[0] >= 0.9 and first[6] - first[3] >= 0.9 and first[9] - first[6] >= 0.9
    assert exporter.process.alive()
