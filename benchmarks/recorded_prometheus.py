"""What the benchmarks of recorded series share: replayed Istio series in a real Prometheus that
evaluates the rendered Istio recording rules, and the wall time of a set of queries sent at once
as Grafana or `meshobs stat` sends them."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

from meshobs import config
from meshobs.meshes import DIALECTS
from meshobs.query.client import Prometheus
from meshobs.render import rules
from tests.support import meshdata
from tests.support.procs import process_starter, wait_until
from tests.support.prom import RunningPrometheus, start_prometheus
from tests.verify.replay import Replay


NAMESPACES = 50


def istio_calls(index: int, **labels: str) -> list[meshdata.Series]:
    """Istio's destination-reported requests of workload w-<index> in ns-<index % NAMESPACES>, called by
    w-<index + 1> (200 and a few 503 responses over mutual TLS, a latency histogram), `labels` added."""
    namespace, workload = f"ns-{index % NAMESPACES}", f"w-{index}"
    base = {"reporter": "destination", "source_workload": f"w-{(index + 1) % 1000}", "source_workload_namespace": namespace,
            "destination_workload": workload, "destination_workload_namespace": namespace,
            "destination_service_name": workload, "connection_security_policy": "mutual_tls", **labels}
    out = [meshdata.counter("istio_requests_total", {**base, "response_code": "200"}, 1.0 + index % 7),
           meshdata.counter("istio_requests_total", {**base, "response_code": "503"}, 0.01 * (index % 5))]
    out += meshdata.histogram("istio_request_duration_milliseconds", {**base, "response_code": "200"}, 1.0 + index % 7)
    return out


@contextlib.contextmanager
def recording_istio(series: list[meshdata.Series], cluster: str) -> Iterator[tuple[RunningPrometheus, Prometheus]]:
    """A replay endpoint serving `series` and a real Prometheus scraping it (as cluster `cluster`)
    every 5 s and evaluating the rendered Istio recording rules every 15 s as usual (a shorter
    interval would keep it busy re-evaluating while queries are timed); ready once every rule group
    has evaluated on two scrapes. Everything started is stopped on exit."""
    replay = Replay([meshdata.Target("/metrics", {}, "istio", "fleet", series)])
    starter = process_starter()
    processes = next(starter)
    try:
        with tempfile.TemporaryDirectory() as folder:
            rule_file = Path(folder) / "istio-recording-rules.yaml"
            rule_file.write_bytes(rules.render(config.Config(), DIALECTS["istio"])["alerts/istio/recording-rules.yaml"])
            (_, address), = replay.addresses()
            prometheus = start_prometheus(processes, Path(folder), {"fleet": [{"targets": [address], "labels": {"cluster": cluster}}]},
                                          rule_files=[rule_file], scrape_interval="5s", evaluation_interval="15s")
            client = Prometheus(prometheus.url, timeout=60)
            wait_until(lambda: client.vector('count(count_over_time(up[1m]) >= 2)', time.time()),
                       timeout=300, interval=1, what="two scrapes")
            prometheus.wait_for_rules_after(time.time(), timeout=300, interval=1)
            yield prometheus, client
    finally:
        replay.stop()
        next(starter, None)


def timed_parallel(client: Prometheus, exprs: list[str], at: float, repeat: int) -> float:
    """Median wall seconds of asking every query at once (8 at a time)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda expr: client.vector(expr, at), exprs))
        times.append(time.perf_counter() - started)
    return statistics.median(times)
