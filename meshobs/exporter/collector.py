"""The exporter's series, built from `State` at each collection (prometheus-client collector)."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from meshobs.exporter.normalize import ALLOWED, CERT_EXPIRY, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, REASONS
from meshobs.exporter.state import SCRAPE_ERROR_REASONS, State

LABELS = ["mesh", "namespace", "workload"]

_COUNTERS = (
    (HANDSHAKES, "Successful TLS handshakes at the workload's inbound listeners."),
    (ALLOWED, "Requests or connections allowed by authorization policy."),
    (DENIED, "Requests or connections denied by authorization policy."),
    (PLAINTEXT, "Traffic that reached the workload without mutual TLS."),
)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    # prometheus-client appends _total to counter samples itself
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


class StateCollector(Collector):
    def __init__(self, state: State):
        self.state = state

    def collect(self):
        state = self.state
        counters = {name: _counter(name, doc, LABELS) for name, doc in _COUNTERS}
        failures = _counter(FAILURES, "Failed TLS handshakes by reason: " + ", ".join(REASONS) + ".", LABELS + ["reason"])
        errors = _counter("meshobs_scrape_errors_total", "Failed scrapes of the workload's proxies by reason.", LABELS + ["reason"])
        bursts = _counter("meshobs_authz_denied_bursts_total", "Bursts of authorization denials started.", LABELS)
        burst = GaugeMetricFamily("meshobs_authz_denied_burst", "1 while a burst of authorization denials is active.", labels=LABELS)
        certs = GaugeMetricFamily(CERT_EXPIRY, "Earliest expiry (unix seconds) of the workload's leaf or CA certificate.", labels=LABELS + ["cert"])
        expiries = state.certs_by_workload()
        for key, workload in state.exported():
            labels = list(key)
            for (name, reason), value in workload.totals.items():
                if name == FAILURES:
                    failures.add_metric(labels + [reason], value)
                else:
                    counters[name].add_metric(labels, value)
            for reason in SCRAPE_ERROR_REASONS:
                errors.add_metric(labels + [reason], workload.scrape_errors[reason])
            bursts.add_metric(labels, workload.bursts)
            burst.add_metric(labels, 1.0 if workload.burst else 0.0)
            for kind, ts in sorted(expiries.get(key, {}).items()):
                certs.add_metric(labels + [kind], ts)
        up = GaugeMetricFamily("meshobs_target_up", "1 if the last scrape of the proxy succeeded.", labels=LABELS + ["instance"])
        duration = GaugeMetricFamily("meshobs_scrape_duration_seconds", "Duration of the last scrape of the proxy.", labels=LABELS + ["instance"])
        for target, target_state in sorted(state.targets.items(), key=lambda item: item[0].url):
            labels = list(target.workload_key) + [target.instance]
            up.add_metric(labels, 1.0 if target_state.up else 0.0)
            duration.add_metric(labels, target_state.duration)
        yield from counters.values()
        dropped = _counter("meshobs_workloads_dropped_total", "Workloads left unscraped in a cycle because the exporter "
                           "holds --max-workloads already, summed over cycles.", [])
        dropped.add_metric([], state.dropped_workloads)
        yield from (failures, burst, bursts, certs, up, duration, errors, dropped)
