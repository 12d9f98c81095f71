"""`meshobs exporter`: flags and the process around the scrape loop."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector

from meshobs.config import duration_seconds
from meshobs.errors import ExporterError

log = logging.getLogger(__name__)

def duration(text: str) -> float:
    try:
        seconds = duration_seconds(text)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive duration like 500ms, 15s, 1m")
    return seconds


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return int(text)


SERIES_HELP = """\
series (labels mesh, namespace, workload on all):
  meshobs_tls_handshakes_total                   successful handshakes
  meshobs_tls_handshake_failures_total{reason}   no_client_cert, untrusted_cert, san_mismatch, not_tls, other
  meshobs_authz_allowed_total, meshobs_authz_denied_total
  meshobs_authz_dry_run_allowed_total, meshobs_authz_dry_run_denied_total   shadow / dry-run policy decisions
  meshobs_plaintext_requests_total               traffic served without mutual TLS (refused plaintext: not_tls)
  meshobs_authz_denied_burst, meshobs_authz_denied_bursts_total
  meshobs_cert_expiry_timestamp_seconds{cert}    leaf, ca
  meshobs_cert_not_before_timestamp_seconds{cert}  the same certificates' notBefore, where the proxy tells it
  meshobs_scrape_errors_total{reason}            timeout, refused, too_large, bad_payload, http_status
  meshobs_target_up{instance}, meshobs_scrape_duration_seconds{instance}   per scraped proxy
  meshobs_workloads_dropped_total, meshobs_discovery_rejected_total{reason}  (no workload labels)
  meshobs_ztunnel_claims_refused_total{reason}   workloads a ztunnel named but may not speak for
  meshobs_cycle_duration_seconds, meshobs_cycle_targets, meshobs_cycle_deferred_targets,
  meshobs_cycle_overrun_total    the scrape loop's own work: a cycle longer than the interval
                                 means this replica needs another shard (no workload labels)
At most 22 series per workload plus 2 per proxy, whatever the proxy exposes. Counters are kept
per workload and stay monotonic across proxy restarts and pod churn. Only GET /stats/prometheus
(on Envoy with ?usedonly&filter= a constant regex of the families read), /metrics and /certs are
ever sent to a proxy.

