"""`meshobs verify`: run every rendered dashboard query and rule expression against a live
Prometheus and fail on errors and on empty results, naming dashboard, panel and query.

    meshobs verify --prometheus http://127.0.0.1:9090 --dir out --report out/verify-report
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from meshobs.config import duration_seconds
from meshobs.verify.check import Checker, Outcome, run as run_checks, summary
from meshobs.verify.promapi import Prometheus
from meshobs.verify.sources import load
from meshobs.verify.variables import Timing

# points per chart in the report (and so the step of the range queries)
_POINTS = 120


def _seconds(text: str) -> float:
    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _instant(text: str) -> float:
    """Unix seconds or RFC 3339 (`2026-11-25T21:00:00Z`)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is neither unix seconds nor an RFC 3339 time") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--dir", type=Path, default=Path("."), help="folder written by `meshobs build --out` (default: .)")
    parser.add_argument("--mesh", action="append", dest="meshes", metavar="NAME",
                        help="verify only this mesh (repeatable; default: every mesh found in --dir)")
    parser.add_argument("--report", type=Path, metavar="OUT_DIR", help="write index.html with a PNG chart per panel here")
    parser.add_argument("--scrape-interval", type=_seconds, default=15.0, metavar="DURATION",
                        help="Prometheus scrape interval, for $__rate_interval (default 15s)")
    parser.add_argument("--range", type=_seconds, default=3600.0, metavar="DURATION",
                        help="dashboard time range: $__range and the charts' span (default 1h)")
    parser.add_argument("--at", type=_instant, metavar="TIME",
                        help="evaluate at this time (unix seconds or RFC 3339), e.g. the end of backfilled data (default: now)")


def format_outcome(outcome: Outcome) -> list[str]:
    lines = []
    for problem in outcome.problems:
        lines.append(f"FAIL {outcome.query.where}: {problem}\n    query: {outcome.expr}")
    for note in outcome.excused:
        lines.append(f"note {outcome.query.where}: {note}")
    return lines


def run(args: argparse.Namespace) -> int:
    queries = load(args.dir, args.meshes)
    prometheus = Prometheus(args.prometheus)
    prometheus.ready()
    timing = Timing(scrape=args.scrape_interval, step=max(args.range / _POINTS, args.scrape_interval), range=args.range)
    outcomes = run_checks(queries, Checker(prometheus, timing, at=args.at, with_ranges=args.report is not None))
    for outcome in outcomes:
        for line in format_outcome(outcome):
            print(line)
    if args.report is not None:
        from meshobs.verify.report import write

        index = write(outcomes, args.report, prometheus.url)
        print(f"report: {index}")
    print(summary(outcomes), file=sys.stderr if any(not o.ok for o in outcomes) else sys.stdout)
    return 0 if all(o.ok for o in outcomes) else 1
