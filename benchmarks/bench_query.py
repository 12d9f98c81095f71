"""`meshobs stat / authz / tls / certs` against a real Prometheus holding 1,000 workloads: each
command's wall time (goal: under 1 s), printed against a baseline measured in the same run —
the same numbers of `meshobs stat` asked from the raw series (the signal model's live queries,
what the command would cost without recording rules).

A replay endpoint serves Istio-shaped series for --workloads workloads (destination-reported
requests with 200 and 503 codes over mutual TLS, a latency histogram, a caller edge each, and the
meshobs exporter's security series) with counters growing in time; Prometheus scrapes it and
evaluates the rendered Istio recording rules, so the commands read real recorded series.

    python benchmarks/bench_query.py [--workloads 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from meshobs import cli, signals  # noqa: E402
from meshobs.meshes import DIALECTS  # noqa: E402
from meshobs.promql import Query  # noqa: E402
from meshobs.query.client import Prometheus  # noqa: E402
from tests.support import meshdata  # noqa: E402
from recorded_prometheus import NAMESPACES, istio_calls, recording_istio, timed_parallel  # noqa: E402

COMMANDS = (("stat",), ("stat", "service"), ("stat", "--to", "ns-0/w-0"), ("authz",), ("tls",), ("certs",),
            ("stat", "--window", "1h"))


def workload_series(index: int, now: float) -> list[meshdata.Series]:
    namespace, workload = f"ns-{index % NAMESPACES}", f"w-{index}"
    out = istio_calls(index)
    exporter = {"mesh": "istio", "namespace": namespace, "workload": workload}
    out += [meshdata.counter("meshobs_authz_allowed_total", exporter, 1.0),
            meshdata.counter("meshobs_authz_denied_total", exporter, 0.1 if index % 10 == 0 else 0.0),
            meshdata.counter("meshobs_plaintext_requests_total", exporter, 0.0),
            meshdata.counter("meshobs_tls_handshake_failures_total", {**exporter, "reason": "untrusted_cert"}, 0.0),
            meshdata.gauge("meshobs_cert_expiry_timestamp_seconds", {**exporter, "cert": "leaf"}, now + 3600 + index),
            meshdata.gauge("meshobs_cert_expiry_timestamp_seconds", {**exporter, "cert": "ca"}, now + 86400 * 365)]
    return out


def run(argv: tuple[str, ...], url: str, at: float) -> str:
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main([*argv, "--prometheus", url, "--mesh", "istio", "--at", f"{at:.3f}"])
    assert code == 0, argv
    return printed.getvalue()


def timed(argv: tuple[str, ...], url: str, at: float, repeat: int) -> tuple[float, int]:
    """Median wall seconds of `meshobs ARGV` (a table, as a user sees it) in-process, and the rows
    of its answer (from `-o json`)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run(argv, url, at)
        times.append(time.perf_counter() - started)
    document = json.loads(run(argv + ("-o", "json"), url, at))
    rows = sum(len(value) for value in document.values() if isinstance(value, list))
    return statistics.median(times), rows


def raw_stat_queries() -> list[str]:
    """`meshobs stat`'s workload numbers as live queries on the raw series (no recorded series)."""
    dialect = DIALECTS["istio"]
    query = Query(by=("cluster",) + signals.WORKLOAD, window="5m")
    exprs = [signal.expr(dialect, query) for signal in (signals.INBOUND_REQUESTS, signals.INBOUND_ERRORS,
                                                         signals.AUTHZ_DENIED, signals.PLAINTEXT_REQUESTS,
                                                         signals.TCP_CONNECTIONS)]
    exprs += [signals.INBOUND_DURATION.expr(dialect, query, quantile=q) for q in (0.5, 0.95, 0.99)]
    return exprs


def timed_raw(prometheus: Prometheus, at: float, repeat: int) -> float:
    return timed_parallel(prometheus, raw_stat_queries(), at, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="COMMAND", help="also print where one run of this command spends its time")
    args = parser.parse_args()

    now = time.time()
    series = [s for i in range(args.workloads) for s in workload_series(i, now)]
    print(f"{len(series):,} raw series for {args.workloads:,} workloads; waiting for recorded series ...")
    with recording_istio(series, "c1") as (prometheus, client):
        at = time.time()
        recorded = client.vector('count({__name__=~".+:mesh_.+", mesh="istio"})', at)[0].value
        print(f"{recorded:,.0f} recorded series\n")
        baseline = timed_raw(client, at, args.repeat)
        print(f"{'command':<34} {'rows':>6} {'median':>8}  {'vs raw-series stat':>18}  goal < 1 s")
        for argv in COMMANDS:
            seconds, rows = timed(argv, prometheus.url, at, args.repeat)
            verdict = "ok" if seconds < 1 else "SLOW"
            print(f"{'meshobs ' + ' '.join(argv):<34} {rows:6,} {seconds * 1000:7.0f}ms  {seconds / baseline:17.2f}x  {verdict}")
        print(f"{'baseline: stat from raw series':<34} {'':6} {baseline * 1000:7.0f}ms  {1:17.2f}x")
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.runcall(timed, tuple(args.profile.split()), prometheus.url, at, 1)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(20)


if __name__ == "__main__":
    main()
