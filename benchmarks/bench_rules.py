"""Evaluation time of the traffic recording rules in a real Prometheus over days of backfilled
data: long windows read from raw samples (before) against long windows derived from the recorded
short-window rates (after), printed as a ratio in one run.

The data set is Istio's: --services destination services, each called by --callers workloads and
reported by the destination and by the source proxy with 200 and 503 responses, sampled every
--step seconds for --days days, and
the 5m rates a Prometheus running the rules would have recorded over the same days. It is written
as OpenMetrics, one file per 2h block, and backfilled with `promtool tsdb create-blocks-from
openmetrics`; each variant then runs in its own Prometheus on a copy of those blocks, and the
traffic group's evaluation time is read from /api/v1/rules over --evaluations evaluations.

    python benchmarks/bench_rules.py [--services 200] [--callers 3] [--days 3] [--step 120] [--evaluations 9]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.procs import process_starter, wait_until  # noqa: E402
from tests.support.prom import run_prometheus  # noqa: E402

BLOCK = 2 * 3600
CODES = {"200": 0.95, "503": 0.05}  # share of each service's traffic


def _rate(index: int) -> float:
    """Requests per second of service `index`: a spread from quiet to busy."""
    return 0.05 + (index % 40) * 0.5


def write_openmetrics(folder: Path, services: int, callers: int, start: int, end: int, step: int) -> list[Path]:
    """One OpenMetrics file per 2h block between start and end (seconds)."""
    files = []
    for block_start in range(start - start % BLOCK, end, BLOCK):
        times = [t for t in range(max(start, block_start), min(end, block_start + BLOCK), step)]
        if not times:
            continue
        path = folder / f"block-{block_start}.om"
        with path.open("w") as out:
            out.write("# TYPE istio_requests counter\n")
            for index in range(services):
                for caller in range(callers):
                    for reporter in ("destination", "source"):
                        for code, share in CODES.items():
                            labels = (f'cluster="c1",reporter="{reporter}",source_workload="caller{caller}",'
                                      f'destination_service_name="svc{index}",destination_service_namespace="ns{index % 20}",'
                                      f'destination_workload="svc{index}",destination_workload_namespace="ns{index % 20}",'
                                      f'response_code="{code}",grpc_response_status=""')
                            per_second = _rate(index) * share / callers
                            out.writelines(f"istio_requests_total{{{labels}}} {per_second * (t - start):.3f} {t}\n"
                                           for t in times)
            for metric, share in (("destination_service:mesh_requests:rate5m", 1.0),
                                  ("destination_service:mesh_request_errors:rate5m", CODES["503"])):
                out.write(f"# TYPE {metric} gauge\n")
                for index in range(services):
                    labels = f'cluster="c1",destination_namespace="ns{index % 20}",destination_service="svc{index}",mesh="istio"'
                    out.writelines(f"{metric}{{{labels}}} {_rate(index) * share:.4f} {t}\n" for t in times)
            out.write("# EOF\n")
        files.append(path)
    return files


def traffic_rules(derived: bool) -> dict:
    """The rendered traffic recording group, long windows derived (after) or read raw (before)."""
    from meshobs import config, recordings
    from meshobs.meshes import DIALECTS

    saved = recordings.DERIVED_FROM
    recordings.DERIVED_FROM = saved if derived else float("inf")
    try:
        rules = recordings.traffic_rules(config.Config(), DIALECTS["istio"])
    finally:
        recordings.DERIVED_FROM = saved
    return {"groups": [{"name": "traffic", "rules": [{"record": r.record, "expr": r.expr, "labels": dict(r.labels)}
                                                      for r in rules]}]}


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def evaluation_seconds(blocks: Path, work: Path, rules: dict, evaluations: int, interval: int) -> list[float]:
    """The traffic group's evaluation time over `evaluations` evaluations in a real Prometheus."""
    shutil.copytree(blocks, work / "data")
    (work / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {"global": {"evaluation_interval": f"{interval}s", "scrape_interval": f"{interval}s"},
              "rule_files": [str(work / "rules.yaml")]}
    seen: dict[str, float] = {}
    starter = process_starter()
    try:
        prometheus = run_prometheus(next(starter), work, config)

        def evaluated() -> bool:
            for group in _get(f"{prometheus.url}/api/v1/rules")["data"]["groups"]:
                if not group["lastEvaluation"].startswith("0001"):
                    seen[group["lastEvaluation"]] = group["evaluationTime"]
            return len(seen) >= evaluations

        wait_until(evaluated, timeout=120 + evaluations * interval * 10, interval=interval / 4,
                   what=f"{evaluations} evaluations of the traffic group")
    finally:
        next(starter, None)  # stops Prometheus
    return list(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--callers", type=int, default=3, help="calling workloads per service")
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--step", type=int, default=120, help="seconds between samples")
    parser.add_argument("--evaluations", type=int, default=9)
    parser.add_argument("--interval", type=int, default=10, help="rule evaluation interval, seconds")
    args = parser.parse_args()
    promtool = shutil.which("promtool")
    if not shutil.which("prometheus") or not promtool:
        sys.exit("needs prometheus and promtool on PATH")

    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        root = Path(tmp)
        (root / "om").mkdir()
        now = int(time.time())
        start = now - int(args.days * 86400)
        began = time.monotonic()
        files = write_openmetrics(root / "om", args.services, args.callers, start, now + 600, args.step)
        series = args.services * (args.callers * 2 * len(CODES) + 2)
        samples = series * int((now + 600 - start) / args.step)
        print(f"data: {args.services} services, {series} series, {args.days:g} days every {args.step}s: "
              f"{samples / 1e6:.1f} M samples in {len(files)} OpenMetrics files ({time.monotonic() - began:.0f}s)")
        began = time.monotonic()
        for path in files:
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(root / "blocks")],
                           check=True)
            path.unlink()
        print(f"backfilled with promtool in {time.monotonic() - began:.0f}s")

        results = {}
        for name, derived in (("before (raw long windows)", False), ("after (derived from recorded 5m rates)", True)):
            work = root / ("after" if derived else "before")
            work.mkdir()
            times = evaluation_seconds(root / "blocks", work, traffic_rules(derived), args.evaluations, args.interval)
            results[name] = statistics.median(times)
            print(f"{name}: traffic group evaluation {results[name] * 1000:.1f} ms "
                  f"(median of {len(times)}: {', '.join(f'{t * 1000:.0f}' for t in sorted(times))} ms)")
        before, after = results.values()
        print(f"ratio: {before / after:.1f}x faster")


if __name__ == "__main__":
    main()
