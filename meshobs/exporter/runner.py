"""The scrape loop: every interval, read the current targets with a fixed pool of workers,
normalize, update the state and hand the resulting events to the sink.

Overload degrades into a longer interval, never into targets reported down: targets are read
oldest first, a cycle that runs past the interval starts the next one at once (and is counted
and logged with the sizing advice), and a cycle stops starting scrapes at its deadline, leaving
the targets it did not reach their last values and the first places of the next cycle. Each
target has one time budget for all its requests and its parsing; a big kept payload is parsed
in a worker thread so that the event loop (and /metrics) never waits behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from meshobs.exporter import parse, scrape, status
from meshobs.exporter.normalize import Reading, admin_certs, normalize, proxy_metrics
from meshobs.exporter.state import State
from meshobs.exporter.targets import Target

log = logging.getLogger(__name__)

# kept lines above this many are parsed off the event loop (a healthy sidecar has ~20)
THREAD_PARSE_LINES = 1000
# repeat the overrun warning at most this often while a replica stays overloaded
OVERRUN_LOG_SECONDS = 600.0


@dataclass(frozen=True)
class Limits:
    interval: float = 15.0
    timeout: float = 5.0  # per target, all its requests and its parsing together
    concurrency: int = 64
    max_bytes: int = 16 * 1024 * 1024
    certs_bytes: int = 1024 * 1024  # Envoy's /certs is a few kB
    parse: parse.ParseLimits = field(default_factory=parse.ParseLimits)
    # a cycle starts no scrape after this many intervals; the rest go first in the next cycle
    deadline_intervals: float = 2.0


@dataclass
class CycleStats:
    """The last cycle's work, for `meshobs_cycle_*` and the overrun warning."""

    duration: float = 0.0
    targets: int = 0
    deferred: int = 0
    overruns: int = 0
    overloaded_since: float | None = None
    warned_at: float = float("-inf")


def certs_url(target: Target) -> str | None:
    """Envoy's /certs next to /stats/prometheus on an admin port (Consul 19000); an Istio
    sidecar's 15090 or a merged endpoint does not serve it, Linkerd has no such path."""
    if proxy_metrics(target).admin_certs and target.url.endswith("/stats/prometheus"):
        return target.url.removesuffix("/stats/prometheus") + "/certs"
    return None


def metrics_url(target: Target) -> str:
    """The target's metrics URL; on Envoy's admin, with the dialect's constant stats filter."""
    query = proxy_metrics(target).stats_query
    return f"{target.url}?{query}" if query and target.url.endswith("/stats/prometheus") else target.url


def _reading(dialect, kept: list[bytes]) -> Reading:
    return normalize(dialect, parse.parse_lines(kept))