security events (with --fluentd): tag meshobs.security.<kind>, kinds authz_burst_started,
authz_burst_ended, tls_failure_new_reason, cert_expiring; dropped ones are counted in
meshobs_events_dropped_total. Tracing: set OTEL_EXPORTER_OTLP_ENDPOINT (standard OTel variables).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from meshobs.exporter import settings
    from meshobs.exporter.state import MAX_WORKLOADS
    from meshobs.exporter.targets import TARGET_HELP

    parser.description = (
        "Scrape sidecar proxies (Envoy: Istio, Consul; linkerd2-proxy) and serve normalized mTLS, "
        "authorization and certificate series on /metrics, with /healthz and /readyz."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = SERIES_HELP
    parser.add_argument("--listen", type=host_port, default=("0.0.0.0", 9942), metavar="HOST:PORT",
                        help="address of /metrics, /healthz, /readyz (default 0.0.0.0:9942)")
    parser.add_argument("--liveness-timeout", type=duration, default=10.0, metavar="DURATION",
                        help="/healthz answers 503 once the scrape loop has not run for this long (default 10s); "
                             "the endpoints are served by a separate process, so they answer whatever the loop does")
    parser.add_argument("--target", action="append", default=[], metavar="SPEC", help=TARGET_HELP)
    parser.add_argument("--targets-file", type=Path, metavar="FILE",
                        help="Prometheus file_sd targets (JSON or YAML) with labels mesh, namespace, workload and "
                             "optional __metrics_path__, __scheme__; re-read when it changes")
    parser.add_argument("--kubernetes", action="store_true",
                        help="discover meshed pods in-cluster (service account token; read-only list/watch of pods)")
    parser.add_argument("--kubernetes-namespace", action="append", default=[], metavar="NS",
                        help="only pods of this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--shard", default="0/1", metavar="INDEX/COUNT",
                        help="keep only targets whose hash falls in shard INDEX of COUNT (default 0/1)")
    parser.add_argument("--scrape-timeout", type=duration, default=5.0, metavar="DURATION", help="per target, default 5s")
    parser.add_argument("--concurrency", type=positive_int, default=64, help="scrapes in flight at most (default 64)")
    parser.add_argument("--max-body-bytes", type=positive_int, default=16 * 1024 * 1024,
                        help="larger bodies are cut off and counted as too_large (default 16777216)")
    parser.add_argument("--max-workloads", type=positive_int, default=MAX_WORKLOADS, metavar="N",
                        help="workloads kept at most; targets of further ones are not scraped and counted in "
                             f"meshobs_workloads_dropped_total (default {MAX_WORKLOADS})")
    parser.add_argument("--fluentd", type=host_port, metavar="HOST:PORT",
                        help="send security events (tag meshobs.security.<kind>) to this Fluentd forward input")
    parser.add_argument("--fluentd-shared-key-file", type=Path, metavar="FILE",
                        help="shared key (the file's content, stripped) of the Fluentd forward input's <security> "
                             "section: events are sent only after the handshake proves both sides know it")
    # thresholds and windows shared with the alerts: defaults and checks are meshobs.yaml's
    for flag in settings.CONFIG_FLAGS:
        parser.add_argument(flag.flag, type=flag.parse, default=settings.text(flag.default), metavar=flag.metavar,
                            help=flag.help)


def _discovery(args: argparse.Namespace):
    from meshobs.exporter import discovery
    from meshobs.exporter.targets import parse_target_spec

    shard = discovery.parse_shard(args.shard)
    static = {parse_target_spec(spec) for spec in args.target}
    targets_file = discovery.TargetsFile(args.targets_file) if args.targets_file else None
    pods = None
    if args.kubernetes:
        from meshobs.exporter import kubernetes

        pods = kubernetes.PodWatcher(kubernetes.in_cluster(), args.kubernetes_namespace)
    elif args.kubernetes_namespace:
        raise ExporterError("--kubernetes-namespace needs --kubernetes")
    if not (static or targets_file or pods):
        raise ExporterError("no targets: give --target, --targets-file or --kubernetes")

    def discover():
        found = set(static)
        if targets_file:
            found |= targets_file.refresh()
        if pods:
            found |= pods.targets()
        return discovery.in_shard(found, shard)

    return discover, pods


async def _main(args: argparse.Namespace) -> int:
    from meshobs._version import __version__
    from meshobs.exporter import collector, events, runner, server, state, status, tracing

    discover, pods = _discovery(args)
    shared_key = _shared_key(args)
    registry = CollectorRegistry()
    exporter_state = state.State(
        state.BurstPolicy(absolute=args.burst_denials_per_second, factor=args.burst_factor,
                          minimum=args.burst_min_denials_per_second, baseline_seconds=args.burst_baseline_window),
        state.CertPolicy(ca_window=args.ca_expiry_window, leaf_fraction=args.leaf_warning_fraction),
        max_workloads=args.max_workloads,
    )
    ProcessCollector(registry=registry)  # the exporter's own CPU and memory, next to what it scrapes
    if pods:
        registry.register(pods.collector())
        exporter_state.resolve = pods.resolve  # a ztunnel speaks only for the pods of its node
    exposition = server.Exposition()  # the state's series, rendered after each cycle
    scraper: runner.Scraper | None = None

    def ready() -> tuple[bool, str]:
        if scraper is None:
            return False, "not ready: starting"
        # a cycle that started before the pod list came in has not scraped the pods
        started = scraper.last_cycle_started
        synced = pods is None or (pods.synced_at is not None and started is not None and started >= pods.synced_at)
        ok, why = scraper.status.readiness(synced)
        if ok and exposition.renders == 0:
            return False, "not ready: the first cycle's series are still being rendered"
        return ok, why

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    endpoints = server.Endpoints(registry, ready, exposition, args.liveness_timeout)
    try:
        endpoints.start(*args.listen, on_failure=lambda: loop.call_soon_threadsafe(stop.set))
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ExporterError(f"cannot listen on {args.listen[0]}:{args.listen[1]}: {reason}") from None
    log.info("%s", status.startup_line(args, __version__))
    sink = events.FluentdEvents(*args.fluentd, registry, shared_key=shared_key) if args.fluentd else events.LogEvents()
    tracer = tracing.tracer()
    limits = runner.Limits(args.scrape_interval, args.scrape_timeout, args.concurrency, args.max_body_bytes)
    scraper = runner.Scraper(exporter_state, limits, discover, sink, tracer)
    registry.register(collector.CycleCollector(scraper.stats))
    scraper.after_cycle.append(lambda done: exposition.refresh(done.state))
    scraper.after_cycle.append(lambda done: endpoints.wake())  # readiness
    exposition.on_render = endpoints.wake
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _tune_gc()
    background = [asyncio.create_task(endpoints.heartbeat())]
    if pods:
        background.append(asyncio.create_task(pods.run(stop)))
    try:
        if pods:
            await _first_sync(pods, stop, args.scrape_interval)
        await scraper.run(stop)
    finally:
        for task in background:
            task.cancel()
        await endpoints.cleanup()
        sink.close()
        tracer.shutdown()
    if endpoints.failure:
        raise ExporterError(endpoints.failure)
    return 0


def _tune_gc() -> None:
    """Each scrape leaves a few hundred short-lived objects. With the default thresholds enough of
    them outlive two young collections that full collections run every few seconds at thousands
    of sidecars, each holding the interpreter, and so /healthz, for 0.1-0.6 s. Young collections
    every 20,000 allocations let them die young; what is loaded by now is frozen out of the count."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


def _shared_key(args: argparse.Namespace) -> bytes | None:
    if args.fluentd_shared_key_file is None:
        return None
    if not args.fluentd:
        raise ExporterError("--fluentd-shared-key-file needs --fluentd")
    try:
        key = args.fluentd_shared_key_file.read_bytes().strip()
    except OSError as exc:
        raise ExporterError(f"--fluentd-shared-key-file {args.fluentd_shared_key_file}: {exc.strerror}") from None
    if not key:
        raise ExporterError(f"--fluentd-shared-key-file {args.fluentd_shared_key_file}: empty")
    return key


async def _first_sync(pods, stop: asyncio.Event, limit: float) -> None:
    """Wait (at most one scrape interval) for the first pod list, so the first cycle scrapes the
    pods and /readyz never answers for a cycle that saw none of them."""
    waits = [asyncio.create_task(pods.first_sync.wait()), asyncio.create_task(stop.wait())]
    await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
