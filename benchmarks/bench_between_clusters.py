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
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshobs import config  # noqa: E402
from meshobs.meshes import DIALECTS  # noqa: E402
from meshobs.render import between_clusters, grafana  # noqa: E402
from meshobs.render.dashboards import _Context  # noqa: E402
from tests.support import meshdata  # noqa: E402
from recorded_prometheus import istio_calls, recording_istio, timed_parallel  # noqa: E402

HERE = "c1"


def workload_series(index: int, clusters: int) -> list[meshdata.Series]:
    return istio_calls(index, source_cluster=f"c{index % clusters + 1}", destination_cluster=HERE)


def panel_queries(pairs: dict[str, str]) -> list[str]:
    """The pair panels' queries as Grafana sends them with every cluster selected."""
    return [expr.replace("$cluster", ".*").replace(grafana.RATE, "1m") for expr in pairs.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    cfg = config.Config()
    context = _Context(cfg, DIALECTS["istio"])
    recorded = panel_queries(between_clusters.recorded_pairs(context))
    every_pair = between_clusters.pair_labels(context)
    raw = panel_queries(between_clusters.live_pairs(context, every_pair, {context.cluster: "$cluster"}))
    series = [s for i in range(args.workloads) for s in workload_series(i, args.clusters)]
    print(f"{len(series):,} raw series, {args.workloads:,} workloads called from {args.clusters} clusters; "
          "waiting for recorded series ...")
    with recording_istio(series, HERE) as (_, client):
        at = time.time()
        pairs = len(client.vector(recorded[0], at))
        assert pairs == len(client.vector(raw[0], at)) == args.clusters, (pairs, args.clusters)
        baseline = timed_parallel(client, raw, at, args.repeat)
        seconds = timed_parallel(client, recorded, at, args.repeat)
    print(f"{pairs} pairs, {len(recorded)} panel queries per refresh\n")
    print(f"{'Traffic between clusters, one refresh':<42} {'median':>8}  {'vs raw series':>13}")
    print(f"{'recorded pairs (rendered dashboards)':<42} {seconds * 1000:7.1f}ms  {seconds / baseline:12.3f}x")
    print(f"{'baseline: raw series':<42} {baseline * 1000:7.1f}ms  {1:12.3f}x")


if __name__ == "__main__":
    main()