class Scraper:
    def __init__(self, state: State, limits: Limits, discover: Callable[[], set[Target]], sink, tracer):
        self.state = state
        self.limits = limits
        self.discover = discover
        self.sink = sink
        self.tracer = tracer
        self.cycles = 0
        self.stats = CycleStats()
        # when each target was last read (monotonic): the oldest go first
        self._last_read: dict[Target, float] = {}
        self.status = status.TargetStatus(limits.interval, limits.timeout)
        self.last_cycle_started: float | None = None  # time.monotonic() at the start of the last complete cycle
        # /certs answered 404 once: do not ask again (merged metrics endpoints, Envoy without admin)
        self._no_certs: set[str] = set()
        # per /certs URL: (expiries by kind, notBefores by kind) of its last answer
        self._certs: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
        # called after every cycle with the scraper (a hook for summaries and snapshots)
        self.after_cycle: list[Callable[["Scraper"], object]] = []

    async def scrape_one(self, client: scrape.Client, target: Target) -> None:
        dialect = proxy_metrics(target)
        start = time.perf_counter()
        self._last_read[target] = time.monotonic()
        with self.tracer.span("scrape", {"url": target.url, "mesh": target.mesh, "namespace": target.namespace,
                                         "workload": target.workload}) as span:
            try:
                async with asyncio.timeout(self.limits.timeout):
                    reading = await self._read(client, target, dialect)
            except TimeoutError:
                self._failed(target, "timeout", f"no complete answer within {self.limits.timeout}s", start, span)
                return
            except scrape.ScrapeError as exc:
                self._failed(target, exc.reason, str(exc), start, span)
                return
            self.state.observe(target, reading, time.perf_counter() - start)
            self.status.up(target)

    def _failed(self, target: Target, reason: str, detail: str, start: float, span) -> None:
        log.debug("scrape %s failed: %s", target.url, detail)
        self.state.failed(target, reason, time.perf_counter() - start)
        self.status.failed(target, reason, detail)
        if span is not None:
            span.set_attribute("error.type", reason)

    async def _read(self, client: scrape.Client, target: Target, dialect) -> Reading:
        lines = parse.line_filter(dialect, self.limits.parse)
        try:
            await scrape.fetch(client, metrics_url(target), None, self.limits.max_bytes, lines.feed)
            kept = lines.lines()
            if len(kept) > THREAD_PARSE_LINES:
                reading = await asyncio.to_thread(_reading, dialect, kept)
            else:
                reading = _reading(dialect, kept)
        except parse.PayloadError as exc:
            raise scrape.ScrapeError(exc.reason, str(exc)) from None
        except scrape.ScrapeError:
            raise
        except Exception as exc:  # whatever a proxy answers, only its own scrape fails
            raise scrape.ScrapeError("bad_payload", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        await self._admin_certs(client, target, reading)
        return reading

    async def _admin_certs(self, client: scrape.Client, target: Target, reading) -> None:
        """Complete `reading` from Envoy's /certs: the expiry where the stats lack it, and the
        notBefore, which no stat carries. While the stats' expiries stay the same (no rotation),
        the last answer is reused rather than asked for again."""
        url = certs_url(target)
        if url is None or url in self._no_certs:
            return
        cached = self._certs.get(url)
        if cached is None or not reading.certs or cached[0] != reading.certs:
            try:
                body = await scrape.fetch(client, url, None, self.limits.certs_bytes)
                certs, not_before = admin_certs(body)
            except (scrape.ScrapeError, parse.PayloadError) as exc:
                # optional source: the metrics were read, so the scrape still counts as good; not asked
                # again, and counted unless the proxy just does not serve it
                log.debug("no certificates from %s: %s", url, exc)
                self._no_certs.add(url)
                reason = exc.reason if isinstance(exc, scrape.ScrapeError) else "bad_payload"
                if reason != "http_status":
                    self.state.count_error(target, reason)
                return
            # a notBefore belongs to the certificate the expiry describes: the same expiry
            stats = reading.certs or certs
            not_before = {kind: ts for kind, ts in not_before.items() if stats.get(kind) == certs.get(kind)}
            cached = self._certs[url] = (dict(stats), not_before)
        reading.certs, reading.not_before = dict(cached[0]), dict(cached[1])

    async def cycle(self, client: scrape.Client) -> None:
        started = time.monotonic()
        client.prune()
        targets = self.state.retain(self.discover(), time.time())
        live = {certs_url(t) for t in targets}
        self._no_certs &= live  # bounded by the live targets
        self._certs = {url: known for url, known in self._certs.items() if url in live}
        for gone in set(self._last_read) - targets:
            del self._last_read[gone]
        # never read first, then the longest unread: targets a cut cycle did not reach lead the next
        queue = iter(sorted(targets, key=lambda t: self._last_read.get(t, float("-inf"))))
        deadline = started + self.limits.deadline_intervals * self.limits.interval
        read = 0

        async def worker() -> None:
            nonlocal read
            for target in queue:
                if time.monotonic() >= deadline:
                    return
                try:
                    await self.scrape_one(client, target)
                except Exception:  # a bug one answer triggers must not end the cycle of the others
                    log.exception("scrape of %s failed unexpectedly", target.url)
                    self.state.failed(target, "bad_payload", 0.0)
                    self.status.failed(target, "bad_payload", "unexpected error")
                read += 1

        with self.tracer.span("scrape_cycle", {"targets": len(targets)}):
            await asyncio.gather(*(worker() for _ in range(min(self.limits.concurrency, len(targets)))))
        # ~30 us per workload: at thousands, off the loop (nothing else changes the state meanwhile)
        for event in await asyncio.to_thread(self.state.end_cycle, time.time()):
            self.sink.submit(event)
        self.cycles += 1
        self.last_cycle_started = started  # readiness: did a whole cycle run after the pod list?
        self.status.end_cycle(targets)
        self._account(time.monotonic() - started, len(targets), read)
        for hook in self.after_cycle:
            hook(self)

    def _account(self, duration: float, targets: int, read: int) -> None:
        stats, interval = self.stats, self.limits.interval
        stats.duration, stats.targets, stats.deferred = duration, targets, targets - read
        now = time.monotonic()
        if duration <= interval and not stats.deferred:
            if stats.overloaded_since is not None:
                log.info("scrape cycles fit the %gs interval again (%d targets in %.1fs)", interval, targets, duration)
            stats.overloaded_since = None
            return
        stats.overruns += 1
        if stats.overloaded_since is None:
            stats.overloaded_since = now
        elif now - stats.warned_at < OVERRUN_LOG_SECONDS:
            return
        stats.warned_at = now
        fit = int(read / duration * interval) if duration > 0 else read
        log.warning(
            "scrape cycle overran: %d targets took %.1fs, longer than the %gs interval (%d left for the next "
            "cycle); each proxy is read about every %.0fs instead, its last values kept meanwhile. This replica "
            "reads about %d targets per interval: run more replicas (deploy.shards, --shard INDEX/COUNT) so that "
            "each has fewer, or raise --concurrency if the proxies are slow rather than the exporter busy",
            targets, duration, interval, stats.deferred, max(duration, interval) * targets / max(read, 1), fit)

    async def run(self, stop: asyncio.Event) -> None:
        # idle connections of targets not read for a few intervals (gone, or deferred) are closed
        async with scrape.Client(idle_seconds=3 * self.limits.interval * self.limits.deadline_intervals) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    await self.cycle(client)
                except Exception:  # a bug in one cycle must not end the exporter
                    log.exception("scrape cycle failed")
                pause = self.limits.interval - (time.monotonic() - started)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(pause, 0.0))
                except TimeoutError:
                    pass
