"""The exporter's series (prometheus-client collectors): the workload and target series from
a `State`, and the scrape cycle's own figures.

The workload series are rendered from a snapshot, never from the live state: `snapshot` copies
the state in slices between which the event loop runs, and `render` formats the copy in a
worker thread, so /metrics answers from the last rendering at once whatever the fleet size.
"""

from __future__ import annotations

import asyncio
import copy
import gc

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.utils import floatToGoString
from prometheus_client.registry import Collector

from meshobs.exporter.normalize import ALLOWED, CERT_EXPIRY, CERT_NOT_BEFORE, DENIED, FAILURES, HANDSHAKES, PLAINTEXT, REASONS
from meshobs.meshes.proxy import DRY_RUN_ALLOWED, DRY_RUN_DENIED
from meshobs.exporter.state import CLAIM_REFUSALS, SCRAPE_ERROR_REASONS, State

LABELS = ["mesh", "namespace", "workload"]

_COUNTERS = (
    (HANDSHAKES, "Successful TLS handshakes at the workload's inbound listeners."),
    (ALLOWED, "Requests or connections allowed by authorization policy."),
    (DENIED, "Requests or connections denied by authorization policy."),
    (PLAINTEXT, "Traffic the workload served without mutual TLS (plaintext it refused is a not_tls failure)."),
    (DRY_RUN_ALLOWED, "Requests or connections a dry-run (shadow) authorization policy would allow."),
    (DRY_RUN_DENIED, "Requests or connections a dry-run (shadow) authorization policy would deny."),
)


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    # prometheus-client appends _total to counter samples itself
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class StateCollector(Collector):
    """The state's families; `counter` and `gauge` make them (prometheus-client's by default,
    `render` passes families that write text lines at once)."""

    def __init__(self, state: State, counter=_counter, gauge=_gauge):
        self.state = state
        self.counter, self.gauge = counter, gauge

    def collect(self):
        state, _counter, _gauge = self.state, self.counter, self.gauge
        counters = {name: _counter(name, doc, LABELS) for name, doc in _COUNTERS}
        failures = _counter(FAILURES, "Failed TLS handshakes by reason: " + ", ".join(REASONS) + ".", LABELS + ["reason"])
        errors = _counter("meshobs_scrape_errors_total", "Failed scrapes of the workload's proxies by reason.", LABELS + ["reason"])
        bursts = _counter("meshobs_authz_denied_bursts_total", "Bursts of authorization denials started.", LABELS)
        burst = _gauge("meshobs_authz_denied_burst", "1 while a burst of authorization denials is active.", LABELS)
        certs = _gauge(CERT_EXPIRY, "Earliest expiry (unix seconds) of the workload's leaf or CA certificate.", LABELS + ["cert"])
        not_before = _gauge(CERT_NOT_BEFORE, "notBefore (unix seconds) of the certificate whose expiry "
                            f"{CERT_EXPIRY} reports, where the proxy tells it.", LABELS + ["cert"])
        cert_times = state.cert_times()
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
            for kind, (expires, valid_from) in sorted(cert_times.get(key, {}).items()):
                certs.add_metric(labels + [kind], expires)
                if valid_from is not None:
                    not_before.add_metric(labels + [kind], valid_from)
        up = _gauge("meshobs_target_up", "1 if the last scrape of the proxy succeeded.", LABELS + ["instance"])
        duration = _gauge("meshobs_scrape_duration_seconds", "Duration of the last scrape of the proxy.", LABELS + ["instance"])
        for target, target_state in sorted(state.targets.items(), key=lambda item: item[0].url):
            labels = list(target.workload_key) + [target.instance]
            up.add_metric(labels, 1.0 if target_state.up else 0.0)
            duration.add_metric(labels, target_state.duration)
        yield from counters.values()
        dropped = _counter("meshobs_workloads_dropped_total", "Workloads left unscraped in a cycle because the exporter "
                           "holds --max-workloads already, summed over cycles.", [])
        dropped.add_metric([], state.dropped_workloads)
        refused = _counter("meshobs_ztunnel_claims_refused_total", "Workloads a ztunnel named in its series but "
                           "was not counted for, by reason: " + ", ".join(CLAIM_REFUSALS) + ".", ["reason"])
        for reason in CLAIM_REFUSALS:
            refused.add_metric([reason], state.refused_claims[reason])
        yield from (failures, burst, bursts, certs, not_before, up, duration, errors, dropped, refused)


