"""`meshobs verify`: run every rendered dashboard query and rule expression against a live
Prometheus and fail on errors and on empty results, naming dashboard, panel and query.

    meshobs verify --prometheus http://127.0.0.1:9090 --dir out --report out/verify-report
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

from meshobs import manifest
from meshobs.config import duration_seconds
from meshobs.verify import output, preflight
from meshobs.verify.check import Checker, run as run_checks, summary
from meshobs.verify.promapi import Prometheus
from meshobs.verify.sources import load, meshes_in
from meshobs.verify.variables import Timing

log = logging.getLogger(__name__)

# points per chart in the report (and so the step of the range queries)
_POINTS = 120


def _seconds(text: str) -> float:
    try:
        return duration_seconds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def prometheus_url(text: str) -> str:
    """--prometheus: an http(s) URL with a host, checked before anything is asked of it."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected the Prometheus base URL, e.g. http://127.0.0.1:9090")
    return text


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
    parser.add_argument("--prometheus", required=True, type=prometheus_url, metavar="URL", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
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
    parser.add_argument("--wait", type=_seconds, nargs="?", const=600.0, metavar="LIMIT",
                        help="if Prometheus is too young for the queries to answer (two scrapes, two rule "
                             "evaluations), wait until it is old enough, at most LIMIT (default 10m)")


def _young(prometheus: Prometheus, args: argparse.Namespace) -> str | None:
    """The up-front warning for a Prometheus too young to answer, after waiting if asked."""
    if args.at is not None:
        return None  # evaluated inside old data
    state = preflight.measure(prometheus, args.scrape_interval)
    deadline = time.monotonic() + (args.wait or 0.0)
    if state.young and args.wait:
        log.info("waiting up to %s for Prometheus to have two scrapes and two rule evaluations (about %s)",
                 preflight.duration(args.wait), preflight.duration(state.wait))
    while state.young and time.monotonic() < deadline:
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
        state = preflight.measure(prometheus, args.scrape_interval)
    return state.message(prometheus.url) if state.young else None


def _selected_meshes(args: argparse.Namespace) -> list[str] | None:
    """--mesh, or the meshes in --dir that the last build wrote (a warning names the others)."""
    notes, stale = manifest.warnings(args.dir, skipped="not verified")
    for note in notes:
        log.warning("%s", note)
    if args.meshes or not stale:
        return args.meshes
    return [mesh for mesh in meshes_in(args.dir) if mesh not in stale]


def run(args: argparse.Namespace) -> int:
    queries = load(args.dir, _selected_meshes(args))
    prometheus = Prometheus(args.prometheus)
    prometheus.ready()
    rule_groups = {q.title: (q.mesh, q.source) for q in queries if q.kind in ("record", "alert")}
    warning = (preflight.unloaded(prometheus, rule_groups) or _young(prometheus, args)
               or preflight.unscraped(prometheus, sorted({q.mesh for q in queries}), args.at or time.time()))
    if warning:
        log.warning("%s", warning)
    timing = Timing(scrape=args.scrape_interval, step=max(args.range / _POINTS, args.scrape_interval), range=args.range)
    progress = output.Progress(len(queries))
    try:
        outcomes = run_checks(queries, Checker(prometheus, timing, at=args.at, with_ranges=args.report is not None),
                              progress)
    finally:
        progress.close()
    for line in output.lines(outcomes, verbose=getattr(args, "verbose", False)):
        print(line)
    if args.report is not None:
        from meshobs.verify.report import write

        index = write(outcomes, args.report, prometheus.url)
        print(f"report: {index}")
    print()
    for line in output.table(outcomes):
        print(line)
    if warning and any(not o.ok for o in outcomes):
        log.warning("see the warning above before trusting these failures")
    print(summary(outcomes), file=sys.stderr if any(not o.ok for o in outcomes) else sys.stdout)
    return 0 if all(o.ok for o in outcomes) else 1
