"""The options every terminal command shares and the loop that runs one: connect, check what
is recorded, collect a report per frame (`--watch` redraws it in place), print it, and exit 1
when a `--fail-if` condition holds (2 on usage or connection errors, raised as QueryError)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from meshobs.config import duration_seconds
from meshobs.errors import QueryError
from meshobs.meshes import DIALECTS
from meshobs.query import output
from meshobs.query.client import Prometheus
from meshobs.query.context import Context, Scope
from meshobs.query.recorded import Catalogue, checked_name
from meshobs.verify import _instant as verify_instant  # one parser of --at for verify and the queries

log = logging.getLogger(__name__)

URL_ENV = "MESHOBS_PROMETHEUS_URL"
TOKEN_ENV = "MESHOBS_PROMETHEUS_TOKEN"
WINDOWS = ("1m", "1d")  # the shortest and longest --window
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen: a --watch frame replaces the previous one


@dataclass(frozen=True)
class Condition:
    """A `--fail-if` condition: `offenders(report, threshold)` lists what makes it hold;
    `metavar` names its `=VALUE` (none: it takes no value), `parse` turns VALUE into the threshold."""

    help: str
    offenders: Callable[[output.Report, float | None], list[str]]
    metavar: str = ""
    parse: Callable[[str], float] = float


def ratio(text: str) -> float:
    value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} is not a ratio between 0 and 1 (or a percentage)")
    return value


def add_arguments(parser: argparse.ArgumentParser, conditions: dict[str, Condition]) -> None:
    connection = parser.add_argument_group("Prometheus")
    connection.add_argument("--prometheus", metavar="URL", default=os.environ.get(URL_ENV),
                            help=f"Prometheus base URL (default: ${URL_ENV})")
    connection.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                            help=f"bearer token (default: ${TOKEN_ENV})")
    connection.add_argument("--token-file", type=Path, help="read the bearer token from this file")
    connection.add_argument("--ca-file", type=Path, help="CA bundle to verify an https Prometheus")
    connection.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)")
    connection.add_argument("--config", type=Path, help="meshobs.yaml the rules were built with (for cluster_label)")
    filters = parser.add_argument_group("filters")
    filters.add_argument("--mesh", action="append", dest="meshes", choices=sorted(DIALECTS),
                         help="only this mesh (repeatable; default: every mesh with rules loaded)")
    filters.add_argument("-n", "--namespace", help="only this (destination) namespace")
    filters.add_argument("--cluster", help="only this cluster")
    filters.add_argument("--window", default="5m", help="time window, 1m to 1d (default 5m)")
    filters.add_argument("--at", type=verify_instant, metavar="TIME", help="evaluate at this time, unix seconds or RFC 3339 (default: now)")
    shown = parser.add_argument_group("output")
    shown.add_argument("-o", "--output", choices=output.FORMATS, default="table", help="default: table")
    shown.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    shown.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="--watch refresh (default 2)")
    shown.add_argument("--watch-count", type=int, help=argparse.SUPPRESS)  # frames before stopping (tests)
    names = ", ".join(f"{name}{'=' + c.metavar if c.metavar else ''} ({c.help})" for name, c in conditions.items())
    shown.add_argument("--fail-if", action="append", default=[], metavar="CONDITION",
                       help=f"exit 1 when it holds: {names}".replace("%", "%%"))


def _window(text: str) -> str:
    try:
        seconds = duration_seconds(text)
    except ValueError as exc:
        raise QueryError(f"--window: {exc}") from None
    low, high = (duration_seconds(w) for w in WINDOWS)
    if not low <= seconds <= high:
        raise QueryError(f"--window {text}: must be between {WINDOWS[0]} and {WINDOWS[1]}")
    return text


def _conditions(args: argparse.Namespace, conditions: dict[str, Condition]) -> list[tuple[str, Condition, str]]:
    chosen = []
    for text in args.fail_if:
        name, _, value = text.partition("=")
        condition = conditions.get(name)
        if condition is None:
            raise QueryError(f"--fail-if {text}: unknown condition (choose from {', '.join(conditions)})")
        if bool(condition.metavar) != bool(value):
            form = f"{name}={condition.metavar}" if condition.metavar else name
            raise QueryError(f"--fail-if {text}: write it as {form}")
        try:
            threshold = condition.parse(value) if value else None
        except ValueError as exc:
            raise QueryError(f"--fail-if {text}: {exc}") from None
        chosen.append((text, condition, threshold))
    return chosen


def _prometheus(args: argparse.Namespace) -> Prometheus:
    if not args.prometheus:
        raise QueryError(f"no Prometheus: give --prometheus URL or set {URL_ENV}")
    token = args.token
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise QueryError(f"--token-file {args.token_file}: {exc.strerror}") from None
    return Prometheus(args.prometheus, token=token, ca_file=args.ca_file, timeout=args.timeout)


def _scope(args: argparse.Namespace, catalogue: Catalogue) -> Scope:
    from meshobs import config

    cfg = config.load(args.config) if args.config else config.Config()
    return Scope(
        meshes=catalogue.meshes(args.meshes), window=_window(args.window), cluster_label=cfg.cluster_label,
        namespace=checked_name("--namespace", args.namespace) if args.namespace else None,
        cluster=checked_name("--cluster", args.cluster) if args.cluster else None,
    )


def run(args: argparse.Namespace, collect: Callable[[Context, argparse.Namespace], output.Report],
        conditions: dict[str, Condition]) -> int:
    chosen = _conditions(args, conditions)
    _window(args.window)
    at = args.at
    if at is not None and args.watch:
        raise QueryError("--at and --watch exclude each other: a watch shows the present")
    prometheus = _prometheus(args)
    catalogue = Catalogue.from_rules(prometheus.url, prometheus.recording_rules())
    scope = _scope(args, catalogue)
    frames = 0
    while True:
        report = collect(Context(prometheus, catalogue, scope, time.time() if at is None else at), args)
        text = output.render(report, args.output)
        if args.watch and args.output in ("json", "yaml"):
            text = text if args.output == "yaml" else output.render_compact(report)
            sys.stdout.write(("---\n" if args.output == "yaml" else "") + text)
        else:
            sys.stdout.write((CLEAR if args.watch else "") + text)
        sys.stdout.flush()
        if frames == 0 and duration_seconds(report.window) > duration_seconds(args.window):
            log.warning("--window %s is shorter than any window Prometheus records: the numbers cover %s",
                        args.window, report.window)
        frames += 1
        if not args.watch or (args.watch_count is not None and frames >= args.watch_count):
            break
        time.sleep(args.interval)  # pacing a live display, not waiting for a condition
    failed = [(text, condition.offenders(report, threshold)) for text, condition, threshold in chosen]
    failed = [(text, offenders) for text, offenders in failed if offenders]
    for text, offenders in failed:
        shown = ", ".join(offenders[:10]) + (f" and {len(offenders) - 10} more" if len(offenders) > 10 else "")
        print(f"meshobs {args.command}: --fail-if {text} holds: {shown}", file=sys.stderr)
    return 1 if failed else 0