# objects copied between two turns of the event loop
_SNAPSHOT_SLICE = 1000


def _copy(record):
    """A copy of a state record whose dicts and sets the live state can go on changing."""
    copied = copy.copy(record)
    for name, value in vars(record).items():
        if isinstance(value, (dict, set)):
            setattr(copied, name, value.copy())
    return copied


async def snapshot(state: State) -> State:
    """A copy of `state` for rendering, taken without holding the event loop for long."""
    frozen = copy.copy(state)
    frozen.targets, frozen.workloads = {}, {}
    frozen.refused_claims = dict(state.refused_claims)
    for live, copied in ((state.targets, frozen.targets), (state.workloads, frozen.workloads)):
        items = list(live.items())
        for start in range(0, len(items), _SNAPSHOT_SLICE):
            copied.update((key, _copy(record)) for key, record in items[start:start + _SNAPSHOT_SLICE])
            await asyncio.sleep(0)
    return frozen


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


class _TextFamily:
    """A family written straight to exposition lines as samples are added: the calls of
    prometheus-client's families without a Sample and a labels dict per sample (~100,000 of them
    at 5,000 workloads, tens of MB at once)."""

    def __init__(self, type_: str, name: str, documentation: str, labels: list[str]):
        self.type, self.name, self.documentation = type_, name, documentation
        self._sample = name + "_total" if type_ == "counter" else name
        self._order = sorted(range(len(labels)), key=labels.__getitem__)  # label names sorted, as generate_latest
        self._names = [labels[i] for i in self._order]
        self.lines: list[str] = []

    def add_metric(self, labels: list[str], value: float) -> None:
        if self._names:
            pairs = ",".join(f'{name}="{_escape(labels[i])}"' for name, i in zip(self._names, self._order))
            self.lines.append(f"{self._sample}{{{pairs}}} {floatToGoString(value)}\n")
        else:
            self.lines.append(f"{self._sample} {floatToGoString(value)}\n")


def _text_counter(name: str, doc: str, labels: list[str]) -> _TextFamily:
    return _TextFamily("counter", name.removesuffix("_total"), doc, labels)


def _text_gauge(name: str, doc: str, labels: list[str]) -> _TextFamily:
    return _TextFamily("gauge", name, doc, labels)


def render(frozen: State) -> bytearray:
    """The text exposition (format 0.0.4, as `generate_latest` writes it) of a snapshot, built in
    place (a copy into `bytes` would be another ~10 MB at 5,000 workloads); run it in a worker
    thread. A plain formatter: prometheus-client's checks every name and label per
    sample, several times slower for the ~100,000 samples of 5,000 workloads."""
    # ~100,000 short-lived strings would set off full garbage collections, each holding the
    # interpreter for a tenth of a second: they are freed by reference counting anyway, so the
    # cyclic collector waits until the text is built
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _render(frozen)
    finally:
        if enabled:
            gc.enable()


def _render(frozen: State) -> bytearray:
    out = bytearray()
    for family in StateCollector(frozen, _text_counter, _text_gauge).collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
        out += f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n".encode()
        out += "".join(family.lines).encode()
        family.lines.clear()
    return out


class CycleCollector(Collector):
    """How much work the scrape loop does, so operators see when to add a shard."""

    def __init__(self, stats):
        self.stats = stats  # runner.CycleStats

    def collect(self):
        stats = self.stats
        yield GaugeMetricFamily("meshobs_cycle_duration_seconds", "Duration of the last complete scrape cycle.",
                                value=stats.duration)
        yield GaugeMetricFamily("meshobs_cycle_targets", "Targets the last scrape cycle had to read.",
                                value=stats.targets)
        yield GaugeMetricFamily("meshobs_cycle_deferred_targets",
                                "Targets the last cycle did not reach before its deadline (read first in the next).",
                                value=stats.deferred)
        yield CounterMetricFamily("meshobs_cycle_overrun", "Scrape cycles longer than the scrape interval: "
                                  "the replica needs more CPU or another shard.", value=stats.overruns)
