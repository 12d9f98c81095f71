"""Serve /metrics for a large fleet: the exporter's collector over N workloads of P pods each,
against prometheus-client exposing the same samples from plain labelled metrics (the floor of
what any collector costs), in the same run; and one end-of-cycle evaluation. Both run on the
event loop, so they bound how long a big (or churned-up) fleet can stall /healthz.

    python benchmarks/bench_collect.py [--workloads 5000] [--pods 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from meshobs.exporter.collector import StateCollector
from meshobs.exporter.normalize import FAILURES, HANDSHAKES, REASONS, Reading
from meshobs.exporter.state import State
from meshobs.exporter.targets import make_target

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_parse import best_of  # noqa: E402


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--workloads", type=int, default=5000)
    options.add_argument("--pods", type=int, default=2)
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    state = State(max_workloads=args.workloads)
    reading = Reading({(HANDSHAKES, ""): 1.0, **{(FAILURES, r): 0.0 for r in REASONS}}, {"leaf": 2e9, "ca": 3e9})
    for w in range(args.workloads):
        for p in range(args.pods):
            target = make_target(f"http://10.{w // 250}.{w % 250}.{p}:15090/stats/prometheus", "istio", "ns", f"w{w}")
            state.observe(target, reading, 0.01)
    ours = CollectorRegistry()
    ours.register(StateCollector(state))
    body = generate_latest(ours)
    samples = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(body.decode()) for s in f.samples]
    floor = CollectorRegistry()
    gauges: dict[tuple, Gauge] = {}
    for name, labels, value in samples:
        key = (name, tuple(sorted(labels)))
        if key not in gauges:
            gauges[key] = Gauge(f"{name}_{len(gauges)}", name, list(key[1]), registry=floor)
        (gauges[key].labels(**labels) if labels else gauges[key]).set(value)
    collect = best_of(args.repeat, lambda: generate_latest(ours))
    plain = best_of(args.repeat, lambda: generate_latest(floor))
    cycle = best_of(args.repeat, lambda: state.end_cycle(1.0))
    print(f"{args.workloads} workloads x {args.pods} pods: {len(samples)} samples, {len(body) / 1e6:.1f} MB")
    print(f"exporter /metrics:                 {collect * 1000:8.1f} ms")
    print(f"prometheus-client, same samples:   {plain * 1000:8.1f} ms")
    print(f"ratio: {collect / plain:.2f}x the library's own cost")
    print(f"end of cycle (bursts, reasons, certificate windows): {cycle * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
