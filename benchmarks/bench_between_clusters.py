"""The Clusters dashboard's "Traffic between clusters" panels against a real Prometheus holding the
calls of many workloads across clusters: each refresh's wall time with the panels reading the
recorded pairs (meshobs/recordings_crosscluster.py, what the dashboards render), printed against a
baseline measured in the same run — the same panels asked from the raw series (the signal model's
live queries, what the panels cost before the pairs were recorded).

A replay endpoint serves Istio-shaped series for --workloads workloads, each called from one of
--clusters clusters (destination-reported requests with 200 and 503 codes over mutual TLS and a
latency histogram, `source_cluster` / `destination_cluster` set); Prometheus scrapes it and
evaluates the rendered Istio recording rules.

    python benchmarks/bench_between_clusters.py [--workloads 1000] [--clusters 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshobs import build, config  # noqa: E402
from meshobs.query.client import Prometheus  # noqa: E402
from meshobs.render import between_clusters, rules  # noqa: E402
from meshobs.render.dashboards import _Context  # noqa: E402
from tests.support import meshdata  # noqa: E402
from tests.support.procs import process_starter, wait_until  # noqa: E402
from tests.support.prom import start_prometheus  # noqa: E402
from tests.verify.replay import Replay  # noqa: E402

NAMESPACES = 50
HERE = "c1"


def workload_series(index: int, clusters: int) -> list[meshdata.Series]:
    namespace, workload = f"ns-{index % NAMESPACES}", f"w-{index}"
    base = {"reporter": "destination", "source_workload": f"w-{(index + 1) % 1000}", "source_workload_namespace": namespace,
            "destination_workload": workload, "destination_workload_namespace": namespace,
            "destination_service_name": workload, "connection_security_policy": "mutual_tls",
            "source_cluster": f"c{index % clusters + 1}", "destination_cluster": HERE}
    out = [meshdata.counter("istio_requests_total", {**base, "response_code": "200"}, 1.0 + index % 7),
           meshdata.counter("istio_requests_total", {**base, "response_code": "503"}, 0.01 * (index % 5))]
    out += meshdata.histogram("istio_request_duration_milliseconds", {**base, "response_code": "200"}, 1.0 + index % 7)
    return out


def panel_queries(pairs: dict[str, str]) -> list[str]:
    """The pair panels' queries as Grafana sends them with every cluster selected."""
    return [expr.replace("$cluster", ".*").replace(between_clusters.RATE, "1m") for expr in pairs.values()]


def timed(client: Prometheus, exprs: list[str], at: float, repeat: int) -> float:
    """Median wall seconds of one dashboard refresh: every query at once, as Grafana sends them."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda expr: client.vector(expr, at), exprs))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    cfg = config.Config()
    dialect = build.select_meshes(["istio"])[0]
    context = _Context(cfg, dialect)
    recorded = panel_queries(between_clusters.recorded_pairs(context))
    every_pair = between_clusters.pair_labels(context)
    raw = panel_queries(between_clusters.live_pairs(context, every_pair, {context.cluster: "$cluster"}))
    target = meshdata.Target("/metrics", {}, "istio", "fleet",
                             [s for i in range(args.workloads) for s in workload_series(i, args.clusters)])
    replay = Replay([target])
    starter = process_starter()
    processes = next(starter)
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            rule_file = tmp / "istio-recording-rules.yaml"
            rule_file.write_bytes(rules.render(cfg, dialect)["alerts/istio/recording-rules.yaml"])
            (_, address), = replay.addresses()
            prometheus = start_prometheus(processes, tmp, {"fleet": [{"targets": [address], "labels": {"cluster": HERE}}]},
                                          rule_files=[rule_file], scrape_interval="5s", evaluation_interval="15s")
            client = Prometheus(prometheus.url, timeout=60)
            print(f"{len(target.series):,} raw series, {args.workloads:,} workloads called from {args.clusters} clusters; "
                  "waiting for recorded series ...")
            wait_until(lambda: client.vector('count(count_over_time(up[1m]) >= 2)', time.time()),
                       timeout=300, interval=1, what="two scrapes")
            scraped = time.time()
            wait_until(lambda: all(evaluated > scraped for evaluated in prometheus.rule_evaluations()),
                       timeout=300, interval=1, what="every rule group evaluated on two scrapes")
            at = time.time()
            pairs = len(client.vector(recorded[0], at))
            assert pairs == len(client.vector(raw[0], at)) == args.clusters, (pairs, args.clusters)
            baseline = timed(client, raw, at, args.repeat)
            seconds = timed(client, recorded, at, args.repeat)
            print(f"{pairs} pairs, {len(recorded)} panel queries per refresh\n")
            print(f"{'Traffic between clusters, one refresh':<42} {'median':>8}  {'vs raw series':>13}")
            print(f"{'recorded pairs (rendered dashboards)':<42} {seconds * 1000:7.1f}ms  {seconds / baseline:12.3f}x")
            print(f"{'baseline: raw series':<42} {baseline * 1000:7.1f}ms  {1:12.3f}x")
    finally:
        replay.stop()
        next(starter, None)


if __name__ == "__main__":
    main()
