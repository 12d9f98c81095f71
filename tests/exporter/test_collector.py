"""The exposition holds a fixed, small number of series per workload whatever the proxy exposes."""

from __future__ import annotations

import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshobs.exporter.collector import StateCollector
from meshobs.exporter.normalize import DIALECTS, normalize
from meshobs.exporter.parse import parse
from meshobs.exporter.state import CLAIM_REFUSALS, State
from meshobs.exporter.targets import make_target

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from exposition import envoy_exposition  # noqa: E402

ISTIO = DIALECTS["istio"]


def test_a_50k_line_proxy_becomes_at_most_20_workload_series_and_2_per_proxy():
    """Two Istio-sized pods of one workload give 19 workload series (22 with a CA expiry and both notBefores) plus target_up and scrape_duration per pod."""
    state = State()
    body = envoy_exposition(1000)
    assert body.count(b"\n") > 45_000
    for ip in ("10.0.0.1", "10.0.0.2"):
        target = make_target(f"http://{ip}:15090/stats/prometheus", "istio", "shop", "cart")
        state.observe(target, normalize(ISTIO, parse(body, ISTIO.prefixes, ISTIO.names)), 0.02)
    state.end_cycle(now=1.0)
    registry = CollectorRegistry()
    registry.register(StateCollector(state))
    exposed = [s for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples]
    assert [(s.name, s.labels.get("reason"), s.value) for s in exposed if "workload" not in s.labels] == [
        ("meshobs_workloads_dropped_total", None, 0),
        *(("meshobs_ztunnel_claims_refused_total", reason, 0) for reason in CLAIM_REFUSALS)]
    samples = [s for s in exposed if "workload" in s.labels]
    per_proxy = [s for s in samples if "instance" in s.labels]
    assert len(samples) - len(per_proxy) == 19  # a leaf certificate's expiry, no CA, no notBefore (Istio stats)
    assert sorted((s.name, s.labels["instance"]) for s in per_proxy) == [
        ("meshobs_scrape_duration_seconds", "10.0.0.1:15090"), ("meshobs_scrape_duration_seconds", "10.0.0.2:15090"),
        ("meshobs_target_up", "10.0.0.1:15090"), ("meshobs_target_up", "10.0.0.2:15090")]
    assert all(s.labels["mesh"] == "istio" and s.labels["namespace"] == "shop" and s.labels["workload"] == "cart"
               for s in samples)
    handshakes = [s.value for s in samples if s.name == "meshobs_tls_handshakes_total"]
    assert handshakes == [2 * 3 * 100]  # two pods, three listeners, 100 each
