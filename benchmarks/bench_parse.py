"""Parse a ~50k-line Envoy exposition with the exporter's parser and with prometheus-client's
text parser in the same run; print both, the ratio, and a raw scan of the same bytes (one
`bytes.count`: the least Python can do with them) as the floor.

    python benchmarks/bench_parse.py [--lines 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exposition import clusters_for_lines, envoy_exposition  # noqa: E402

from meshobs.exporter.normalize import DIALECTS, normalize  # noqa: E402
from meshobs.exporter.parse import line_filter  # noqa: E402

ISTIO = DIALECTS["istio"]


def best_of(repeat: int, func) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--lines", type=int, default=50_000)
    options.add_argument("--repeat", type=int, default=5)
    args = options.parse_args()
    body = envoy_exposition(clusters_for_lines(args.lines))
    lines = body.count(b"\n")

    def read():
        lines = line_filter(ISTIO)
        lines.feed(body)
        return lines.samples()

    def exporter():
        return normalize(ISTIO, read())

    def library():
        return sum(len(family.samples) for family in text_string_to_metric_families(body.decode()))

    kept = len(read())
    ours = best_of(args.repeat, exporter)
    raw = best_of(args.repeat, lambda: body.count(b"\n"))
    theirs = best_of(max(1, args.repeat // 2), library)
    print(f"exposition: {lines} lines, {len(body) / 1e6:.1f} MB; the exporter keeps {kept} samples")
    print(f"meshobs parser (filter + parse + normalize): {ours * 1000:8.1f} ms  ({lines / ours / 1e6:.2f} M lines/s)")
    print(f"prometheus-client text parser:             {theirs * 1000:8.1f} ms  ({lines / theirs / 1e6:.2f} M lines/s)")
    print(f"raw scan (bytes.count):                     {raw * 1000:8.1f} ms")
    print(f"ratio: {theirs / ours:.0f}x faster than prometheus-client; {ours / raw:.1f}x the raw scan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
